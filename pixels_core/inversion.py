"""DDIM inversion and decoding for ITO ("Optimisation-based multi-modal semantic image editing", anonymous
submission; Eq. 1 is DDIM's deterministic step, Eq. 2 its inversion), plus the random-noise encoding of its guidance
image (Sec. 3.2).

The DDIM maths lives in :mod:`pixels_core.ddim`, the pack's one DDIM step and inversion; this module re-exports it
under the names ITO uses: :func:`invert` is :func:`pixels_core.ddim.ddim_invert` (default ``convention="exact"``:
N steps, the first from sigma 0 evaluated at the upper level, optional fixed-point refinement), :func:`ddim_step`
is Eq. 1 (and Eq. 2 upward) in sigma form, :func:`sample_ddim` the decoder.
"""
from __future__ import annotations

import torch

from . import schedule as _schedule
from .ddim import ddim_invert as invert
from .ddim import ddim_step, predict, sample_ddim, x0_from_eps
from .parameterization import get as _param

__all__ = ["check_sigmas", "ddim_step", "invert", "noised_trajectory", "predict", "sample_ddim", "x0_from_eps"]


def check_sigmas(sigmas: torch.Tensor, name: str = "sigmas") -> torch.Tensor:
    """The pack's schedule check (:func:`pixels_core.schedule.check_sigmas`) under its old name."""
    return _schedule.check_sigmas(sigmas, name)


def noised_trajectory(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor, param="eps") -> list[torch.Tensor]:
    """Random-noise (SDEdit) encoding of ``x0`` with one fixed ``noise``: ``[add_noise(s, noise, x0) for s in sigmas]``.

    Used for ITO's guidance image (Sec. 3.2, "encoded using random noise, instead of DDIM inversion"). No model calls.
    """
    p = _param(param)
    sigmas = _schedule.check_sigmas(sigmas)
    if noise.shape != x0.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but the latent has {tuple(x0.shape)}")
    return [p.add_noise(s, noise, x0) for s in sigmas]
