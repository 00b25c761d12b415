"""OIG's DDIM inversion on a model that knows the answer: how well each inversion reconstructs the source.

    python docs/oig_inversion_error.py

Prints a markdown table of the relative reconstruction error ``|x0_rec - x0| / |x0|``: the source latent ``x0`` is
DDIM-inverted with the source condition and regenerated from the result with the same condition by OIG's
deterministic sampler with both guidance weights at 0 (``pixels_core.oig.sample_oig(..., invert=True)``), which is
what OIG's source pass sees. Rows are the inversions of ``pixels_core.ddim.ddim_invert``:

- ``authors``: pix2pix-zero's inversion as OIG (Lee, Kang, Han, WACV 2025) ships it, N - 2 steps, alphas read one
  training timestep back in SD1.x's discrete table (``train_sigmas``); ``authors, no table``: the same read at the
  schedule's own sigmas;
- ``exact``: the pack's N-step inverse of the sampler, plain (``refine 0``) and with 2 fixed-point refinements per
  step (``inversion_refine``, its default in ``sample_oig``).

The model is the exact posterior mean of a known data set, latents ``x0 ~ N(mean, std^2 I)`` of SD1.x's size
class (4x8x8, ``mean`` unit-normal, ``std`` 0.5 and 1.0; pixels_core.analytic.GaussianDenoiser), and ``x0`` is a draw
from it, so the deterministic sampler maps the exact inverse back onto ``x0`` and any error is the inversion's.
(A finite set of points is no test here: at the lowest sigma its posterior mean snaps onto the nearest point, so
every inversion "reconstructs" exactly.) Schedule: ComfyUI's ``ddim_uniform`` on SD1.x's discrete sigmas
(scaled-linear betas 0.00085 .. 0.012), the authors' DDIM timesteps. Mean over 8 sources, float64.
"""
from __future__ import annotations

import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pixels_core import oig  # noqa: E402
from pixels_core.analytic import GaussianDenoiser  # noqa: E402

STEPS = (10, 20, 50)
SOURCES = range(8)
STDS = (0.5, 1.0)


def sd1_sigmas() -> torch.Tensor:
    """SD1.x's discrete sigmas, index = training timestep (ComfyUI's model_sampling.sigmas)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    return ((1 - ac) / ac).sqrt()


def ddim_uniform(table: torch.Tensor, n: int) -> torch.Tensor:
    """ComfyUI's ddim_uniform scheduler: timesteps 1, 1 + 1000 // n, ... (diffusers' steps_offset 1), then 0."""
    ts = list(range(1, len(table), max(len(table) // n, 1)))
    return torch.cat([table[ts].flip(0), table.new_zeros(1)])


def main() -> None:
    table = sd1_sigmas()
    mean = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = [("authors", dict(inversion="authors", train_sigmas=table)),
            ("authors, no table", dict(inversion="authors")),
            ("exact, refine 0", dict(inversion="exact", inversion_refine=0)),
            ("exact (refine 2, its default)", dict(inversion="exact"))]
    print("| inversion | " + " | ".join(f"std {sd}, N = {n}" for sd in STDS for n in STEPS) + " |")
    print("|---|" + "---|" * (len(STDS) * len(STEPS)))
    for name, kw in rows:
        errs = []
        for sd in STDS:
            model = GaussianDenoiser(mean, std=sd)
            for n in STEPS:
                sig = ddim_uniform(table, n)
                e = 0.0
                for k in SOURCES:
                    x0 = mean + sd * torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(100 + k),
                                                 dtype=torch.float64)
                    rec = oig.sample_oig(model, x0, sig, clip_weight=0.0, struct_weight=0.0, invert=True, **kw)
                    e += float((rec - x0).norm() / x0.norm())
                errs.append(e / len(SOURCES))
        print(f"| {name} | " + " | ".join(f"{v:.2e}" for v in errs) + " |")

if __name__ == "__main__":
    main()
