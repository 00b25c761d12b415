"""Deterministic DDIM in k-diffusion's sigma form: the pack's one DDIM step and one DDIM inversion.

Song, Meng, Ermon, "Denoising Diffusion Implicit Models", arXiv:2010.02502. Eq. 12 with sigma_t = 0 (eta = 0),
``x_{t-1} = sqrt(a_{t-1}) x0_hat + sqrt(1 - a_{t-1}) eps_hat`` in alpha-bar form, is Eq. 13 in the variables
``x = x_vp / sqrt(a)``, ``sigma = sqrt((1 - a) / a)``: ``x' = x0_hat + sigma' eps_hat``, Euler on the ODE of Eq. 14.
That is the EPS/VE form (``x = x0 + sigma eps``); for flow/CONST models (``x = (1 - sigma) x0 + sigma eps``) the same
step ``x' = (1 - sigma') x0_hat + sigma' eps_hat`` is the Euler step of the velocity ``eps - x0``. Inversion
(Sec. 4.3 and 5.4: Eq. 14 integrated from 0 up to T) is the same step taken upward in sigma.

:func:`ddim_invert` has two conventions:

- ``"exact"``: every step of the sampler on ``sigmas`` inverted in turn (N steps from the clean latent at sigma 0;
  the noise is read at the level where the model is evaluated; the first step, from sigma 0, evaluates the model at
  the upper level on the clean latent as the state there, like diffusers' first inverse step, which feeds the
  unscaled VP latent), optionally refined by fixed-point iterations until each step is the exact inverse of the
  forward DDIM step. ITO uses it.
- ``"authors"``: pix2pix-zero's DDIM inversion (Parmar et al., "Zero-shot Image-to-Image Translation",
  arXiv:2302.03027) as OIG ships it: of the N schedule levels it skips the lowest (the clean latent is taken as the
  state at the second lowest, unnoised) and the highest as an evaluation point, so N - 2 steps, and it reads each
  state's alpha one training timestep below the timestep of the model call (``train_sigmas``).

Trajectories are indexed like the schedule: ``traj[i]`` is the state at ``sigmas[i]`` (``sigmas`` descending), so
``traj[0]`` is the encoded latent.
"""
from __future__ import annotations

import torch

from .parameterization import get as _param
from .schedule import check_sigmas

CONVENTIONS = ("exact", "authors")


def _s_in(x: torch.Tensor, sigma) -> torch.Tensor:
    return torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(()).expand(x.shape[0])


def predict(model, x: torch.Tensor, sigma, extra_args: dict, param="eps") -> tuple[torch.Tensor, torch.Tensor]:
    """One model call: ``(x0_hat, eps_hat)`` at ``x`` treated as the state at noise level ``sigma`` (> 0)."""
    p = _param(param)
    denoised = model(x, _s_in(x, sigma), **extra_args)
    return denoised, p.eps(x, sigma, denoised)


def ddim_step(x0_hat: torch.Tensor, eps_hat: torch.Tensor, sigma_next, param="eps") -> torch.Tensor:
    """Eq. 12 (eta = 0) in sigma form, down or up: the state at ``sigma_next`` with the same ``(x0_hat, eps_hat)``."""
    p = _param(param)
    s = torch.as_tensor(sigma_next, dtype=x0_hat.dtype, device=x0_hat.device)
    return p.alpha(s, x0_hat) * x0_hat + s * eps_hat


def x0_from_eps(x: torch.Tensor, eps_hat: torch.Tensor, sigma, param="eps") -> torch.Tensor:
    """Clean latent implied by the state ``x`` at ``sigma`` and the noise ``eps_hat``."""
    p = _param(param)
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return (x - s * eps_hat) / p.alpha(s, x)


def sample_ddim(model, x, sigmas, extra_args=None, callback=None, disable=None, *, param="eps"):
    """Deterministic DDIM sampling (Eq. 12, eta = 0) from ``x`` at ``sigmas[0]``: the decoder of the inversion."""
    p = _param(param)
    sigmas = check_sigmas(sigmas)
    extra_args = {} if extra_args is None else extra_args
    for i in range(len(sigmas) - 1):
        denoised, eps_hat = predict(model, x, sigmas[i], extra_args, p)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = ddim_step(denoised, eps_hat, sigmas[i + 1], p)
    return x


def one_step_back(sigmas, train_sigmas) -> torch.Tensor:
    """Each sigma moved one training timestep down the model's discrete table (ascending, index = timestep; 0 below t = 0)."""
    sigmas = torch.as_tensor(sigmas)
    table = torch.as_tensor(train_sigmas).to(torch.float64).flatten()
    if table.numel() < 2 or not bool((table[1:] > table[:-1]).all()) or not bool((table > 0).all()):
        raise ValueError("train_sigmas: need the model's discrete sigmas, positive and ascending with the timestep "
                         "(ComfyUI's model_sampling.sigmas)")
    s = sigmas.detach().to(torch.float64).cpu().clamp_min(1e-30)
    t = (s.log()[:, None] - table.log()[None, :]).abs().argmin(dim=1)
    back = torch.where(t > 0, table[(t - 1).clamp_min(0)], torch.zeros_like(s))
    return back.to(sigmas)


