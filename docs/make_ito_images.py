"""Writes docs/images/ito_analytic_demo.png: ITO (pixels_core.ito) run in pixel space with an analytic denoiser.

The "model" is the exact per-pixel posterior mean of a small image set (pixels_core.analytic.FiniteSetDenoiser,
per_pixel=True). The source condition's set is the bundled source image and three colour variants of it; the edit
condition's set repaints the house blue in all of them and also offers sunset-coloured versions of the whole scene,
so the edit condition alone changes the background too. Panels: source, the edit condition alone (DDIM inversion
with the source condition, DDIM decoding with the edit condition), the mask estimated by Eq. 7, ITO with lambda = 1
(preservation outside the mask), the guidance image, ITO with lambda = 0.6. The speckle is the analytic model's
(each pixel independently picks one of the set's colours), not what a diffusion model produces.

    python docs/make_ito_images.py
"""
import pathlib
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pixels_core import inversion as inv  # noqa: E402
from pixels_core import ito, noise  # noqa: E402
from pixels_core.analytic import FiniteSetDenoiser  # noqa: E402

S = 64


class Switch(torch.nn.Module):
    def __init__(self, **models):
        super().__init__()
        self.m = torch.nn.ModuleDict(models)

    def forward(self, x, sigma, cond="src", **_):
        return self.m[cond](x, sigma)


def load(name):
    im = Image.open(ROOT / "example_workflows" / "inputs" / name).convert("RGB").resize((S, S), Image.BILINEAR)
    return torch.from_numpy(np.array(im)).float().permute(2, 0, 1)[None] / 127.5 - 1


def to_img(t):
    return Image.fromarray(((t[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy())


def scene():
    """The analytic demo: ``(model, src, sig, SRC, EDIT, LOCAL)``. The source set is the bundled source image and three
    colour variants; EDIT repaints the house blue in all of them and adds sunset versions of the whole scene; LOCAL
    (for the mask estimate) only repaints the house."""
    src = load("pixels_source.png")
    house = ((src[:, 0] > 0.3) & (src[:, 2] < 0.0) & (src[:, 1] < 0.0)).float()[:, None]  # the red house
    house[..., : S // 3, :] = 0  # not the sun
    tints = torch.tensor([[0, 0, 0], [0.15, 0.1, -0.1], [-0.1, 0.05, 0.15], [0.1, -0.1, 0.05]]).view(4, 3, 1, 1)
    a = (src + tints).clamp(-1, 1)
    blue = torch.tensor([-0.6, -0.3, 0.7]).view(1, 3, 1, 1)
    b = a * (1 - house) + (blue + 0.3 * tints) * house
    sunset = (src * torch.tensor([1.0, 0.4, -0.3]).view(1, 3, 1, 1) + torch.tensor([0.4, -0.1, -0.3]).view(1, 3, 1, 1) + tints)
    b = torch.cat([b, sunset.clamp(-1, 1) * (1 - house) + (blue + 0.3 * tints) * house])
    model = Switch(src=FiniteSetDenoiser(a, "eps", per_pixel=True), edit=FiniteSetDenoiser(b, "eps", per_pixel=True),
                   edit_local=FiniteSetDenoiser(b[:4], "eps", per_pixel=True))
    smin, smax, rho, n = 0.02, 10.0, 7.0, 25
    r = torch.linspace(0, 1, n)
    sig = torch.cat([(smax ** (1 / rho) + r * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho, torch.zeros(1)])
    return model, src, sig, {"cond": "src"}, {"cond": "edit"}, {"cond": "edit_local"}


def main():
    model, src, sig, SRC, EDIT, LOCAL = scene()
    traj = inv.invert(model, src, sig, SRC)
    alone = inv.sample_ddim(model, traj[0], sig, EDIT)
    mask, _ = ito.estimate_mask(model, src, ito.sigma_at_strength(sig, 0.5), SRC, LOCAL, n=4)
    lam1 = ito.edit(model, src, sig, SRC, EDIT, mask=mask, lam=1.0)
    guide = ito.generate_guidance(model, src, sig, noise.randn(src.shape, 0, "ito guidance demo"), EDIT, mask=mask)
    lam06 = ito.edit(model, src, sig, SRC, EDIT, mask=mask, guidance=guide, lam=0.6)
    panels = [("source", src), ("edit condition alone", alone), ("estimated mask (Eq. 7)", mask.expand(-1, 3, -1, -1) * 2 - 1),
              ("ITO, lambda = 1", lam1), ("guidance image", guide), ("ITO, lambda = 0.6", lam06)]
    z = 3
    out = Image.new("RGB", (len(panels) * (S * z + 8) + 8, S * z + 28), "white")
    d = ImageDraw.Draw(out)
    for i, (title, t) in enumerate(panels):
        x = 8 + i * (S * z + 8)
        out.paste(to_img(t).resize((S * z, S * z), Image.NEAREST), (x, 22))
        d.text((x, 5), title, fill="black")
    path = ROOT / "docs" / "images" / "ito_analytic_demo.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    print("wrote", path)


if __name__ == "__main__":
    main()
