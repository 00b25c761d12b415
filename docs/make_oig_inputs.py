"""Draws example_workflows/inputs/oig_cat.png, the cartoon cat on a sofa that the OIG example workflow edits (cat -> dog).

Run from the pack root: ``python docs/make_oig_inputs.py``. Plain PIL drawing, no model involved.
"""
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parent.parent / "example_workflows" / "inputs" / "oig_cat.png"


def main(size: int = 512) -> None:
    img = Image.new("RGB", (size, size), (214, 200, 176))  # wall
    d = ImageDraw.Draw(img)
    d.rectangle([0, 360, size, size], fill=(120, 84, 60))  # floor
    d.rounded_rectangle([40, 250, 472, 420], 30, fill=(60, 90, 150))  # sofa back and seat
    d.rounded_rectangle([20, 300, 90, 430], 25, fill=(50, 78, 135))
    d.rounded_rectangle([422, 300, 492, 430], 25, fill=(50, 78, 135))
    # the cat: body, head, ears, eyes, nose, whiskers, tail
    fur, dark = (235, 150, 60), (90, 50, 20)
    d.ellipse([170, 250, 350, 370], fill=fur)
    d.ellipse([190, 150, 310, 260], fill=fur)
    d.polygon([(195, 185), (205, 120), (240, 160)], fill=fur)
    d.polygon([(305, 185), (295, 120), (260, 160)], fill=fur)
    d.polygon([(205, 175), (210, 135), (232, 160)], fill=(240, 170, 170))
    d.polygon([(295, 175), (290, 135), (268, 160)], fill=(240, 170, 170))
    for cx in (225, 275):
        d.ellipse([cx - 12, 190, cx + 12, 212], fill=(120, 190, 80))
        d.ellipse([cx - 3, 191, cx + 3, 211], fill=(10, 10, 10))
    d.polygon([(243, 222), (257, 222), (250, 231)], fill=(200, 90, 100))
    for dy in (-6, 2, 10):
        d.line([(235, 230), (180, 228 + dy)], fill=dark, width=2)
        d.line([(265, 230), (320, 228 + dy)], fill=dark, width=2)
    d.line([(340, 330), (400, 300), (410, 250)], fill=fur, width=18, joint="curve")
    for x in (200, 240, 280):  # stripes
        d.arc([x - 20, 255, x + 20, 300], 200, 340, fill=dark, width=5)
    img = img.filter(ImageFilter.GaussianBlur(1.2))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    img.save(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
