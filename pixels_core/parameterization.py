"""How a model family adds noise, the only host knowledge the samplers need.

EPS/VE diffusion models (SD1.x, SD2, SDXL): ``x = x0 + sigma * noise``.
Rectified flow / CONST models (SD3, Flux): ``x = (1 - sigma) * x0 + sigma * noise``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def _bcast(sigma, ref: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=ref.dtype, device=ref.device)
    return sigma.reshape(sigma.shape + (1,) * (ref.ndim - sigma.ndim)) if sigma.ndim else sigma


@dataclass(frozen=True)
class Parameterization:
    """Noise model of a family: ``kind`` is ``"eps"`` or ``"flow"``."""

    kind: str

    def __post_init__(self):
        if self.kind not in ("eps", "flow"):
            raise ValueError(f"parameterization kind must be 'eps' or 'flow', got {self.kind!r}")

    @property
    def is_flow(self) -> bool:
        return self.kind == "flow"

    def alpha(self, sigma, ref: torch.Tensor) -> torch.Tensor:
        """Scale of the clean signal at ``sigma`` (1 for EPS, ``1 - sigma`` for flow)."""
        s = _bcast(sigma, ref)
        return 1.0 - s if self.is_flow else torch.ones_like(s)

    def add_noise(self, sigma, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """``x_sigma`` from clean ``x0`` and unit ``noise``."""
        s = _bcast(sigma, x0)
        if self.is_flow:
            return (1.0 - s) * x0 + s * noise
        return x0 + s * noise

    def eps(self, x: torch.Tensor, sigma, x0: torch.Tensor) -> torch.Tensor:
        """Noise implied by state ``x`` and clean estimate ``x0``."""
        s = _bcast(sigma, x)
        return (x - self.alpha(sigma, x) * x0) / s


EPS = Parameterization("eps")
FLOW = Parameterization("flow")


def get(kind) -> Parameterization:
    """A :class:`Parameterization` from ``"eps"``/``"flow"`` (or pass one through)."""
    return kind if isinstance(kind, Parameterization) else Parameterization(str(kind))