def _native_scale(p, sigma, ref: torch.Tensor) -> torch.Tensor:
    """Factor from the model's own latent (VP for EPS: ``x_vp = x / sqrt(1 + sigma^2)``; flow: itself) to ``x``."""
    s = torch.as_tensor(sigma, dtype=ref.dtype, device=ref.device)
    return torch.ones_like(s) if p.is_flow else torch.sqrt(1.0 + s * s)


def _invert_exact(model, x0, sigmas, extra_args, callback, p, fixed_point_iters):
    n = len(sigmas) - 1
    x = x0  # the state at sigmas[-1] (the clean latent when the schedule ends at 0)
    traj = [x]
    for j, i in enumerate(range(n, 0, -1)):
        s_lo, s_hi = sigmas[i], sigmas[i - 1]
        s_eval = s_lo if float(s_lo) > 0 else s_hi
        denoised, eps_hat = predict(model, x, s_eval, extra_args, p)
        x_lo = x
        x = ddim_step(x0_from_eps(x_lo, eps_hat, s_lo, p), eps_hat, s_hi, p)
        top = float(p.alpha(s_hi, x).max()) < 1e-6  # flow at sigma 1: x carries no x0, hold x0_hat instead
        for _ in range(int(fixed_point_iters)):
            denoised, eps_hat = predict(model, x, s_hi, extra_args, p)
            if top and float(s_lo) > 0:
                eps_hat = (x_lo - p.alpha(s_lo, x) * denoised) / s_lo
                x = ddim_step(denoised, eps_hat, s_hi, p)
            else:
                x = ddim_step(x0_from_eps(x_lo, eps_hat, s_lo, p), eps_hat, s_hi, p)
        traj.append(x)
        if callback is not None:
            callback({"x": x, "i": j, "sigma": s_hi, "sigma_hat": s_hi, "denoised": denoised})
    traj.reverse()
    return traj


def _invert_authors(model, x0, sigmas, extra_args, callback, p, train_sigmas):
    grid = sigmas[sigmas > 0]  # the model's timesteps tau_0 > ... > tau_{m-1}
    m = len(grid)
    back = grid if train_sigmas is None else one_step_back(grid, train_sigmas)
    first = max(m - 2, 0)
    v = x0  # the clean latent, unnoised, as the model's own latent at tau_{m-2} (their ``latents = x0_enc``)
    traj = [v * _native_scale(p, grid[first], v)]
    for k, j in enumerate(range(first, 0, -1)):  # their ``timesteps.flip(0)[1:-1]``: t = tau_{m-2} ... tau_1
        s_t, s_a, s_p = grid[j], back[j], back[j - 1]  # model at t; alphas at t - 1 and at t + 1000 // N - 1
        denoised, eps_hat = predict(model, v * _native_scale(p, s_t, v), s_t, extra_args, p)
        x_p = ddim_step(x0_from_eps(v * _native_scale(p, s_a, v), eps_hat, s_a, p), eps_hat, s_p, p)
        v = x_p / _native_scale(p, s_p, x_p)
        traj.append(v * _native_scale(p, grid[j - 1], v))
        if callback is not None:
            callback({"x": traj[-1], "i": k, "sigma": grid[j - 1], "sigma_hat": grid[j - 1], "denoised": denoised})
    traj.reverse()
    return traj


def ddim_invert(model, x0: torch.Tensor, sigmas: torch.Tensor, extra_args=None, callback=None, disable=None, *,
                param="eps", convention: str = "exact", fixed_point_iters: int = 0,
                train_sigmas=None) -> list[torch.Tensor]:
    """DDIM inversion (Eq. 14 upward) of the clean latent ``x0`` along ``sigmas``, returning the trajectory.

    ``convention="exact"``: N steps, ``[x_{sigmas[0]}, ..., x_{sigmas[-1]}]`` (the last entry is ``x0``). The step
    from ``s_lo`` up to ``s_hi`` evaluates the model at the current state and ``s_lo`` (at ``s_lo = 0``, where a
    denoiser gives no noise estimate, at ``s_hi``); ``fixed_point_iters > 0`` refines each step so that the forward
    DDIM step from the result lands on the current state. Model calls: ``N * (1 + fixed_point_iters)``.
    ``convention="authors"``: pix2pix-zero's, over the positive sigmas ``s_0 > ... > s_{m-1}``: ``x0`` is taken,
    unnoised, as the state at ``s_{m-2}``, then ``m - 2`` steps with the model at ``s_j`` (``j = m-2 .. 1``) and the
    alphas read at ``train_sigmas`` one timestep below ``s_j`` and ``s_{j-1}`` (at ``s_j`` and ``s_{j-1}`` when
    ``train_sigmas`` is None); the model's own latent (VP for EPS) carries over unchanged between those readings.
    Returns the states at ``s_0 .. s_{m-2}`` (``m - 1`` entries). Model calls: ``m - 2``.
    """
    p = _param(param)
    sigmas = check_sigmas(sigmas)
    extra_args = {} if extra_args is None else extra_args
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if int(fixed_point_iters) < 0:
        raise ValueError(f"fixed_point_iters must be >= 0, got {fixed_point_iters}")
    if convention == "authors":
        if int(fixed_point_iters):
            raise ValueError("fixed_point_iters: the authors' inversion has no refinement; use convention='exact'")
        return _invert_authors(model, x0, sigmas, extra_args, callback, p, train_sigmas)
    return _invert_exact(model, x0, sigmas, extra_args, callback, p, fixed_point_iters)
