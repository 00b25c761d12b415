"""Benchmark (not a test): sync-SDE time per step against plain sampling and a FlowEdit-style loop.

    python benchmarks/bench_syncsde.py [--repeats 5] [--size 64] [--threads 1]

Same small conv denoiser, same steps (28-step flow schedule, start index 4: 24 steps run) for every method,
one latent of 4 x size x size. Timings are best-of-N, interleaved (the machine is noisy). Printed ratios:
  sync-SDE / plain Euler sampling of one image (target <= 2.05x: two predictions in one batched call)
  sync-SDE / FlowEdit-style loop at equal steps (target <= 1.05x)
for CFG 1 on both sides (plain = 1 prediction per step) and CFG != 1 (plain = cond + uncond per step).
"""
from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from pixels_core import syncsde as S  # noqa: E402


class ConvDenoiser(torch.nn.Module):
    """A small conditional conv net in the k-diffusion convention: ``model(x, sigma, cond) -> x0`` (flow)."""

    def __init__(self, ch=4, width=32, cond_dim=8):
        super().__init__()
        self.inp = torch.nn.Conv2d(ch, width, 3, padding=1)
        self.mid = torch.nn.Conv2d(width, width, 3, padding=1)
        self.out = torch.nn.Conv2d(width, ch, 3, padding=1)
        self.emb = torch.nn.Linear(cond_dim + 1, width)

    sleep_ms_per_sample = 0.0  # > 0: add a fixed wall-clock cost per sample (a model whose cost is linear in batch)

    def forward(self, x, sigma, cond=None):
        if self.sleep_ms_per_sample > 0:
            time.sleep(self.sleep_ms_per_sample * x.shape[0] / 1e3)
        s = sigma.reshape(-1, 1)
        e = self.emb(torch.cat([cond, s], 1))[:, :, None, None]
        h = torch.nn.functional.silu(self.inp(x) + e)
        h = torch.nn.functional.silu(self.mid(h))
        v = self.out(h)  # velocity eps - x0
        return x - sigma.reshape(-1, 1, 1, 1) * v


def flow_sigmas(n=28, shift=3.0):
    t = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).float()


def plain_euler(den, x0, sigmas, start, cond, uncond, cfg, seed):
    """Plain sampling of one image (k-diffusion Euler) over the same steps, host-style CFG (one call)."""
    g = torch.Generator().manual_seed(seed)
    s0 = float(sigmas[start])
    x = (1 - s0) * x0 + s0 * torch.randn(x0.shape, generator=g)
    for i in range(start, sigmas.numel() - 1):
        s = sigmas[i]
        if math.isclose(cfg, 1.0):
            d = den(x, s.expand(1), cond=cond)
        else:
            c, u = den(torch.cat([x, x]), s.expand(2), cond=torch.cat([cond, uncond])).chunk(2)
            d = u + (c - u) * cfg
        x = x + (x - d) / s * (sigmas[i + 1] - s)
    return x


def flowedit_loop(model, x0, sigmas, start, seed):
    """FlowEdit-style loop (Kulikov et al.): fresh noise per step, V_tgt - V_src accumulated; same pair model."""
    g = torch.Generator().manual_seed(seed)
    z = torch.zeros_like(x0)
    for i in range(start, sigmas.numel() - 1):
        s = float(sigmas[i])
        xs = (1 - s) * x0 + s * torch.randn(x0.shape, generator=g)
        xt = xs + z
        d = model(torch.cat([xs, xt]), sigmas[i].expand(2))
        vs, vt = (xs - d[:1]) / s, (xt - d[1:]) / s
        z = z + (vt - vs) * (float(sigmas[i + 1]) - s)
    return x0 + z


