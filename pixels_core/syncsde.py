"""sync-SDE: Jianxin Zhang, Clayton Scott, "Semantic Editing with Coupled Stochastic Differential Equations",
arXiv:2509.24223; the update is the authors' Flux sampling loop (code: Z-Jianxin/syncSDE-release).

One Brownian path drives both the source and the edited image. The source state lies on that path,
``X_src,i = alpha_i (x0_src + B_i)``; the edit is the accumulated drift difference ``D``; the output is
``x0_src + D``. With identical source and target predictions ``D`` stays exactly 0.

Flow (CONST) models, ``x = (1-s) x0 + s eps`` (exactly the authors' Flux pipeline):
    forward SDE      dX = -X/(1-s) ds + g dW,   g^2 = 2s/(1-s)
    reverse drift    f(x) = 2(x0hat - x)/s - x/(1-s)          (their ``g2score + x/(1-s)``, v = x0 - eps)
    path increments  z_j * sqrt(2 m_j / (1-m_j)^3 * (s_j - s_{j+1})),  m_j = (s_j + s_{j+1})/2,
                     reverse-cumsum to B_i (B_N = 0); source state X_src,i = (1-s_i)(x0 + B_i)
    update           D <- D + (f(X_src + D; c_tgt) - f(X_src; c_src)) (s_i - s_{i+1})

EPS/VE diffusion models, ``x = x0 + s eps`` (SD1.x, SD2, SDXL in k-diffusion's sigma form). The same
construction applied to the VE forward SDE ``dX = sqrt(2s) dW_s`` (f = 0, g^2 = 2s, marginal
``x0 + s eps``); score ``(x0hat - x)/s^2`` gives the reverse drift ``g^2 score = 2(x0hat - x)/s``; path
increments ``z_j sqrt(2 m_j (s_j - s_{j+1})) = z_j sqrt(s_j^2 - s_{j+1}^2)`` (the midpoint rule is exact
here) and ``X_src,i = x0 + B_i``. It is the *same* continuous process as the flow SDE: with
``Y = X/(1-s)`` and ``nu = s/(1-s)`` the flow SDE becomes ``dY = (1-s)^-1 g dW`` whose variance rate is
``2s/(1-s)^3 ds = d(nu^2)``, i.e. the VE SDE in ``nu``. docs/syncsde-derivation.md has the details.

Both kinds share one formula, ``alpha = 1`` (eps) or ``1 - s`` (flow):
    f(x) = 2(x0hat - x)/s - [flow] x/(1-s),   increment variance 2 m dS / alpha(m)^3.
We accumulate ``D`` in the algebraically identical difference form
    D <- D + (2 (x0hat_tgt - x0hat_src)/s - D (2/s + [flow] 1/(1-s))) (s_i - s_{i+1}).

Exponential integrator (an option beyond the paper, ``integrator="exponential"``): with the prediction difference
``Delta = x0hat_tgt - x0hat_src`` frozen over a step, the edit obeys the linear ODE ``dD/ds = k(s) D - 2 Delta/s``,
``k = 2/s + [flow] 1/(1-s)``, whose exact solution from ``s_i`` to ``s_{i+1}`` is
    D <- rho D + Delta (alpha_{i+1} - rho alpha_i),   rho = (s_{i+1}/s_i)^2 alpha_i/alpha_{i+1}
(eps: ``D <- r^2 D + (1 - r^2) Delta``, ``r = s_{i+1}/s_i``; the last step to 0 gives ``D = Delta``). Euler's error
on the linear part (about 7e-4 of the edit on SD1.x at 20 steps) goes away: a model whose predictions do not depend
on the state (source prompt -> x0_src, target prompt -> x_tgt) lands on ``x_tgt`` exactly.

Masks, ``m`` in [0, 1], 1 = may change: the edit runs where ``m > 0`` (``D`` is confined there after every step, so
outside it stays exactly 0) and the output is ``x0_src + m D``: a grey level keeps that fraction of the edit, whatever
the model. For a binary mask this is exactly the confinement of the first release (``D`` multiplied by the mask
after each step), which for grey levels compounded to ``m^N`` (about 1 % of the edit at 0.5).
"""
from __future__ import annotations

import math

import torch

from . import noise as _noise
from .masks import check_values as _check_mask_values
from .parameterization import get as _param
from .schedule import check_sigmas

try:  # progress bar like k-diffusion's samplers; optional
    from tqdm.auto import trange as _trange
except Exception:  # pragma: no cover
    _trange = None

DEMO_STEPS = 28
DEMO_START_INDEX = 4
INTEGRATORS = ("euler", "exponential")  # the authors' Euler step on the drift difference; exact linear part


