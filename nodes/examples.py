"""The example images bundled with the pack (``example_workflows/inputs/``), loadable without uploading anything: the
shipped workflows use this node, so a template opened from ComfyUI's templates browser runs as it is."""
from __future__ import annotations

import pathlib

import numpy as np
import torch
from comfy_api.latest import io
from PIL import Image, ImageOps

CATEGORY = "PIXELS/examples"
FOLDER = pathlib.Path(__file__).resolve().parent.parent / "example_workflows" / "inputs"
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
GREY_MODES = ("L", "LA")
DEFAULT = "pixels_source.png"


def example_names() -> list[str]:
    """The bundled example images, by file name (sorted)."""
    if not FOLDER.is_dir():
        return []
    return sorted(p.name for p in FOLDER.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def check_name(image) -> str:
    """``image`` if it is one of the bundled example names, else a ValueError that lists them."""
    names = example_names()
    if image not in names:
        bundled = ", ".join(names) if names else f"none found in {FOLDER}"
        raise ValueError(f"image {image!r} is not one of the pack's bundled example images ({bundled}); to load a "
                         "picture of your own use ComfyUI's Load Image node")
    return image


def load(image: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(IMAGE [1, H, W, 3], MASK [1, H, W]) of the bundled example ``image``. The mask is the grey level (white = 1)
    of a greyscale file (the edit maps, masks and depth maps), else 1 - alpha as in Load Image (transparent = 1), or
    all zeros for an opaque colour image."""
    with Image.open(FOLDER / check_name(image)) as f:
        im = ImageOps.exif_transpose(f)
        im.load()
    if im.mode == "I":  # 32-bit greyscale, scaled as Load Image does
        im = im.point(lambda v: v * (1 / 255)).convert("L")
    rgb = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)[None]
    if im.mode in GREY_MODES:
        mask = torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)
    elif "A" in im.getbands() or (im.mode == "P" and "transparency" in im.info):
        mask = 1.0 - torch.from_numpy(np.asarray(im.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0)
    else:
        mask = torch.zeros(rgb.shape[1:3], dtype=torch.float32)
    return rgb, mask[None]


class PixelsLoadExample(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsLoadExample",
            display_name="PIXELS Load Example Image",
            category=CATEGORY,
            description="Loads one of the example images bundled with the pack (its example_workflows/inputs folder), "
                        "so the example workflows run without uploading anything. To edit your own picture, replace "
                        "this node with ComfyUI's Load Image.",
            inputs=[
                io.Combo.Input("image", options=example_names(), default=DEFAULT,
                               tooltip="A bundled example image: pixels_source (a meadow with a red house), "
                                       "pixels_exemplar / pixels_exemplar2 (a beach at sunset / a snowy field), "
                                       "pixels_map (edit map: white left quarter, grey ramp, black right quarter), "
                                       "pixels_mask (a drawn blob), pixels_depth (near = bright), oig_cat (a "
                                       "cartoon cat on a sofa). All are 512x512 and drawn by the pack's own scripts."),
            ],
            outputs=[
                io.Image.Output(display_name="IMAGE", tooltip="The image as RGB (a greyscale file is repeated on all "
                                                              "three channels)."),
                io.Mask.Output(display_name="MASK",
                               tooltip="For a greyscale file (pixels_map, pixels_mask, pixels_depth): its grey level, "
                                       "white = 1, the same as Convert Image to Mask on the IMAGE. For a colour file: "
                                       "1 - alpha as in Load Image (transparent = 1), all zeros where it is opaque "
                                       "(the bundled colour images are)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, image=None):
        if image is None:
            return True
        try:
            check_name(image)
        except ValueError as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, image) -> io.NodeOutput:
        return io.NodeOutput(*load(image))


NODES = [PixelsLoadExample]
