"""Makes the edit-map pictures in the README from the project's own code (no checkpoint involved).

1. docs/images/editmap_ops.png: each pixels_core.editmap op on the bundled example mask / depth image
   (example_workflows/inputs/pixels_mask.png, pixels_depth.png, made by tools/make_example_inputs.py).
2. docs/images/editmap_pipeline.png: the map of example_workflows/api/pixels_map_from_mask.json (mask -> grow -> falloff,
   ramp -> levels, combined with max), its release preview (PixelsMapPreview's maths: pixels_core.editmap.preview,
   40 steps, latent grid 1/8), and PIXELS run with that map in pixel space with an *analytic* denoiser (the exact
   per-pixel posterior mean of {source, exemplar}, pixels_core.analytic.FiniteSetDenoiser): it shows where the map
   lets the exemplar in, not what a diffusion model produces.

    python docs/make_editmap_images.py
"""
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pixels_core import editmap as em  # noqa: E402
from pixels_core import pixels as px  # noqa: E402
from pixels_core.analytic import FiniteSetDenoiser  # noqa: E402
from pixels_core.parameterization import EPS  # noqa: E402

S = 128
SCALE = S / 512  # pixel sizes in the workflow are for 512 px images
OUT = ROOT / "docs" / "images"


def load(name, mode="L"):
    im = Image.open(ROOT / "example_workflows" / "inputs" / name).convert(mode).resize((S, S), Image.BICUBIC)
    a = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)
    return a.permute(2, 0, 1)[None] if mode == "RGB" else a[None]


def to_pil(t):
    t = t.clamp(0, 1)
    t = t[0] if t.ndim == 4 else t
    if t.ndim == 3 and t.shape[0] == 1:
        t = t[0]
    if t.ndim == 2:
        t = t[None].expand(3, -1, -1)
    im = Image.fromarray((t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    return im if im.size == (S, S) else im.resize((S, S), Image.NEAREST)


def grid(rows):
    """rows: list of lists of (tile, label)."""
    cols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (cols * S, len(rows) * (S + 18)), "white")
    d = ImageDraw.Draw(canvas)
    for j, row in enumerate(rows):
        for i, (tile, lab) in enumerate(row):
            y = j * (S + 18)
            canvas.paste(tile, (i * S, y + 18))
            d.text((i * S + 4, y + 3), lab, fill="black")
    return canvas


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    mask, depth = load("pixels_mask.png"), load("pixels_depth.png")
    r = round(8 * SCALE * 2)
    ops = [
        [(to_pil(mask), "mask"), (to_pil(em.grow(mask, r)), f"grow {r} px disk"),
         (to_pil(em.grow(mask, -r, "square")), f"shrink {r} px square"), (to_pil(em.blur(mask, 4)), "blur sigma 4"),
         (to_pil(em.falloff(mask, 16, "outside", "smooth")), "falloff 16 out"),
         (to_pil(em.falloff(mask, 16, "centered")), "falloff 16 centered")],
        [(to_pil(em.ramp(S, S, "linear", 30)), "ramp linear 30 deg"),
         (to_pil(em.ramp(S, S, "radial", start=0.2, end=1.0)), "ramp radial"),
         (to_pil(em.combine(em.falloff(mask, 16), em.ramp(S, S), "max")), "combine max"),
         (to_pil(em.combine(em.invert(mask), em.ramp(S, S), "multiply")), "invert * ramp"),
         (to_pil(em.quantize(em.ramp(S, S, "radial"), 4)), "quantize 4"),
         (to_pil(em.levels(em.ramp(S, S), gamma=2.0)), "levels gamma 2")],
        [(to_pil(depth), "depth image"), (to_pil(em.from_depth(depth, "far")), "from depth: edit far"),
         (to_pil(em.from_depth(depth, "near", start=0.3, end=0.7)), "edit near 0.3..0.7"),
         (to_pil(em.equalize(depth)), "equalize depth"), (to_pil(em.stretch(depth, 10, 90)), "stretch 10..90 %"),
         (to_pil(em.preview(em.from_depth(depth, "far"), S // 8, S // 8, 40)[1]), "release, 40 steps")],
    ]
    grid(ops).save(OUT / "editmap_ops.png")

    # the workflow's map (inpaint polarity: white = change), at 128 px with its pixel sizes scaled from 512 px
    grown = em.grow(mask, round(8 * SCALE))
    fall = em.falloff(grown, 48 * SCALE, "outside", "smooth")
    ramp = em.levels(em.ramp(S, S), out_white=0.6)
    emap = em.combine(fall, ramp, "max")
    paper = em.invert(emap)  # what PixelsExemplar passes on with map_polarity = inpaint mask
    _, release, _ = em.preview(paper, S // 8, S // 8, 40)
    src, ex = load("pixels_source.png", "RGB"), load("pixels_exemplar.png", "RGB")
    model = FiniteSetDenoiser(torch.cat([src, ex]) * 2 - 1, "eps", per_pixel=True)
    steps = 40
    sigmas = torch.cat([torch.linspace(3.0 ** (1 / 3), 0.02 ** (1 / 3), steps) ** 3, torch.zeros(1)])
    g = torch.Generator().manual_seed(0)
    noise, ex_noise = torch.randn(src.shape, generator=g), torch.randn(src.shape, generator=g)
    x = EPS.add_noise(sigmas[0], noise, src * 2 - 1)
    y = px.sample_pixels(model, x, sigmas, source=src * 2 - 1, noise=noise, exemplars=[ex * 2 - 1],
                         exemplar_noises=[ex_noise], edit_maps=[paper[:, None]])
    grid([[(to_pil(mask), "drawn mask"), (to_pil(fall), "grow + falloff"), (to_pil(ramp), "ramp, levels 0..0.6"),
           (to_pil(emap), "combine max"), (to_pil(release), "release (latent grid)")],
          [(to_pil(src), "source"), (to_pil(ex), "exemplar"), (to_pil((y + 1) / 2), "PIXELS, analytic model")]]
         ).save(OUT / "editmap_pipeline.png")
    print("wrote", OUT / "editmap_ops.png", OUT / "editmap_pipeline.png")


if __name__ == "__main__":
    main()