# ----------------------------------------------------------------------------------------------
# Schedule checks and the shared Brownian path
# ----------------------------------------------------------------------------------------------

def check_schedule(sigmas: torch.Tensor, kind="eps") -> None:
    """Raise a clear ``ValueError`` unless ``sigmas`` suits sync-SDE: :func:`pixels_core.schedule.check_sigmas` with
    repeats allowed (ComfyUI's simple scheduler repeats sigmas past 1000 steps; a zero-length step changes nothing),
    ending at 0 (the output is the clean ``x0_src + D``) and, for flow models, inside [0, 1]."""
    try:
        check_sigmas(sigmas, method="sync-SDE", repeats=True, ends_at_zero=True, flow=_param(kind).is_flow)
    except ValueError as e:
        if torch.is_tensor(sigmas) and sigmas.ndim == 1 and sigmas.numel() >= 2 and float(sigmas[-1]) > 0:
            raise ValueError(f"{e}; pick where the edit starts with start_step instead") from None
        raise


def resolve_start(sigmas: torch.Tensor, start_index=None, start_sigma=None, kind="eps") -> int:
    """Index of the first step run: ``start_index`` (default 4, the demo's), or the first step whose
    sigma is at most ``start_sigma`` when that is given (> 0)."""
    n = sigmas.numel() - 1
    if start_sigma is not None and float(start_sigma) > 0:
        below = (sigmas[:-1].detach().cpu().double() <= float(start_sigma) + 1e-9).nonzero()
        if below.numel() == 0:
            raise ValueError(f"start_sigma {float(start_sigma):.4g} is below every sigma of the schedule "
                             f"(smallest nonzero {float(sigmas[-2]):.4g}): raise it or set it to 0 to use start_step")
        start = int(below[0])
    else:
        start = DEMO_START_INDEX if start_index is None else int(start_index)
    if start < 0 or start >= n:
        raise ValueError(f"start_step {start} is beyond the schedule of {n} steps: choose 0 .. {n - 1} "
                         f"(the authors' demo starts at 4 of 28)")
    if _param(kind).is_flow and float(sigmas[start]) >= 1.0 - 1e-6:
        raise ValueError(f"start_step {start} starts at sigma {float(sigmas[start]):.4g} (pure noise), where the flow "
                         "SDE's drift term x/(1-sigma) is singular (the authors call starting at 0 or 1 unstable): "
                         "use start_step >= 1 (default 4)")
    return start


def _alpha(kind, s: torch.Tensor) -> torch.Tensor:
    return (1.0 - s) if _param(kind).is_flow else torch.ones_like(s)


def increment_scales(sigmas: torch.Tensor, kind="eps") -> torch.Tensor:
    """Std of each backward Brownian increment: ``sqrt(2 m_j (s_j - s_{j+1})) / alpha(m_j)^1.5`` (N values).

    Flow: exactly the authors' ``sqrt(2s)/(1-s)^1.5 * sqrt(delta_t)``; EPS: ``sqrt(s_j^2 - s_{j+1}^2)``.
    """
    s = sigmas.double()
    m = (s[1:] + s[:-1]) / 2.0
    delta = s[:-1] - s[1:]
    return (2.0 * m).sqrt() / _alpha(kind, m) ** 1.5 * delta.sqrt()


def path_variance(sigmas: torch.Tensor, kind="eps") -> torch.Tensor:
    """Marginal variance of ``B_i`` for every index (N+1 values, the last 0): the reverse cumsum of the
    increment variances. EPS: ``s_i^2`` exactly; flow: a midpoint approximation of ``(s/(1-s))^2``."""
    v = increment_scales(sigmas, kind) ** 2
    out = torch.zeros(v.numel() + 1, dtype=torch.float64)
    out[:-1] = torch.flip(torch.cumsum(torch.flip(v, [0]), 0), [0])
    return out


def brownian_path(sigmas: torch.Tensor, noise: torch.Tensor, kind="eps", first: int = 0) -> torch.Tensor:
    """The shared path ``B`` (N+1, *shape) from iid normals ``noise`` (N, *shape), simulated backward from
    sigma 0: ``B_i = sum_{j >= i} z_j * scale_j``, ``B_N = 0`` (the authors' ``sample_brownian_integral``).
    Only ``B_first .. B_N`` are computed (earlier entries are left 0); ``noise[j]`` for ``j < first`` is unused."""
    n = sigmas.numel() - 1
    if noise.shape[0] != n:
        raise ValueError(f"brownian noise: need {n} draws (one per step), got {noise.shape[0]}")
    scale = increment_scales(sigmas, kind).tolist()
    out = noise.new_zeros((n + 1,) + tuple(noise.shape[1:]))
    for j in range(n - 1, first - 1, -1):  # reverse cumulative sum, one fused op per step
        torch.add(out[j + 1], noise[j], alpha=scale[j], out=out[j])
    return out


