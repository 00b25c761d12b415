"""ITO: inference-time optimisation editing with preservation and guidance losses.

Paper: "Optimisation-based multi-modal semantic image editing" (anonymous authors, paper under double-blind
review; its text names no venue), Sec. 3.2, Eq. 1-7. DDIM: Song, Meng, Ermon, arXiv:2010.02502.
DiffEdit: Couairon et al., arXiv:2210.11427.

Pipeline (the paper's Fig. 1): (1) estimate the edit mask (Eq. 7, DiffEdit-style), (2) generate a guidance image
with ITO at lambda = 1 from a random-noise (SDEdit) encoding, (3) invert the source and the guidance image with DDIM
(Eq. 2) and decode with the edit condition, applying for the first ``t_u`` steps ``k`` Adam steps at lr ``gamma`` to
the latent ``y_t`` on ``(1 - lambda) L_G(y_t, g_t) + lambda L_REC(y_t, x_t, m)`` (Eq. 6).

Norms as printed: Eq. 3 and Eq. 4 are squared L2 norms, i.e. sums over every latent value (not means), so Eq. 6's
lambda balances a sum of squares against ``L_G = 1 - cos(y_t, g_t)`` (Eq. 5, over the whole flattened latent).

Reading of Eq. 4: printed as ``||m*y - (1-m)*x||^2``, which taken literally pulls the edit region towards zero and
never compares ``y`` with ``x``; the text says the loss preserves the source where the edit condition does not act,
so we implement ``L_REC = ||(1 - m) * (y_t - x_t)||_2^2`` (the mask inside the norm, as printed) with ``m = 1``
marking the edit region (a ComfyUI MASK's white). Without a mask ``m = 0`` everywhere: Eq. 3, whole-image
preservation ``||y_t - x_t||_2^2``.

Both losses live in latent space: the optimisation never backpropagates through the model, so it costs a few
element-wise passes over the latent per step. Adam is created afresh at every optimised step (its first step moves
each latent value by about ``lr`` towards lower loss, whatever the loss's overall scale), on the latent in the
model's native scale (for EPS models the VP-scaled ``x / sqrt(1 + sigma^2)``, as in the paper's DDIM latents; flow
latents as they are).

Flow models (the paper covers SD1.5 only): the same steps on the flow state ``(1 - sigma) x0 + sigma eps`` as the
model takes it. The VP-equivalent ``x / sqrt((1 - sigma)^2 + sigma^2)`` would shrink every step by up to 1/sqrt(2), and
it preserved less in the known-answer tests. ``lr`` is an absolute step: Adam's first step moves each optimised value
by exactly ``lr``, so it assumes latents of a real VAE's scale (about 1 after ``process_latent_in``). Latents 30 times
larger need an ``lr`` 30 times larger. At flow's ``sigma_max = 1`` the top state holds no signal, so the inverted
source trajectory carries the source in its noise part. The edit decode can then pull away from ``x_t`` by
``(x0_hat - x0) (s - s') / s`` per step, an amount that grows as sigma falls, and shifted schedules (SD3's shift 3)
leave their last steps at low sigma (``t_u`` = 22 of 25 stops at sigma 0.305). Preservation acts only on optimised
steps, so ``t_u`` near ``steps`` keeps the background most exactly. The first optimised step never changes anything
(``y_T = x_T``, so the gradient is zero).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import masks
from . import noise as _noise
from .editmap import blur
from .inversion import ddim_step, invert, noised_trajectory, predict
from .parameterization import get as _param
from .schedule import check_sigmas

# Paper defaults (Sec. 4 "Implementation"): 25 steps, encoding ratio 1.0, lambda 0.6, t_u 15, k 1, Adam lr 0.1,
# mask threshold 0.1. Mask seeds and encode strength follow DiffEdit's defaults, which the paper says it follows.
DEFAULTS = dict(steps=25, encode_ratio=1.0, lam=0.6, t_u=15, k=1, lr=0.1, tau=0.1,
                mask_seeds=10, mask_strength=0.5, mask_smooth=1.0, mask_clamp_ratio=3.0)


# ------------------------------------------------------------------------------------------------
# Checks and inputs
# ------------------------------------------------------------------------------------------------

def check_params(lam: float, t_u: int, k: int, lr: float, steps: int, has_guidance: bool) -> None:
    """Clear ValueErrors for bad ITO settings (named after the node inputs)."""
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and 0.0 <= lam <= 1.0):
        raise ValueError(f"lambda must be between 0 and 1 (1 = preservation only, 0 = guidance only); got {lam}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    if int(t_u) < 0 or int(t_u) > int(steps):
        raise ValueError(f"t_u ({t_u}) must be between 0 and the number of decoding steps ({steps}): "
                         "lower t_u or raise steps (the paper uses t_u = 15 of 25)")
    if int(k) < 0:
        raise ValueError(f"k (Adam steps per optimised step) must be >= 0; got {k}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be > 0; got {lr}")
    if lam < 1.0 and not has_guidance:
        raise ValueError(f"lambda = {lam} < 1 mixes in the guidance loss, which needs a guidance image: connect "
                         "PIXELS ITO Guidance Image to the sampler's guidance input, or set lambda = 1 "
                         "(preservation only)")


def prepare_mask(mask: torch.Tensor | None, batch: int, h: int, w: int, name: str = "mask") -> torch.Tensor | None:
    """Edit mask as ``(batch, 1, h, w)`` in [0, 1] (1 = edit region) on the latent grid, by the pack's one mask
    contract and resize rule (:mod:`pixels_core.masks`: centre crop to the aspect ratio, then bilinear, antialiased
    when shrinking, so a binary mask becomes its coverage fraction at the border). Batch 1 is shared."""
    if mask is None:
        return None
    return masks.to_grid(mask, batch, h, w, name).expand(batch, -1, -1, -1)


def _expand_like(t: torch.Tensor, ref: torch.Tensor, name: str) -> torch.Tensor:
    if t.ndim != ref.ndim or t.shape[1:] != ref.shape[1:]:
        raise ValueError(f"{name} has shape {tuple(t.shape)} but the source latent has {tuple(ref.shape)}: "
                         "encode it from an image of the source's size (same model family)")
    if t.shape[0] not in (1, ref.shape[0]):
        raise ValueError(f"{name} has batch {t.shape[0]} but the source has batch {ref.shape[0]}")
    return t.to(ref).expand_as(ref)


def opt_scale(sigma, param) -> float:
    """Factor that takes a sigma-form latent to the model's native scale (VP for EPS models, 1 for flow)."""
    p = _param(param)
    return 1.0 if p.is_flow else 1.0 / math.sqrt(1.0 + float(sigma) ** 2)


ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

