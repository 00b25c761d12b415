"""Draw the pack's registry icon (web/icon.png) from a grey-level edit map made by the pack's own code.

The map is what PIXELS reads: a radial ramp (the paper's gradual change) combined (min, paper polarity) with a
drawn blob given a soft falloff, quantised to 6 grey levels so each ring is one group of release steps. It is
painted with a source colour where the map keeps the source (white) and an exemplar colour where it takes the
exemplar (black), blended by the map, with the latent grid (1/8) shown as a faint lattice.

Usage (any Python with torch and Pillow, from the repository root): ``python tools/make_icon.py [--out web/icon.png]``
"""
from __future__ import annotations

import argparse
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SIZE = 256  # square; the registry accepts PNG up to 800 x 400


def edit_map(size: int = SIZE):
    import torch
    from pixels_core import editmap as em

    r = em.ramp(size, size, kind="radial", start=0.15, end=1.05, center_x=0.62, center_y=0.40)
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    blob = (((xs - 0.30 * size) / (0.17 * size)) ** 2 + ((ys - 0.70 * size) / (0.13 * size)) ** 2 <= 1.0)
    soft = em.falloff(blob[None].float(), width=0.10 * size, side="outside", curve="smooth")
    m = em.combine(r, em.invert(soft), mode="min")  # paper polarity: edit where either map edits
    return em.quantize(m, levels=6)[0]


def draw(size: int = SIZE):
    import numpy as np
    from PIL import Image, ImageDraw

    m = edit_map(size).double().numpy()[..., None]
    source = np.array([54, 120, 66], float)  # meadow green: kept
    exemplar = np.array([236, 196, 112], float)  # beach sand: taken from the exemplar
    rgb = m * source + (1.0 - m) * exemplar
    img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")
    grid = img.copy()
    d = ImageDraw.Draw(grid)
    step = size // 8
    for k in range(step, size, step):  # the latent grid the sampler works on
        d.line([(k, 0), (k, size)], fill=(255, 255, 255), width=1)
        d.line([(0, k), (size, k)], fill=(255, 255, 255), width=1)
    img = Image.blend(img, grid, 0.18)
    # rounded square mask so the icon reads as a tile
    alpha = Image.new("L", (size, size), 0)
    ImageDraw.Draw(alpha).rounded_rectangle([0, 0, size - 1, size - 1], radius=size // 8, fill=255)
    img.putalpha(alpha)
    return img


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "web" / "icon.png"))
    a = ap.parse_args(argv)
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw().save(out, optimize=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