def draw_noise(n: int, shape, seed: int, dtype=torch.float32) -> torch.Tensor:
    """``n`` iid standard-normal draws of ``shape`` for the shared path, :func:`pixels_core.noise.randn` of ``seed``
    (drawn on the CPU: the same seed gives the same edit on every device; any widget seed is in range)."""
    return _noise.randn((n,) + tuple(shape), seed, "sync-SDE path", dtype=dtype)


# ----------------------------------------------------------------------------------------------
# The coupled sampler
# ----------------------------------------------------------------------------------------------

def drift(x: torch.Tensor, x0hat: torch.Tensor, sigma, kind="eps") -> torch.Tensor:
    """Reverse drift per unit decrease of sigma: ``2(x0hat - x)/s - [flow] x/(1-s)``."""
    out = 2.0 * (x0hat - x) / sigma
    return out - x / (1.0 - sigma) if _param(kind).is_flow else out


def step_coefficients(s: float, s_next: float, kind="eps", integrator="euler") -> tuple[float, float]:
    """``(a, c)`` of one step ``D <- a D + c Delta`` from sigma ``s`` to ``s_next``, ``Delta = x0hat_tgt - x0hat_src``.

    ``"euler"`` (the authors'): ``a = 1 - k h``, ``c = 2 h / s``, ``k = 2/s + [flow] 1/(1-s)``, ``h = s - s_next``.
    ``"exponential"``: the exact solution of ``dD/ds = k D - 2 Delta/s`` with ``Delta`` frozen over the step,
    ``a = rho = (s_next/s)^2 alpha(s)/alpha(s_next)``, ``c = alpha(s_next) - rho alpha(s)``, ``alpha = 1`` (eps) or
    ``1 - s`` (flow); at ``s_next = 0``: ``a = 0``, ``c = 1``.
    """
    flow = _param(kind).is_flow
    if integrator == "euler":
        h = s - s_next
        k = 2.0 / s + (1.0 / (1.0 - s) if flow else 0.0)
        return 1.0 - k * h, 2.0 * h / s
    if integrator == "exponential":
        a0, a1 = (1.0 - s, 1.0 - s_next) if flow else (1.0, 1.0)
        rho = (s_next / s) ** 2 * a0 / a1
        return rho, a1 - rho * a0
    raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")