# ------------------------------------------------------------------------------------------------
# Losses and the ITO step
# ------------------------------------------------------------------------------------------------

def rec_loss(y: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Preservation loss L_REC per sample, a squared L2 norm summed over the latent: Eq. 4 read as preservation
    outside the mask, ``||(1-m)(y-x)||^2``; without a mask Eq. 3, ``||y-x||^2``."""
    d = y - x if mask is None else (1.0 - mask) * (y - x)
    return (d * d).flatten(1).sum(1)


def guidance_loss(y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Guidance loss L_G per sample (Eq. 5): ``1 - cos(y, g)`` over the flattened latent."""
    return 1.0 - F.cosine_similarity(y.flatten(1), g.flatten(1), dim=1, eps=1e-12)


def objective(y, x, g, mask, lam: float) -> torch.Tensor:
    """Eq. 6 summed over the batch (each image is optimised independently): ``(1-lam) L_G + lam L_REC``."""
    total = y.new_zeros(())
    if lam > 0.0:
        total = total + lam * rec_loss(y, x, mask).sum()
    if lam < 1.0:
        total = total + (1.0 - lam) * guidance_loss(y, g).sum()
    return total


def ito_update(y: torch.Tensor, x_t: torch.Tensor | None, g_t: torch.Tensor | None = None,
               mask: torch.Tensor | None = None, *, lam: float = 0.6, k: int = 1, lr: float = 0.1,
               scale: float = 1.0) -> torch.Tensor:
    """``k`` Adam steps at lr ``lr`` on Eq. 6 for the latent ``y_t`` (Eq. 3-6); returns ``y'_t``.

    Adam as ``torch.optim.Adam`` with its defaults (betas 0.9/0.999, eps 1e-8), fresh state per call, written out
    so that no optimiser machinery (and its one-off ``torch._dynamo`` import, seconds long) runs inside a sampler.

    ``scale`` maps the latent to the space the step size refers to (see :func:`opt_scale`). Runs with autograd
    enabled even under ``torch.inference_mode`` (ComfyUI executes nodes in it) on cloned, non-inference copies.
    """
    if k <= 0:
        return y
    if lam < 1.0 and g_t is None:
        raise ValueError("lambda < 1 needs the guidance trajectory g_t")
    dtype = y.dtype
    with torch.inference_mode(False), torch.enable_grad():
        yv = (y.detach().float() * scale).clone()
        xv = None if lam <= 0.0 else (x_t.detach().float() * scale).clone()
        gv = None if lam >= 1.0 else g_t.detach().float().clone()
        mv = None if mask is None else mask.detach().float().clone()
        m1 = torch.zeros_like(yv)
        m2 = torch.zeros_like(yv)
        for t in range(1, int(k) + 1):
            yv.requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(yv, xv, gv, mv, lam), yv)
            yv = yv.detach()
            m1.mul_(ADAM_BETAS[0]).add_(grad, alpha=1.0 - ADAM_BETAS[0])
            m2.mul_(ADAM_BETAS[1]).addcmul_(grad, grad, value=1.0 - ADAM_BETAS[1])
            denom = (m2.sqrt() / math.sqrt(1.0 - ADAM_BETAS[1] ** t)).add_(ADAM_EPS)
            yv = yv.addcdiv(m1, denom, value=-lr / (1.0 - ADAM_BETAS[0] ** t))
        out = (yv / scale).to(dtype)
    return out


