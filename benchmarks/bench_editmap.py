"""Benchmark (not a test): pixels_core.editmap map ops against scipy.ndimage (the reference the tests compare to) and
OpenCV (when importable; never a dependency of the pack), one thread, float32 maps of 1024, 2048 and 4096 pixels.

    python benchmarks/bench_editmap.py [--sizes 1024 2048 4096] [--repeats 5] [--ops blur grow falloff]

Ops timed (each row: ours, scipy, cv2 in seconds, ratio ours/scipy and ours/cv2; target: every ratio vs cv2 <= 1.0):
  blur s=2, s=8    em.blur(x, s)                vs nd.gaussian_filter(mode="reflect", truncate=4)
                                                 vs cv2.GaussianBlur(ksize 2 int(4s+0.5)+1, BORDER_REFLECT)
  grow disk r=8    em.grow(x, 8, "disk")         vs nd.grey_dilation(footprint=disk)
                                                 vs cv2.dilate(getStructuringElement(MORPH_ELLIPSE, (17, 17)))
  grow square r=8  em.grow(x, 8, "square")       vs nd.grey_dilation(size=17) vs cv2.dilate(17x17 rect)
  bin grow disk r8 the two grow rows on a BINARY map (float32 0/1: the square mask below), grow's uint8 path;
  bin grow sq r8   scipy and cv2 get the same float32 0/1 array
  falloff w=32     em.falloff(m, 32) on a square mask vs nd.distance_transform_edt (the distance alone)
                                                 vs cv2.distanceTransform(DIST_L2, DIST_MASK_PRECISE) (the distance alone)
  edt              em.distance_transform(m) (uncapped) vs the same two

Notes on fairness: cv2's MORPH_ELLIPSE of size 17 is not the Euclidean disk dx^2 + dy^2 <= 64 (it is a slightly
different digital ellipse), so its result differs; the cost per pixel is comparable (both are ~200-point footprints).
cv2.GaussianBlur rounds its kernel differently and accumulates in float32 (differences ~1e-7). cv2.distanceTransform
returns float32. Timing: best of N, the libraries interleaved (the machine may be shared and noisy).
``--module path.py`` times another copy of editmap.py (e.g. the previous version) in place of pixels_core's.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from pixels_core import editmap as em  # noqa: E402

try:
    import scipy.ndimage as nd
except ImportError:  # pragma: no cover
    sys.exit("bench_editmap needs scipy (pip install scipy): it is the reference implementation")
try:
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None


def best_of(fns, repeats):
    """Interleaved best-of-N wall times of each callable (None entries are skipped)."""
    times = [float("inf") if f is not None else None for f in fns]
    for _ in range(repeats):
        for j, f in enumerate(fns):
            if f is None:
                continue
            t0 = time.perf_counter()
            f()
            times[j] = min(times[j], time.perf_counter() - t0)
    return times


def disk(r):
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx ** 2 + yy ** 2) <= r * r


def cases(mod, n):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, n, n, generator=g)
    xn = x[0].numpy()
    m = torch.zeros(1, n, n)
    m[:, n // 4:3 * n // 4, n // 4:3 * n // 4] = 1
    outside = (m[0] < 0.5).numpy()
    outside_u8 = outside.astype(np.uint8)
    mb = m < 0.5
    out = {}
    for s in (2.0, 8.0):
        k = 2 * int(4 * s + 0.5) + 1
        out[f"blur s={s:g}"] = (lambda s=s: mod.blur(x, s),
                                lambda s=s: nd.gaussian_filter(xn, s, mode="reflect", truncate=4.0),
                                (lambda s=s, k=k: cv2.GaussianBlur(xn, (k, k), s, borderType=cv2.BORDER_REFLECT))
                                if cv2 else None)
    r = 8
    fp = disk(r)
    out["grow disk r=8"] = (lambda: mod.grow(x, r, "disk"), lambda: nd.grey_dilation(xn, footprint=fp),
                            (lambda: cv2.dilate(xn, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (17, 17))))
                            if cv2 else None)
    out["grow square r=8"] = (lambda: mod.grow(x, r, "square"), lambda: nd.grey_dilation(xn, size=(17, 17)),
                              (lambda: cv2.dilate(xn, np.ones((17, 17), np.uint8))) if cv2 else None)
    mn = m[0].numpy()  # the float32 0/1 square mask: grow's binary (uint8) path; every library gets this same array
    out["bin grow disk r8"] = (lambda: mod.grow(m, r, "disk"), lambda: nd.grey_dilation(mn, footprint=fp),
                               (lambda: cv2.dilate(mn, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (17, 17))))
                               if cv2 else None)
    out["bin grow sq r8"] = (lambda: mod.grow(m, r, "square"), lambda: nd.grey_dilation(mn, size=(17, 17)),
                             (lambda: cv2.dilate(mn, np.ones((17, 17), np.uint8))) if cv2 else None)
    cvd = (lambda: cv2.distanceTransform(outside_u8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)) if cv2 else None
    out["falloff w=32"] = (lambda: mod.falloff(m, 32.0), lambda: nd.distance_transform_edt(outside), cvd)
    out["edt (uncapped)"] = (lambda: mod.distance_transform(mb), lambda: nd.distance_transform_edt(outside), cvd)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ops", nargs="+", default=None, help="substrings of op names to run (default all)")
    ap.add_argument("--module", default=None, help="time this editmap.py instead of pixels_core.editmap")
    a = ap.parse_args()
    mod = em
    if a.module:
        spec = importlib.util.spec_from_file_location("pixels_core._bench_editmap", a.module,
                                                      submodule_search_locations=None)
        mod = importlib.util.module_from_spec(spec)
        mod.__package__ = "pixels_core"
        spec.loader.exec_module(mod)
    torch.set_num_threads(1)
    if cv2 is not None:
        cv2.setNumThreads(1)
    print(f"float32 maps, one thread: torch {torch.__version__}, scipy, "
          f"{'cv2 ' + cv2.__version__ if cv2 else 'cv2 not installed'}; best of {a.repeats}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'op':<16} {'size':>5} {'ours s':>8} {'scipy s':>8} {'cv2 s':>8} {'vs scipy':>9} {'vs cv2':>7}")
    worst = []
    for n in a.sizes:
        for name, (ours, ref, ocv) in cases(mod, n).items():
            if a.ops and not any(o in name for o in a.ops):
                continue
            t, ts, tc = best_of([ours, ref, ocv], a.repeats)
            rc = t / tc if tc else None
            if rc is not None and rc > 1.0:
                worst.append(f"{name} @ {n}: {rc:.2f}")
            print(f"{name:<16} {n:>5} {t:8.4f} {ts:8.4f} {tc if tc else float('nan'):8.4f} {t / ts:9.2f} "
                  f"{rc if rc else float('nan'):7.2f}", flush=True)
    if cv2 is not None:
        print("ratios vs cv2 above 1.0: " + ("; ".join(worst) if worst else "none"))


if __name__ == "__main__":
    main()
