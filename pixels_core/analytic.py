"""Analytic denoisers: exact posterior means for data we can write down.

Used by the tests (properties that must hold for *any* correct denoiser), the benchmarks and the
README demos. Both follow the k-diffusion convention ``model(x, sigma, **extra_args) -> x0`` and
support EPS (``x = x0 + s n``) and flow (``x = (1-s) x0 + s n``) noise models.
"""
from __future__ import annotations

import torch

from .parameterization import get as _param


def _sig(sigma, x):
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


class FiniteSetDenoiser(torch.nn.Module):
    """Exact posterior mean ``E[x0 | x_sigma]`` when ``x0`` is uniform over a finite set of images.

    ``images``: ``(M, C, H, W)``. ``cond`` (an extra arg) may give per-sample weights ``(B, M)``
    or an index list selecting the allowed images: a crude but exact "text condition".
    With ``per_pixel=True`` every pixel location is independent (each takes its channel vector from one of
    the images), so the posterior is local: what happens in one region does not move another.
    """

    def __init__(self, images: torch.Tensor, kind="eps", per_pixel: bool = False):
        super().__init__()
        self.register_buffer("images", images)
        self.param = _param(kind)
        self.per_pixel = per_pixel
        self.calls = 0

    def forward(self, x, sigma, cond=None, **_):
        self.calls += 1
        s = _sig(sigma, x)
        a = self.param.alpha(s, x)
        mu = self.images.to(x.dtype)
        # log-likelihood of each image: -|x - a mu_k|^2 / (2 s^2)
        d = x.unsqueeze(1) - a.unsqueeze(1) * mu.unsqueeze(0)
        if self.per_pixel:
            logw = -(d ** 2).sum(2) / (2 * s.flatten(1)[..., None, None] ** 2)  # (B, M, H, W)
            w = torch.softmax(logw, dim=1)
            return torch.einsum("bmhw,mchw->bchw", w, mu)
        logw = -(d.flatten(2) ** 2).sum(-1) / (2 * s.flatten(1) ** 2)
        if cond is not None:
            cond = torch.as_tensor(cond, device=x.device)
            if cond.dtype in (torch.int32, torch.int64, torch.bool) and cond.ndim == 1:
                prior = torch.full((mu.shape[0],), float("-inf"), dtype=x.dtype, device=x.device)
                prior[cond.long()] = 0.0
                logw = logw + prior
            else:
                logw = logw + torch.log(cond.to(x.dtype).clamp_min(1e-30))
        w = torch.softmax(logw, dim=1)
        return torch.einsum("bm,mchw->bchw", w, mu)


class GaussianDenoiser(torch.nn.Module):
    """Exact posterior mean when ``x0 ~ N(mean, std^2 I)`` (per-pixel ``mean`` allowed).

    ``cond`` (extra arg) may pass a different mean tensor: a conditional Gaussian model.
    """

    def __init__(self, mean: torch.Tensor, std: float = 0.5, kind="eps"):
        super().__init__()
        self.register_buffer("mean", mean)
        self.std = float(std)
        self.param = _param(kind)
        self.calls = 0

    def forward(self, x, sigma, cond=None, **_):
        self.calls += 1
        mu = (self.mean if cond is None else torch.as_tensor(cond)).to(x)
        s = _sig(sigma, x)
        a = self.param.alpha(s, x)
        v = self.std ** 2
        gain = a * v / (a * a * v + s * s)
        return mu + gain * (x - a * mu)
