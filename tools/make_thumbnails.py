"""Draw the templates-browser thumbnail ``example_workflows/<name>.jpg`` of every UI workflow there.

ComfyUI's templates browser shows ``/api/workflow_templates/<pack folder>/<name>.jpg`` next to each custom-node
template. The picture is drawn from the workflow's UI JSON alone, with PIL: its title (the heading of its
MarkdownNote); the graph, every node a titled box at its position and size and every link a curve in its type's
colour (the frontend-only notes left out), with the bundled picture each PIXELS Load Example Image node loads drawn
inside it; those pictures again, larger, with their file names; and the model files the loaders list in
``properties.models``. Nothing in it is a result: no model ran to make it.

    python tools/make_thumbnails.py                      # node titles from the node types
    python tools/make_thumbnails.py --server URL         # node titles as that ComfyUI displays them

Needs only Pillow (10.1 or newer, for its built-in scalable font). Each file is 512x512 and kept under 60 KB.
"""
from __future__ import annotations

import argparse
import io
import json
import pathlib
import re
import sys

from PIL import Image, ImageDraw, ImageFont

REPO = pathlib.Path(__file__).resolve().parent.parent
FOLDER = REPO / "example_workflows"
INPUTS = FOLDER / "inputs"
SIZE = 512
BANNER = 70
MARGIN = 14
TITLE_H = 30  # LiteGraph's title bar, drawn above a node's pos
SLOT_H = 20
MAX_BYTES = 60_000
UI_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}  # frontend-only nodes: not drawn in the graph
LINK_COLOURS = {  # ComfyUI's default link colours by type
    "MODEL": "#B39DDB", "CLIP": "#FFD500", "VAE": "#FF6E6E", "CONDITIONING": "#FFA931", "LATENT": "#FF9CF9",
    "IMAGE": "#64B5F6", "MASK": "#81C784", "CLIP_VISION": "#A8DADC", "CONTROL_NET": "#00D78D", "SAMPLER": "#ECB4B4",
    "SIGMAS": "#CDFFCD", "NOISE": "#B0B0B0", "GUIDER": "#66FFFF", "STRING": "#77FF77",
}
BG = (24, 24, 24)
NODE_BODY, NODE_TITLE, PACK_TITLE, OUTLINE = (53, 53, 53), (34, 34, 34), (28, 78, 96), (90, 90, 90)
TEXT, DIM = (230, 230, 230), (170, 170, 170)


def font(size: float) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(6, round(size)))


def default_title(node_type: str) -> str:
    """'PixelsMapFromDepth' -> 'Pixels Map From Depth' (used when no server gives the display names)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", node_type)


def _hex(colour: str, fallback) -> tuple:
    c = colour.lstrip("#") if isinstance(colour, str) else ""
    if len(c) == 3:
        c = "".join(ch * 2 for ch in c)
    try:
        return tuple(int(c[i:i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        return fallback


def fit_text(draw, text: str, f, width: float) -> str:
    if draw.textlength(text, font=f) <= width:
        return text
    while text and draw.textlength(text + "…", font=f) > width:
        text = text[:-1]
    return text + "…" if text else ""


def note_heading(ui: dict) -> str | None:
    for n in ui["nodes"]:
        if n["type"] == "MarkdownNote" and n.get("widgets_values"):
            for line in str(n["widgets_values"][0]).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return None


def _graph(ui: dict, titles: dict, box: tuple[int, int, int, int], scale: int = 4) -> Image.Image:
    """The graph (its notes left out) drawn to fit ``box`` (x, y, w, h): an RGBA picture of the box's size."""
    titles = titles or {}
    nodes = [n for n in ui["nodes"] if n["type"] not in UI_ONLY]
    x0 = min(n["pos"][0] for n in nodes)
    y0 = min(n["pos"][1] - TITLE_H for n in nodes)
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes)
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes)
    bw, bh = box[2], box[3]
    s = min(bw / (x1 - x0), bh / (y1 - y0))
    ox = (bw - s * (x1 - x0)) / 2 - s * x0
    oy = (bh - s * (y1 - y0)) / 2 - s * y0
    big = Image.new("RGB", (bw * scale, bh * scale), BG)  # drawn at 4x and shrunk: smooth curves
    d = ImageDraw.Draw(big)

    def P(x, y):
        return (ox + s * x) * scale, (oy + s * y) * scale

    by_id = {n["id"]: n for n in nodes}

    def slot_y(node, i):
        return node["pos"][1] + (i + 0.7) * SLOT_H

    for link in ui["links"]:  # links under the nodes
        _, src, sslot, dst, dslot, typ = link[:6]
        a, b = by_id.get(src), by_id.get(dst)
        if a is None or b is None:
            continue
        (ax, ay), (bx, by) = P(a["pos"][0] + a["size"][0], slot_y(a, sslot)), P(b["pos"][0], slot_y(b, dslot))
        k = max(40 * s * scale, abs(bx - ax) / 2)
        pts = []
        for i in range(41):
            t, u = i / 40, 1 - i / 40
            pts.append((u ** 3 * ax + 3 * u * u * t * (ax + k) + 3 * u * t * t * (bx - k) + t ** 3 * bx,
                        u ** 3 * ay + 3 * u * u * t * ay + 3 * u * t * t * by + t ** 3 * by))
        d.line(pts, fill=_hex(LINK_COLOURS.get(typ, "#9A9A9A"), (154, 154, 154)), width=max(2, round(2.5 * s * scale)))

    title_font = font(17 * s * scale)
    r = 6 * s * scale
    for n in nodes:
        x, y = n["pos"]
        w, h = n["size"]
        head = _hex(n.get("color"), PACK_TITLE if n["type"].startswith("Pixels") else NODE_TITLE)
        body = _hex(n.get("bgcolor"), NODE_BODY)
        d.rounded_rectangle([*P(x, y - TITLE_H), *P(x + w, y + h)], radius=r, fill=body, outline=OUTLINE,
                            width=max(1, round(s * scale)))
        d.rounded_rectangle([*P(x, y - TITLE_H), *P(x + w, y)], radius=r, fill=head)
        d.rectangle([*P(x, y - TITLE_H / 2), *P(x + w, y)], fill=head)
        title = n.get("title") or titles.get(n["type"]) or default_title(n["type"])
        d.text(P(x + 10, y - TITLE_H / 2), fit_text(d, title, title_font, (w - 20) * s * scale), font=title_font,
               fill=TEXT, anchor="lm")
        rr = 4 * s * scale
        for side, slots in ((x, n.get("inputs") or []), (x + w, n.get("outputs") or [])):
            for i, _ in enumerate(slots):
                cx, cy = P(side, slot_y(n, i))
                d.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=DIM)
        if n["type"] == "PixelsLoadExample" and n.get("widgets_values"):
            src = INPUTS / str(n["widgets_values"][0])
            (lx, ly), (rx, ry) = P(x + w * 0.55, y + 4), P(x + w - 8, y + h - 4)
            side = int(min(rx - lx, ry - ly))
            if src.is_file() and side > 4:
                with Image.open(src) as im:
                    big.paste(im.convert("RGB").resize((side, side), Image.LANCZOS), (int(rx - side), int(ly)))
    return big.resize((bw, bh), Image.LANCZOS)


