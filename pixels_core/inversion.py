"""Deterministic (DDIM) inversion in sigma space, recording the trajectory (ito-paper.txt Eq. 1-2; design.md §3.2).

The DDIM update of Eq. 1 written in the k-diffusion sigma form is one step that keeps the predicted noise fixed:
``x' = alpha(s') * x0_hat + s' * eps_hat``. For EPS/VE models (``x = x0 + s*eps``) this is Euler on the
probability-flow ODE in sigma; for flow/CONST models (``x = (1-s) x0 + s eps``) it is the Euler step of the
velocity ``eps - x0``. Inversion (Eq. 2) runs the same step upward in sigma ("reverse ODE" for EPS, reverse Euler
for flow), and optional fixed-point refinement makes each inverse step the exact inverse of the forward DDIM step.

Trajectories are indexed like the schedule: ``traj[i]`` is the state at ``sigmas[i]`` (``sigmas`` descending, the
last one usually 0), so ``traj[-1]`` is the clean latent and ``traj[0]`` the encoded one.
"""
from __future__ import annotations

import torch

from .parameterization import get as _param


def check_sigmas(sigmas: torch.Tensor, name: str = "sigmas") -> torch.Tensor:
    """A 1-D, strictly descending, non-negative schedule with at least one step, or a clear ValueError."""
    sigmas = torch.as_tensor(sigmas)
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"{name}: need a 1-D schedule with at least 2 values (one step), got shape {tuple(sigmas.shape)}")
    if not torch.isfinite(sigmas).all() or (sigmas < 0).any():
        raise ValueError(f"{name}: every sigma must be finite and >= 0")
    if not (sigmas[1:] < sigmas[:-1]).all():
        raise ValueError(f"{name}: the schedule must be strictly descending (noisy to clean)")
    return sigmas


def _s_in(x: torch.Tensor, sigma) -> torch.Tensor:
    return torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(()).expand(x.shape[0])


def predict(model, x: torch.Tensor, sigma, extra_args: dict, param) -> tuple[torch.Tensor, torch.Tensor]:
    """One model call: ``(x0_hat, eps_hat)`` at ``x`` treated as the state at noise level ``sigma`` (> 0)."""
    denoised = model(x, _s_in(x, sigma), **extra_args)
    return denoised, param.eps(x, sigma, denoised)


def ddim_step(x0_hat: torch.Tensor, eps_hat: torch.Tensor, sigma_next, param) -> torch.Tensor:
    """Eq. 1 (and Eq. 2 upward) in sigma form: the state at ``sigma_next`` with the same ``(x0_hat, eps_hat)``."""
    p = _param(param)
    s = torch.as_tensor(sigma_next, dtype=x0_hat.dtype, device=x0_hat.device)
    return p.alpha(s, x0_hat) * x0_hat + s * eps_hat


def x0_from_eps(x: torch.Tensor, eps_hat: torch.Tensor, sigma, param) -> torch.Tensor:
    """Clean latent implied by the state ``x`` at ``sigma`` and the noise ``eps_hat``."""
    p = _param(param)
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return (x - s * eps_hat) / p.alpha(s, x)


def invert(model, x0: torch.Tensor, sigmas: torch.Tensor, extra_args=None, callback=None, disable=None, *,
           param="eps", fixed_point_iters: int = 0) -> list[torch.Tensor]:
    """DDIM inversion (ito-paper.txt Eq. 2): encode ``x0`` along the schedule, returning the trajectory.

    The step from ``s_lo`` up to ``s_hi`` evaluates the model at the current state and level ``s_lo`` (at
    ``s_lo = 0``, where a denoiser gives no noise estimate, at ``s_hi``, like diffusers' first inverse step).
    ``fixed_point_iters > 0`` refines each step so that the forward DDIM step from the result lands on the
    current state (costs that many extra model calls per step; 0 is the paper's plain DDIM inversion).
    Returns ``[x_{sigmas[0]}, ..., x_{sigmas[-1]}]`` (the last entry is ``x0`` if ``sigmas[-1] == 0``).
    Model calls: ``(len(sigmas) - 1) * (1 + fixed_point_iters)``.
    """
    p = _param(param)
    sigmas = check_sigmas(sigmas)
    extra_args = {} if extra_args is None else extra_args
    if int(fixed_point_iters) < 0:
        raise ValueError(f"fixed_point_iters must be >= 0, got {fixed_point_iters}")
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


def noised_trajectory(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor, param="eps") -> list[torch.Tensor]:
    """Random-noise (SDEdit) encoding of ``x0`` with one fixed ``noise``: ``[add_noise(s, noise, x0) for s in sigmas]``.

    Used for the guidance image (ito-paper.txt Sec. 3.2, "encoded using random noise, instead of DDIM inversion").
    No model calls.
    """
    p = _param(param)
    sigmas = check_sigmas(sigmas)
    if noise.shape != x0.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but the latent has {tuple(x0.shape)}")
    return [p.add_noise(s, noise, x0) for s in sigmas]


def sample_ddim(model, x, sigmas, extra_args=None, callback=None, disable=None, *, param="eps"):
    """Plain deterministic DDIM sampling (ito-paper.txt Eq. 1) from ``x`` at ``sigmas[0]``: the decoder of the inversion."""
    p = _param(param)
    sigmas = check_sigmas(sigmas)
    extra_args = {} if extra_args is None else extra_args
    for i in range(len(sigmas) - 1):
        denoised, eps_hat = predict(model, x, sigmas[i], extra_args, p)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = ddim_step(denoised, eps_hat, sigmas[i + 1], p)
    return x