# ------------------------------------------------------------------------------------------------
# Samplers
# ------------------------------------------------------------------------------------------------

def _traj(traj, n: int, ref: torch.Tensor, name: str):
    if traj is None:
        return None
    if len(traj) != n + 1:
        raise ValueError(f"{name} has {len(traj)} states but the schedule has {n + 1} sigmas")
    return [_expand_like(t, ref, name) for t in traj]


def sample_ito(model, x, sigmas, extra_args=None, callback=None, disable=None, *, source_traj, guidance_traj=None,
               mask=None, lam: float = 0.6, t_u: int = 15, k: int = 1, lr: float = 0.1, param="eps"):
    """ITO decoding (Sec. 3.2, Eq. 1 + Eq. 6): DDIM from ``x`` with ``k`` Adam steps on ``y_t`` before each of the
    first ``t_u`` model calls, against ``source_traj[i]`` and ``guidance_traj[i]`` (trajectories indexed like
    ``sigmas``). ``mask`` is ``(B or 1, 1, h, w)`` with 1 = edit region (preserved outside).
    Model calls: ``len(sigmas) - 1``.
    """
    p = _param(param)
    sigmas = check_sigmas(sigmas, method="ITO", flow=p.is_flow)
    extra_args = {} if extra_args is None else extra_args
    n = len(sigmas) - 1
    check_params(lam, t_u, k, lr, n, guidance_traj is not None)
    src = _traj(source_traj, n, x, "source trajectory")
    gui = _traj(guidance_traj, n, x, "guidance trajectory") if lam < 1.0 else None
    m = prepare_mask(mask, x.shape[0], x.shape[-2], x.shape[-1])
    y = x
    for i in range(n):
        s = sigmas[i]
        if i < t_u:
            y = ito_update(y, src[i], None if gui is None else gui[i], m, lam=lam, k=k, lr=lr, scale=opt_scale(s, p))
        denoised, eps_hat = predict(model, y, s, extra_args, p)
        if callback is not None:
            callback({"x": y, "i": i, "sigma": s, "sigma_hat": s, "denoised": denoised})
        y = ddim_step(denoised, eps_hat, sigmas[i + 1], p)
    return y