def best_of(fns: dict, repeats: int) -> dict:
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():  # interleaved
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--size", type=int, default=32, help="latent side (32 = a 256 px SD image)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cost-ms", type=float, default=10.0, help="fixed cost per sample of the second run")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    den = ConvDenoiser().eval()
    sig = flow_sigmas(28)
    start = S.DEMO_START_INDEX
    steps = sig.numel() - 1 - start
    x0 = torch.randn(1, 4, a.size, a.size)
    c_src, c_tgt, neg = torch.randn(1, 8), torch.randn(1, 8), torch.zeros(1, 8)
    print(f"latent 1x4x{a.size}x{a.size}, {steps} steps (28-step schedule from index {start}), "
          f"threads {a.threads}, best of {a.repeats}")
    with torch.no_grad():
        triv = lambda x, s, **k: x * 0.5  # noqa: E731  (the loops' own cost: no model work at all)
        t = best_of({"syncsde": lambda: S.sample_syncsde(triv, x0, sig, source=x0, kind="flow", seed=1, disable=True),
                     "flowedit": lambda: flowedit_loop(triv, x0, sig, start, 1)}, 3 * a.repeats)
        print(f"[loop overhead, trivial model] ms/step: sync-SDE {t['syncsde'] / steps * 1e3:.3f} (path included), "
              f"FlowEdit-style {t['flowedit'] / steps * 1e3:.3f}")
        run_all(den, x0, sig, start, steps, c_src, c_tgt, neg, a.size, a.repeats)
        print(f"--- same, with a fixed extra cost of {a.cost_ms} ms per sample in every model call (wall-clock sleep: "
              "a model whose cost is linear in batch, immune to this machine's contention) ---")
        den.sleep_ms_per_sample = a.cost_ms
        run_all(den, x0, sig, start, steps, c_src, c_tgt, neg, a.size, max(5, a.repeats // 3))


def run_all(den, x0, sig, start, steps, c_src, c_tgt, neg, size, repeats):
    class A:
        pass
    a = A()
    a.size, a.repeats = size, repeats
    if True:
        for label, scfg, tcfg, pcfg in (("CFG 1 / 1", 1.0, 1.0, 1.0), ("CFG 3.5 / 6.0", 3.5, 6.0, 6.0)):
            pair = S.pair_denoiser(den, c_src, c_tgt, neg, neg, source_cfg=scfg, target_cfg=tcfg)
            fns = {
                "plain": lambda: plain_euler(den, x0, sig, start, c_tgt, neg, pcfg, 1),
                "flowedit": lambda: flowedit_loop(pair, x0, sig, start, 1),
                "syncsde": lambda: S.sample_syncsde(pair, x0, sig, source=x0, kind="flow", seed=1, disable=True),
                "syncsde_resample": lambda: S.sample_syncsde(pair, x0, sig, source=x0, kind="flow", seed=1,
                                                             resample=True, disable=True),
            }
            nb = 2 if math.isclose(pcfg, 1.0) else 4
            xb, cb, sb = torch.randn(nb, 4, a.size, a.size), torch.randn(nb, 8), torch.full((nb,), 0.5)
            fns["model_x1"] = lambda: den(xb[:nb // 2], sb[:nb // 2], cond=cb[:nb // 2])
            fns["model_x2"] = lambda: den(xb, sb, cond=cb)
            best_of(fns, 1)  # warm-up
            t = best_of(fns, a.repeats)
            t["model_x1"], t["model_x2"] = t["model_x1"] * steps, t["model_x2"] * steps
            per = {k: v / steps * 1e3 for k, v in t.items()}
            print(f"[{label}] ms/step: " + ", ".join(f"{k} {v:.2f}" for k, v in per.items()))
            print(f"[{label}] sync-SDE / plain    = {t['syncsde'] / t['plain']:.3f}x  (target <= 2.05x)")
            print(f"[{label}] sync-SDE / FlowEdit = {t['syncsde'] / t['flowedit']:.3f}x  (target <= 1.05x)")
            print(f"[{label}] resample / FlowEdit = {t['syncsde_resample'] / t['flowedit']:.3f}x")
            print(f"[{label}] (the model alone, batch {nb} / batch {nb // 2} = {t['model_x2'] / t['model_x1']:.3f}x: "
                  f"the floor for sync-SDE / plain on this machine)")


if __name__ == "__main__":
    main()
