"""Make docs/images/syncsde_analytic_demo.png: sync-SDE on an analytic model, from the project's own code.

    python docs/make_syncsde_images.py

The "model" is pixels_core.analytic.GaussianDenoiser in pixel space (EPS/VE form): under the source prompt an
image is N(mu_src, 0.15^2) per pixel with mu_src a blurred copy of the bundled source picture; under the target
prompt the mean of the meadow turns to snow (mu_tgt). Panels: the source; the target mean; SDEdit (noise the source
to the start sigma, then sample with the target prompt only, k-diffusion Euler); sync-SDE
(pixels_core.syncsde.sample_syncsde, same schedule and start). sync-SDE moves the meadow to snow and keeps the
source's own texture (its residual from mu_src) everywhere; SDEdit replaces that texture with fresh noise.
"""
from __future__ import annotations

import pathlib
import sys

import torch
from PIL import Image, ImageDraw

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pixels_core import syncsde as S  # noqa: E402
from pixels_core.analytic import GaussianDenoiser  # noqa: E402

SIZE, STEPS, START, STD = 128, 28, 4, 0.15


def karras(n, smin=0.0292, smax=14.6146, rho=7.0):
    r = torch.linspace(0, 1, n, dtype=torch.float64)
    s = (smax ** (1 / rho) + r * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)]).float()


def to_img(t):
    a = ((t[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(a)


def main():
    im = Image.open(ROOT / "example_workflows" / "inputs" / "pixels_source.png").convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
    src = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).float().reshape(SIZE, SIZE, 3).permute(2, 0, 1)[None] / 127.5 - 1
    mu_s = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(src, (4, 4, 4, 4), mode="replicate"), 9, stride=1)
    meadow = (torch.arange(SIZE)[:, None] >= int(0.6 * SIZE)).float().expand(SIZE, SIZE)[None, None]
    snow = torch.tensor([0.85, 0.87, 0.92]).view(1, 3, 1, 1)
    mu_t = mu_s * (1 - meadow) + snow * meadow
    den = GaussianDenoiser(mu_s, std=STD, kind="eps")
    sig = karras(STEPS)
    edit = S.sample_syncsde(S.pair_denoiser(den, mu_s, mu_t), src, sig, source=src, kind="eps", start_index=START,
                            seed=0, disable=True)
    g = torch.Generator().manual_seed(0)
    x = src + float(sig[START]) * torch.randn(src.shape, generator=g)
    for i in range(START, STEPS):  # SDEdit: Euler with the target prompt only
        d = den(x, sig[i].expand(1), cond=mu_t)
        x = x + (x - d) / sig[i] * (sig[i + 1] - sig[i])
    panels = [("source", src), ("target mean", mu_t), ("SDEdit, target prompt", x), ("sync-SDE", edit)]
    pad, label = 6, 16
    out = Image.new("RGB", (len(panels) * (SIZE + pad) + pad, SIZE + label + 2 * pad), "white")
    draw = ImageDraw.Draw(out)
    for k, (name, t) in enumerate(panels):
        x0 = pad + k * (SIZE + pad)
        out.paste(to_img(t), (x0, pad + label))
        draw.text((x0, pad), name, fill="black")
    dst = ROOT / "docs" / "images" / "syncsde_analytic_demo.png"
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.save(dst)
    keep = ((edit - mu_t) - (src - mu_s)).abs().mean()
    print(f"wrote {dst}; mean |residual(edit) - residual(source)| = {float(keep):.4f}")


if __name__ == "__main__":
    main()