def _phase(callback, offset: int, phase: str):
    if callback is None:
        return None
    return lambda d: callback({**d, "i": d["i"] + offset, "phase": phase})


def generate_guidance(model, x0, sigmas, noise, extra_args=None, callback=None, disable=None, *, mask=None,
                      t_u: int = 15, k: int = 1, lr: float = 0.1, param="eps"):
    """Guidance image g_0 (Sec. 3.2 "Guidance Image Generation"): ITO with lambda = 1 (preservation
    only) from a random-noise (SDEdit) encoding of ``x0`` with ``noise``, decoded with the edit condition in
    ``extra_args``. The preservation target ``x_t`` is the same noised source. Model calls: ``len(sigmas) - 1``."""
    traj = noised_trajectory(x0, noise, sigmas, param)
    return sample_ito(model, traj[0], sigmas, extra_args, _phase(callback, 0, "guidance"), disable,
                      source_traj=traj, mask=mask, lam=1.0, t_u=t_u, k=k, lr=lr, param=param)


def edit(model, x0, sigmas, source_args=None, edit_args=None, callback=None, disable=None, *, mask=None,
         guidance=None, lam: float = 0.6, t_u: int = 15, k: int = 1, lr: float = 0.1, param="eps",
         fixed_point_iters: int = 0, guidance_args=None):
    """The final edit of the paper's Fig. 1b: DDIM-invert the source (``source_args``) and the guidance latent
    (``guidance_args``, default the edit condition ``edit_args``), then decode with ``edit_args`` under ITO.
    Callback ``i`` runs over all phases.
    Model calls: ``(len(sigmas) - 1) * (2 + fixed_point_iters)``, plus ``(len(sigmas) - 1) * (1 + fixed_point_iters)``
    when a guidance latent is used (lambda < 1)."""
    sigmas = check_sigmas(sigmas, method="ITO", flow=_param(param).is_flow)
    n = len(sigmas) - 1
    check_params(lam, t_u, k, lr, n, guidance is not None)
    traj = invert(model, x0, sigmas, source_args, _phase(callback, 0, "invert source"), disable,
                  param=param, fixed_point_iters=fixed_point_iters)
    gtraj, off = None, n
    if lam < 1.0:
        g0 = _expand_like(guidance, x0, "guidance latent")
        gtraj = invert(model, g0, sigmas, edit_args if guidance_args is None else guidance_args,
                       _phase(callback, n, "invert guidance"), disable,
                       param=param, fixed_point_iters=fixed_point_iters)
        off = 2 * n
    return sample_ito(model, traj[0], sigmas, edit_args, _phase(callback, off, "edit"), disable, source_traj=traj,
                      guidance_traj=gtraj, mask=mask, lam=lam, t_u=t_u, k=k, lr=lr, param=param)


def edit_steps(steps: int, guidance: bool) -> int:
    """Progress steps reported by :func:`edit` (one per DDIM step of each phase)."""
    return steps * (3 if guidance else 2)


# ------------------------------------------------------------------------------------------------
# Edit mask (Eq. 7)
# ------------------------------------------------------------------------------------------------

# salt of the mask's noise draws: draw i is pixels_core.noise.randn(shape, seed, MASK_SALT, i), on the CPU
MASK_SALT = "ito mask"


