"""Makes docs/images/oig_step_sizes.png from the project's own code (no model involved):
the step size eta that OIG (Lee, Kang, Han, "Diffusion-Based Conditional Image Editing through Optimized Inference
with Guidance", WACV 2025) applies at each DDIM step (pixels_core.oig.step_sizes, the authors' get_lr with their loop
offset) for the authors' 50 steps and the example workflow's 25 steps.

    python docs/make_oig_images.py
"""
import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pixels_core import oig  # noqa: E402

OUT = ROOT / "docs" / "images" / "oig_step_sizes.png"


def panel(d: ImageDraw.ImageDraw, x0: int, y0: int, w: int, h: int, n: int, colour) -> None:
    etas = oig.step_sizes(n)
    top = 2.0
    d.rectangle([x0, y0, x0 + w, y0 + h], outline=(0, 0, 0))
    for v in (0.5, 1.0, 1.5, 2.0):
        y = y0 + h - int(v / top * h)
        d.line([x0, y, x0 + w, y], fill=(225, 225, 225))
        d.text((x0 - 28, y - 6), f"{v:.1f}", fill=(0, 0, 0))
    bw = w / n
    for k, e in enumerate(etas):
        x = x0 + k * bw
        d.rectangle([x + 1, y0 + h - int(e / top * h), x + bw - 1, y0 + h - 1], fill=colour)
    d.text((x0 + 4, y0 + 4), f"N = {n}: eta per step (step 0 = noisiest)", fill=(0, 0, 0))
    d.text((x0, y0 + h + 4), "0", fill=(0, 0, 0))
    d.text((x0 + w - 16, y0 + h + 4), str(n - 1), fill=(0, 0, 0))


def main() -> None:
    img = Image.new("RGB", (640, 420), "white")
    d = ImageDraw.Draw(img)
    panel(d, 40, 20, 580, 160, 50, (70, 110, 190))
    panel(d, 40, 230, 580, 160, 25, (200, 110, 60))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    img.save(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
