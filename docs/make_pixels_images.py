"""Makes the PIXELS pictures in the README from the project's own code (no checkpoint involved).

1. docs/images/pixels_schedules.png: the bundled ramp map's release step for each threshold curve
   (pixels_core.pixels.release_schedule_image; black = released at step 0, white = kept).
2. docs/images/pixels_analytic_demo.png: PIXELS (pixels_core.pixels.sample_pixels, Euler, 30 steps) run in
   pixel space with an *analytic* denoiser, the exact per-pixel posterior mean of the two-image data set
   {source, exemplar} (pixels_core.analytic.FiniteSetDenoiser(per_pixel=True)). It shows how the map and the curve
   decide where the result follows the source or the exemplar; it is not what a real diffusion model produces.

    python docs/make_pixels_images.py
"""
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pixels_core import pixels as px  # noqa: E402
from pixels_core.analytic import FiniteSetDenoiser  # noqa: E402
from pixels_core.parameterization import EPS  # noqa: E402

S = 128
OUT = ROOT / "docs" / "images"


def load(name, mode="RGB"):
    im = Image.open(ROOT / "example_workflows" / "inputs" / name).convert(mode).resize((S, S), Image.BICUBIC)
    a = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)
    return a.permute(2, 0, 1)[None] if mode == "RGB" else a[None, None]


def to_pil(t):
    t = t.clamp(0, 1)[0]
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return Image.fromarray((t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def labelled(tiles, labels):
    w = S * len(tiles)
    canvas = Image.new("RGB", (w, S + 18), "white")
    d = ImageDraw.Draw(canvas)
    for i, (t, lab) in enumerate(zip(tiles, labels)):
        canvas.paste(t, (i * S, 18))
        d.text((i * S + 4, 3), lab, fill="black")
    return canvas


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    ramp = load("pixels_map.png", "L")
    steps = 30
    sched = [to_pil(px.release_schedule_image(ramp, steps, c)) for c in px.CURVES]
    labelled([to_pil(ramp)] + sched, ["edit map"] + [f"{c}" for c in px.CURVES]).save(OUT / "pixels_schedules.png")

    src, ex = load("pixels_source.png"), load("pixels_exemplar.png")
    model = FiniteSetDenoiser(torch.cat([src, ex]) * 2 - 1, "eps", per_pixel=True)
    sigmas = torch.cat([torch.linspace(3.0 ** (1 / 3), 0.02 ** (1 / 3), steps) ** 3, torch.zeros(1)])
    g = torch.Generator().manual_seed(0)
    noise, ex_noise = torch.randn(src.shape, generator=g), torch.randn(src.shape, generator=g)
    outs = []
    for curve in ("log", "linear", "cubic"):
        x = EPS.add_noise(sigmas[0], noise, src * 2 - 1)
        y = px.sample_pixels(model, x, sigmas, source=src * 2 - 1, noise=noise, exemplars=[ex * 2 - 1],
                             exemplar_noises=[ex_noise], edit_maps=[ramp], curve=curve)
        outs.append(to_pil((y + 1) / 2))
    labelled([to_pil(src), to_pil(ex), to_pil(ramp)] + outs,
             ["source", "exemplar", "edit map", "PIXELS log", "PIXELS linear", "PIXELS cubic"]).save(OUT / "pixels_analytic_demo.png")
    print("wrote", OUT / "pixels_schedules.png", OUT / "pixels_analytic_demo.png")


if __name__ == "__main__":
    main()