def estimate_mask(model, x0, sigma, source_args=None, edit_args=None, callback=None, disable=None, *,
                  n: int = 10, seed: int = 0, tau: float = 0.1, smooth: float = 1.0, clamp_ratio: float = 3.0,
                  param="eps"):
    """Edit mask of Eq. 7 (DiffEdit-style): ``mean_i |eps(x_s, C_edit) - eps(x_s, C_orig)|`` over ``n`` seeds and
    the channels, with ``x_s`` the source noised to ``sigma`` with draw ``i`` (``pixels_core.noise.randn`` seeded by
    ``(seed, MASK_SALT, i)``: same mask on every device); normalised as DiffEdit does (clamped at ``clamp_ratio`` x
    its mean, divided by that), Gaussian-smoothed (``smooth`` latent pixels; the paper gives no value) with
    :func:`pixels_core.editmap.blur` and thresholded at ``tau``. Returns ``(binary, soft)``, each ``(B, 1, h, w)``.
    Model calls: ``2 n``."""
    p = _param(param)
    if int(n) < 1:
        raise ValueError(f"mask seeds n must be >= 1; got {n}")
    if not (0.0 <= tau < 1.0):
        raise ValueError(f"threshold tau must be in [0, 1); got {tau}")
    if float(sigma) <= 0:
        raise ValueError(f"mask noise level must be > 0; got {float(sigma)}")
    if not (math.isfinite(smooth) and smooth >= 0):
        raise ValueError(f"mask smoothing must be >= 0 (latent pixels); got {smooth}")
    source_args = {} if source_args is None else source_args
    edit_args = {} if edit_args is None else edit_args
    acc = torch.zeros((x0.shape[0], 1, *x0.shape[2:]), dtype=torch.float32, device=x0.device)
    for i in range(int(n)):
        xs = p.add_noise(sigma, _noise.randn(x0.shape, seed, MASK_SALT, i).to(x0), x0)
        _, e_src = predict(model, xs, sigma, source_args, p)
        d_edit, e_edit = predict(model, xs, sigma, edit_args, p)
        acc += (e_edit - e_src).abs().float().mean(1, keepdim=True)
        if callback is not None:
            callback({"x": xs, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": d_edit, "phase": "mask"})
    diff = acc / int(n)
    cap = (clamp_ratio * diff.flatten(1).mean(1)).view(-1, 1, 1, 1)
    soft = torch.where(cap > 0, diff.clamp(max=cap) / cap.clamp_min(1e-30), torch.zeros_like(diff))
    if smooth > 0:  # the pack's one Gaussian (scipy's kernel, truncate 4), on the CPU: the map is small
        soft = blur(soft[:, 0].cpu(), float(smooth))[:, None].to(soft.device)
    return (soft > tau).to(soft.dtype), soft


def sigma_at_strength(sigmas: torch.Tensor, strength: float) -> float:
    """Noise level ``strength`` of the way up a descending schedule (1 = its top, DiffEdit's encode strength)."""
    if not (0.0 < strength <= 1.0):
        raise ValueError(f"mask strength must be in (0, 1]; got {strength}")
    sigmas = check_sigmas(sigmas, method="ITO")
    n = len(sigmas) - 1
    idx = min(n - 1, max(0, int(round((1.0 - strength) * n))))
    return float(sigmas[idx])


def encode_steps(sigmas: torch.Tensor, ratio: float) -> torch.Tensor:
    """The last ``round(ratio * N)`` steps of a full schedule (encoding ratio t_E / T of the paper)."""
    if not (0.0 < ratio <= 1.0):
        raise ValueError(f"encode_ratio must be in (0, 1]; got {ratio}")
    sigmas = check_sigmas(sigmas, method="ITO")
    n = len(sigmas) - 1
    run = max(1, int(round(ratio * n)))
    return sigmas[n - run:]


__all__ = ["DEFAULTS", "check_params", "prepare_mask", "opt_scale", "rec_loss", "guidance_loss", "objective",
           "ito_update", "sample_ito", "generate_guidance", "edit", "edit_steps", "estimate_mask",
           "sigma_at_strength", "encode_steps"]
