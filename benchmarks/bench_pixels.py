"""Benchmark: PIXELS progressive sampling vs plain sampling with the same denoiser, steps and sampler.

Prints, in one run, the time ratio and the peak-memory ratio for K = 1 and K = 4 exemplars, and K = 4 vs K = 1.
The denoiser is a small conv net (random weights) on an SD-sized latent (4 x 64 x 64 = a 512 px image), so
one model call costs what a light UNet costs on this machine; the sampler is Euler (exact Algorithm 1).
Peak memory: on CUDA, torch's peak allocated bytes; on CPU, peak resident memory of a fresh subprocess per
configuration (includes the model and torch itself, as a user's process does).

    python benchmarks/bench_pixels.py [--steps 20] [--repeats 5] [--size 64] [--device cpu] [--threads 1]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pixels_core import pixels as px  # noqa: E402
from pixels_core.parameterization import EPS  # noqa: E402


def make_model(device, width=96, depth=4):
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(4, width, 3, padding=1), torch.nn.SiLU()]
    for _ in range(depth):
        layers += [torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.SiLU()]
    layers += [torch.nn.Conv2d(width, 4, 3, padding=1)]
    net = torch.nn.Sequential(*layers).to(device).eval()

    def model(x, sigma, **kw):  # EPS-prediction net turned into a denoiser, as ComfyUI does
        s = sigma.reshape(-1, 1, 1, 1)
        return x - s * net(x / (s * s + 1).sqrt())
    return model


def inputs(k, size, steps, device):
    g = torch.Generator().manual_seed(1)
    r = lambda: torch.randn(1, 4, size, size, generator=g).to(device)  # noqa: E731
    src, noise = r(), r()
    exs = [r() for _ in range(k)]
    ens = [r() for _ in range(k)]
    ramp = torch.linspace(0, 1, size).expand(1, 1, size, size).clone()
    maps = [(ramp + 0.1 * j).clamp(0, 1) for j in range(k)]
    for j, m in enumerate(maps):  # each exemplar fills a column of its own (one that fills none is refused)
        m[..., size - 1 - j] = 0.0
    maps = [m.to(device) for m in maps]
    sigmas = torch.cat([torch.linspace(14.6, 0.03, steps) ** 1.0, torch.zeros(1)]).to(device)
    return src, noise, exs, ens, maps, sigmas


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def run_once(mode, k, size, steps, device, model=None):
    model = model or make_model(device)
    src, noise, exs, ens, maps, sigmas = inputs(max(k, 1), size, steps, device)
    x = EPS.add_noise(sigmas[0], noise, src)

    @torch.no_grad()
    def fn():
        if mode == "plain":
            return px.euler_step_sampler(model, x, sigmas)
        return px.sample_pixels(model, x, sigmas, source=src, noise=noise, exemplars=exs[:k],
                                exemplar_noises=ens[:k], edit_maps=maps[:k])
    return fn


def child(mode, k, size, steps, device):
    run_once(mode, k, size, steps, device)()
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak": peak}))


def peak_memory(mode, k, args):
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        run_once(mode, k, args.size, args.steps, args.device)()
        return torch.cuda.max_memory_allocated()
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(k), "--size", str(args.size),
                          "--steps", str(args.steps), "--device", args.device], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier timings on a shared machine)")
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # random-weight nets drift into denormals, whose cost differs run to run
    if args.child:
        return child(args.child[0], int(args.child[1]), args.size, args.steps, args.device)
    configs = [("plain", 0), ("pixels", 1), ("pixels", 4)]
    net = make_model(args.device)
    in_model = {}

    def timed(c):  # the same denoiser, with the time spent inside it counted per configuration
        def model(x, sigma, **kw):
            sync(args.device)
            t0 = time.perf_counter()
            out = net(x, sigma)
            sync(args.device)
            in_model[c] += time.perf_counter() - t0
            return out
        return model

    fns = {c: run_once(*c, args.size, args.steps, args.device, model=timed(c)) for c in configs}
    times = {c: [] for c in configs}
    outside = {c: [] for c in configs}
    for r in range(args.repeats + 1):  # interleaved (order alternating), so load drifts hit every configuration
        for c in (configs if r % 2 else configs[::-1]):
            in_model[c] = 0.0
            sync(args.device)
            t0 = time.perf_counter()
            fns[c]()
            sync(args.device)
            if r:  # the first round is a warm-up
                times[c].append(time.perf_counter() - t0)
                outside[c].append(times[c][-1] - in_model[c])
    t = {c: min(v) for c, v in times.items()}  # best of N: least disturbed by other load
    out = {c: statistics.median(v) for c, v in outside.items()}  # sampler's own work: time outside the denoiser
    mem = {c: peak_memory(*c, args) for c in configs}
    plain = ("plain", 0)
    print(f"PIXELS benchmark: {args.steps} Euler steps, latent 4x{args.size}x{args.size}, device {args.device}, "
          f"{args.threads} thread(s), best of {args.repeats}, load average {os.getloadavg()[0]:.2f}")
    print("  end to end (the denoiser's own run-to-run jitter, several %, dominates these):")
    print(f"    plain sampling : {t[plain] * 1000:8.1f} ms   peak mem {mem[plain] / 2**20:8.1f} MiB")
    for k in (1, 4):
        c = ("pixels", k)
        print(f"    PIXELS K={k}     : {t[c] * 1000:8.1f} ms   peak mem {mem[c] / 2**20:8.1f} MiB   "
              f"time ratio {t[c] / t[plain]:.4f}  memory ratio {mem[c] / mem[plain]:.4f}")
    print(f"    K=4 vs K=1     : time ratio {t[('pixels', 4)] / t[('pixels', 1)]:.4f}  "
          f"memory ratio {mem[('pixels', 4)] / mem[('pixels', 1)]:.4f}")
    print("  overhead = time spent outside the denoiser in the same runs (median), over the plain run:")
    print(f"    plain sampling : {out[plain] * 1000:7.2f} ms outside the denoiser")
    for k in (1, 4):
        c = ("pixels", k)
        print(f"    PIXELS K={k}     : {out[c] * 1000:7.2f} ms outside the denoiser  -> time overhead "
              f"{100 * (out[c] - out[plain]) / t[plain]:.3f} %")
    print(f"    K=4 vs K=1     : {100 * (out[('pixels', 4)] - out[('pixels', 1)]) / t[('pixels', 1)]:+.3f} % of PIXELS K=1")
    print("  targets: time overhead < 3 %, memory overhead < 1 %, K=4 within 2 % of K=1")


if __name__ == "__main__":
    main()