def draw(ui: dict, name: str, titles: dict | None = None) -> Image.Image:
    """The thumbnail of UI workflow ``ui`` (file stem ``name``); ``titles``: node type -> display name.

    From the top: the title (the MarkdownNote's heading), the graph, the bundled pictures its PIXELS Load Example
    Image nodes load (with their file names), and the model files its loaders list in ``properties.models``."""
    img = Image.new("RGB", (SIZE, SIZE), BG)
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, SIZE, BANNER], fill=(16, 16, 16))
    heading = note_heading(ui) or name
    f = next((font(z) for z in (26, 24, 22) if d.textlength(heading, font=font(z)) <= SIZE - 2 * MARGIN), font(22))
    d.text((MARGIN, 12), fit_text(d, heading, f, SIZE - 2 * MARGIN), font=f, fill=TEXT)
    count = sum(1 for n in ui["nodes"] if n["type"] not in UI_ONLY)
    d.text((MARGIN, 46), f"PIXELS editing  ·  {name}.json  ·  {count} nodes", font=font(14), fill=DIM)

    inputs = list(dict.fromkeys(str(n["widgets_values"][0]) for n in ui["nodes"]
                                if n["type"] == "PixelsLoadExample" and n.get("widgets_values")))
    models = list(dict.fromkeys(f"models/{m['directory']}/{m['name']}" for n in ui["nodes"]
                                for m in (n.get("properties") or {}).get("models") or []))
    small = font(13)
    footer = 22 + 17 * len(models) if models else 0
    strip_side = 84 if inputs else 0
    strip = strip_side + 40 if inputs else 0
    width = SIZE - 2 * MARGIN
    graph_h = SIZE - BANNER - 2 * MARGIN - strip - footer
    top = BANNER + MARGIN
    img.paste(_graph(ui, titles, (MARGIN, top, width, graph_h)), (MARGIN, top))
    y = top + graph_h + 10
    if inputs:
        d.text((MARGIN, y), "Bundled inputs (PIXELS Load Example Image):", font=small, fill=DIM)
        y += 20
        gap = 10
        side = min(strip_side, (width - gap * (len(inputs) - 1)) // len(inputs))
        for i, file in enumerate(inputs):
            x = MARGIN + i * (side + gap)
            src = INPUTS / file
            if src.is_file():
                with Image.open(src) as im:
                    img.paste(im.convert("RGB").resize((side, side), Image.LANCZOS), (x, y))
            d.rectangle([x, y, x + side - 1, y + side - 1], outline=OUTLINE)
            label = next((font(z) for z in (11, 10, 9) if d.textlength(file, font=font(z)) <= side + gap - 2), font(9))
            d.text((x, y + side + 3), fit_text(d, file, label, side + gap - 2), font=label, fill=DIM)
        y += strip_side + 20
    if models:
        d.text((MARGIN, y), "Needs:", font=small, fill=DIM)
        for j, m in enumerate(models):
            d.text((MARGIN + 52, y + 17 * j), fit_text(d, m, small, width - 52), font=small, fill=TEXT)
    return img


def jpeg(img: Image.Image) -> bytes:
    """JPEG bytes of ``img`` under MAX_BYTES (the quality is lowered until it fits)."""
    for quality in (88, 82, 76, 70, 62, 54, 46):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=quality, optimize=True, progressive=True)
        if buf.tell() <= MAX_BYTES:
            return buf.getvalue()
    raise ValueError(f"the thumbnail does not fit in {MAX_BYTES} bytes")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", help="a ComfyUI with this pack installed, for the node titles it displays")
    args = ap.parse_args(argv)
    titles = {}
    if args.server:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        import comfy_client
        titles = {k: v.get("display_name") or k for k, v in comfy_client.Client(args.server).object_info().items()}
    for path in sorted(FOLDER.glob("*.json")):
        ui = json.loads(path.read_text())
        out = path.with_suffix(".jpg")
        out.write_bytes(jpeg(draw(ui, path.stem, titles)))
        print("wrote", out, out.stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
