"""sync-SDE's step error on a model that knows the answer: the authors' Euler step vs the exponential integrator.

    python docs/syncsde_step_error.py

Prints a markdown table (pasted in docs/syncsde-derivation.md, section 5) of the relative target error
``|output - x_tgt| / |x_tgt - x_src|`` after a sync-SDE edit, for 10, 20, 40 and 80 steps from step 4 (the nodes'
default start), with both integrators of ``pixels_core.syncsde.sample_syncsde``.

The model is the exact posterior mean of a small known set of latents (three unit-normal points a, b, c; 4x8x8 like
an SD1.x latent, 16x8x8 like an SD3 latent): the source prompt allows only ``a`` (the source image), the target prompt
only ``b`` (the known answer), the empty prompt all three. At CFG 1 the two predictions are ``a`` and ``b`` whatever
the state (the host tests' known-answer model); with CFG (the example workflows' 3 / 7.5 on SD1.x, 3.5 / 6 on SD3)
each prediction is ``u + w (c - u)`` with ``u`` the posterior mean of the whole set, which depends on the state, and
the answer is still ``b`` (at low noise every prediction collapses onto the nearest point). Schedules: ComfyUI's
``simple`` scheduler on SD1.x's discrete sigmas (scaled-linear betas 0.00085 .. 0.012) and on SD3's flow sigmas
(shift 3). Errors are the mean over 8 path seeds (at CFG 1 they do not depend on the seed).
"""
from __future__ import annotations

import pathlib
import sys

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pixels_core import syncsde as S  # noqa: E402

STEPS = (10, 20, 40, 80)
START = 4
SEEDS = range(8)


def sd1_sigmas() -> torch.Tensor:
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    return ((1 - ac) / ac).sqrt()


def sd3_sigmas(shift: float = 3.0) -> torch.Tensor:
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    return shift * t / (1 + (shift - 1) * t)


def simple(all_sigmas: torch.Tensor, n: int) -> torch.Tensor:
    """ComfyUI's ``simple`` scheduler: n sigmas evenly spaced in the model's table from the top, then 0."""
    ss = len(all_sigmas) / n
    return torch.tensor([float(all_sigmas[-(1 + int(x * ss))]) for x in range(n)] + [0.0], dtype=torch.float64)


def posterior_mean(x: torch.Tensor, s: float, points: torch.Tensor, flow: bool) -> torch.Tensor:
    """E[x0 | x] for x0 uniform over ``points`` (K, ...), ``x = alpha x0 + s eps``; ``x`` (B, ...)."""
    a = 1.0 - s if flow else 1.0
    d2 = ((x[:, None] - a * points[None]) ** 2).flatten(2).sum(-1)  # (B, K)
    w = torch.softmax(-d2 / (2 * s * s), dim=1)
    return torch.einsum("bk,k...->b...", w, points)


def known_answer_model(points: torch.Tensor, flow: bool, cfg_src: float, cfg_tgt: float):
    a, b = points[0:1], points[1:2]

    def model(xx, sigma, **kw):
        s = float(sigma[0])
        xs, xt = xx[:1], xx[1:]
        if cfg_src == 1.0 and cfg_tgt == 1.0:
            return torch.cat([a, b])
        us, ut = posterior_mean(xs, s, points, flow), posterior_mean(xt, s, points, flow)
        return torch.cat([us + cfg_src * (a - us), ut + cfg_tgt * (b - ut)])

    return model


def target_error(kind: str, n: int, integrator: str, cfg: tuple[float, float]) -> float:
    flow = kind == "flow"
    shape = (3, 16 if flow else 4, 8, 8)
    points = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigmas = simple(sd3_sigmas() if flow else sd1_sigmas(), n)
    model = known_answer_model(points, flow, *cfg)
    src, tgt = points[0:1], points[1:2]
    errs = []
    for seed in SEEDS if cfg != (1.0, 1.0) else [0]:
        out = S.sample_syncsde(model, src, sigmas, source=src, kind=kind, start_index=START, seed=seed,
                               integrator=integrator, disable=True)
        errs.append(float((out - tgt).norm() / (tgt - src).norm()))
    return sum(errs) / len(errs)


def fmt(v: float) -> str:
    return "< 1e-15" if v < 1e-15 else f"{v:.2e}"


def main():
    rows = [("SD1.x (eps), `simple`", "eps", (1.0, 1.0)), ("SD1.x (eps), `simple`", "eps", (3.0, 7.5)),
            ("SD3 (flow, shift 3), `simple`", "flow", (1.0, 1.0)), ("SD3 (flow, shift 3), `simple`", "flow", (3.5, 6.0))]
    print("| model, scheduler | CFG source / target | integrator | " + " | ".join(f"{n} steps" for n in STEPS) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in STEPS) + " |")
    for name, kind, cfg in rows:
        for integrator in S.INTEGRATORS:
            errs = [target_error(kind, n, integrator, cfg) for n in STEPS]
            label = "Euler (authors)" if integrator == "euler" else "exponential"
            print(f"| {name} | {cfg[0]:g} / {cfg[1]:g} | {label} | " + " | ".join(fmt(e) for e in errs) + " |")


if __name__ == "__main__":
    main()