@torch.no_grad()
def sample_syncsde(model, x, sigmas, extra_args=None, callback=None, disable=None, *, source, kind="eps",
                   start_index=None, start_sigma=None, resample=False, seed=0, noise=None, mask=None,
                   integrator="euler"):
    """sync-SDE coupled editing sampler (the authors' update, module docstring).

    ``model(cat([X_src, X_tgt]), sigma_batch, **extra_args)`` must return the denoised x0 of both halves in
    ONE call: the first half under the source conditioning (and source CFG), the second under the target's.
    ``source``: clean source latent x0_src (B, ...); ``x`` is only used for its shape/device (the states
    are built from the shared Brownian path, not from ``x``). ``kind``: ``"eps"`` (VE sigma form) or
    ``"flow"``. ``start_index`` (default 4) or ``start_sigma``: where the edit starts. ``resample``: a fresh
    path sample every step (FlowEdit-like; the authors' ``resample=True``). ``seed``: path noise;
    ``noise``: explicit iid draws (N, B, ...) instead. ``mask``: optional, broadcastable to the latent, values in
    [0, 1], 1 = may change: ``D`` evolves where ``m > 0`` and the output is ``x0_src + m D`` (a grey level keeps
    that fraction of the edit; 0 keeps the source exactly). ``integrator``: ``"euler"`` (the authors' step, default) or
    ``"exponential"`` (exact for the linear part of the edit ODE, beyond the paper; :func:`step_coefficients`).
    Returns ``x0_src + D``.
    """
    extra_args = {} if extra_args is None else extra_args
    kind = _param(kind).kind
    if integrator not in INTEGRATORS:
        raise ValueError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
    check_schedule(sigmas, kind)
    if source.shape[0] != x.shape[0] or source.shape[1:] != x.shape[1:]:
        raise ValueError(f"source latent {tuple(source.shape)} and sampler latent {tuple(x.shape)} differ: "
                         "connect the source latent (VAE Encode of the source image) as the latent")
    check_source(source)
    if mask is not None:
        _check_mask_values(mask, "mask")
    start = resolve_start(sigmas, start_index, start_sigma, kind)
    n = sigmas.numel() - 1
    dev, dt = x.device, x.dtype
    x0 = source.to(dev, dt)
    b = x0.shape[0]
    if noise is not None and tuple(noise.shape) != (n,) + tuple(x0.shape):
        raise ValueError(f"noise: expected shape {(n,) + tuple(x0.shape)}, got {tuple(noise.shape)}")
    if resample:  # a fresh draw of B_i each step, same marginal law as the path (the authors re-draw it all)
        std = path_variance(sigmas.cpu(), kind).sqrt().tolist()
        gen = _noise.generator(seed, "sync-SDE resample")
    else:
        if noise is None:  # only the draws the run uses (j >= start), seeded on the CPU: device-independent
            noise = torch.cat([x0.new_zeros((start,) + tuple(x0.shape), device="cpu"),
                               draw_noise(n - start, x0.shape, seed, dtype=dt)])
        path = brownian_path(sigmas.cpu(), noise.to(dev, dt), kind, first=start)
    if mask is not None:
        mask = mask.to(dev, dt)
        try:
            fits = torch.broadcast_shapes(mask.shape, x0.shape) == x0.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to the latent {tuple(x0.shape)}")
        support = (mask > 0).to(dt)  # where the edit may run at all
    flow = kind == "flow"
    sl = sigmas.tolist()
    d = torch.zeros_like(x0)
    steps = range(start, n)
    if _trange is not None and disable is not True:
        steps = _trange(start, n, disable=disable)
    for i in steps:
        s = sl[i]
        if resample:
            b_i = (torch.randn(x0.shape, generator=gen, dtype=torch.float32) * std[i]).to(dev, dt)
        else:
            b_i = path[i]
        x_src = x0 + b_i
        if flow:
            x_src.mul_(1.0 - s)
        xx = torch.cat([x_src, x_src])
        xx[b:] += d
        den = model(xx, x.new_full((2 * b,), s), **extra_args)
        if den.shape[0] != 2 * b:
            raise ValueError(f"sync-SDE model returned batch {den.shape[0]} for input batch {2 * b}")
        if callback is not None:
            callback({"x": xx[b:], "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": den[b:]})
        # Euler: D <- D + (2 (x0hat_tgt - x0hat_src)/s - D (2/s + [flow] 1/(1-s))) h; exponential: exact linear part
        a, c = step_coefficients(s, sl[i + 1], kind, integrator)
        d.mul_(a).add_(den[b:] - den[:b], alpha=c)
        if mask is not None:
            d.mul_(support)
    return x0 + d if mask is None else x0 + mask * d


def check_source(source: torch.Tensor, name: str = "latent_image") -> None:
    """Raise a clear ``ValueError`` unless the source latent is finite."""
    if not bool(torch.isfinite(source).all()):
        raise ValueError(f"{name}: the source latent contains NaN or infinite values. sync-SDE edits an existing "
                         "image: connect VAE Encode of a valid source image")


# ----------------------------------------------------------------------------------------------
# Host-independent pair denoiser (source + target, separate CFG, one call)
# ----------------------------------------------------------------------------------------------

def pair_denoiser(denoiser, source_cond, target_cond, source_uncond=None, target_uncond=None,
                  source_cfg: float = 1.0, target_cfg: float = 1.0, cat=torch.cat):
    """Wrap a conditional k-diffusion denoiser ``denoiser(x, sigma, cond=c)`` into the batched pair model
    ``sample_syncsde`` expects: source and target (and their negatives when a CFG scale is not 1) in ONE
    call, CFG applied per half on x0 (``uncond + (cond - uncond) * cfg``). Conds are per-row (B, ...)
    tensors concatenated with ``cat``."""
    use_neg = not (math.isclose(source_cfg, 1.0) and math.isclose(target_cfg, 1.0))
    if use_neg and (source_uncond is None or target_uncond is None):
        raise ValueError("pair_denoiser: a CFG scale other than 1 needs source_uncond and target_uncond")

    def model(x, sigma, **kw):
        b = x.shape[0] // 2
        xs, xt = x[:b], x[b:]
        if not use_neg:
            return denoiser(x, sigma, cond=cat([source_cond, target_cond]), **kw)
        out = denoiser(torch.cat([xs, xs, xt, xt]), torch.cat([sigma[:b], sigma[:b], sigma[b:], sigma[b:]]),
                       cond=cat([source_cond, source_uncond, target_cond, target_uncond]), **kw)
        sp, sn, tp, tn = out.chunk(4)
        src = sp if math.isclose(source_cfg, 1.0) else sn + (sp - sn) * source_cfg
        tgt = tp if math.isclose(target_cfg, 1.0) else tn + (tp - tn) * target_cfg
        return torch.cat([src, tgt])

    return model
