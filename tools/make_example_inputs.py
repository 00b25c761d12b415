"""Writes the bundled example inputs in example_workflows/inputs/ (procedural, deterministic, made by this script).

source: a meadow under a blue sky; exemplar: a beach at sunset; exemplar2: a snowy field;
map: white left quarter (keeps the source), a grey ramp across the middle half, black right quarter (takes the
exemplar: Algorithm 1 fills the exemplar only where the map is black); mask: a drawn blob;
depth: a synthetic depth map (near = bright).
Run: python tools/make_example_inputs.py
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

S = 512
OUT = Path(__file__).resolve().parent.parent / "example_workflows" / "inputs"


def _grad(top, bottom, h=S, w=S):
    t = np.linspace(0, 1, h)[:, None, None]
    return (np.array(top)[None, None] * (1 - t) + np.array(bottom)[None, None] * t).repeat(w, 1)


def _noise(seed, amp):
    rng = np.random.default_rng(seed)
    n = rng.normal(0, amp, (S // 8, S // 8, 1))
    return np.kron(n, np.ones((8, 8, 1)))


def scene(sky_top, sky_bottom, ground_top, ground_bottom, horizon, sun, sun_col, seed):
    img = _grad(sky_top, sky_bottom)
    g = _grad(ground_top, ground_bottom, S - horizon)
    img[horizon:] = g
    img = np.clip(img + _noise(seed, 6), 0, 255).astype(np.uint8)
    im = Image.fromarray(img)
    d = ImageDraw.Draw(im)
    x, y, r = sun
    d.ellipse([x - r, y - r, x + r, y + r], fill=sun_col)
    return im


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    src = scene((70, 130, 220), (170, 210, 245), (80, 160, 60), (40, 110, 30), 300, (400, 90, 40), (255, 240, 180), 1)
    d = ImageDraw.Draw(src)
    d.rectangle([120, 230, 220, 320], fill=(190, 80, 60))  # a red house
    d.polygon([(110, 232), (170, 180), (230, 232)], fill=(110, 50, 40))
    src.save(OUT / "pixels_source.png")
    beach = scene((250, 120, 80), (255, 200, 140), (230, 200, 150), (200, 170, 120), 280, (256, 270, 60), (255, 230, 120), 2)
    ImageDraw.Draw(beach).rectangle([0, 255, S, 300], fill=(40, 90, 150))  # the sea
    beach.save(OUT / "pixels_exemplar.png")
    snow = scene((150, 160, 180), (210, 215, 225), (245, 245, 250), (220, 225, 235), 320, (100, 80, 30), (240, 240, 240), 3)
    snow.save(OUT / "pixels_exemplar2.png")
    x = np.arange(S) / (S - 1)
    row = np.clip((0.75 - x) / 0.5, 0.0, 1.0) * 255  # white left quarter, ramp, black right quarter
    ramp = np.tile(np.round(row)[None, :], (S, 1)).astype(np.uint8)
    Image.fromarray(ramp, "L").save(OUT / "pixels_map.png")
    mask = Image.new("L", (S, S), 0)
    md = ImageDraw.Draw(mask)
    md.ellipse([260, 200, 470, 430], fill=255)
    md.ellipse([200, 300, 330, 460], fill=255)
    mask.save(OUT / "pixels_mask.png")
    yy, xx = np.mgrid[0:S, 0:S] / (S - 1)
    depth = (0.15 + 0.85 * yy ** 1.5) * 255  # near (bottom) is bright
    depth = Image.fromarray(depth.astype(np.uint8), "L").filter(ImageFilter.GaussianBlur(2))
    depth.save(OUT / "pixels_depth.png")


if __name__ == "__main__":
    main()
