"""Edit maps made from other things (depth, a ramp, a mask's falloff) and the preview of a map as the PIXELS sampler
will release it: thin wrappers over pixels_core.editmap, all on ComfyUI MASK (B, H, W) in [0, 1]."""
from __future__ import annotations

from comfy_api.latest import io, ui

import comfy.utils

from ..pixels_core import editmap as core
from ..pixels_core import pixels as px
from ._pixels import POLARITIES  # PixelsExemplar's map_polarity strings: a preview reads the map as the sampler will
from . import _session as session
from ._common import latent_ratio
from .editmap import CATEGORY, map_input, map_outputs


class PixelsMapFromDepth(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapFromDepth", display_name="PIXELS Map From Depth", category=CATEGORY,
            description="Turns a depth image (e.g. from a Depth Anything / MiDaS preprocessor) into an edit map in paper "
                        "polarity (white = keep): normalises it per image and ramps from the kept side to the edited side.",
            inputs=[
                io.Image.Input("depth", tooltip="Depth image (grey; the mean of R, G and B is used). Normalised per image."),
                io.Combo.Input("edit", options=["far", "near"], default="far",
                               tooltip="Which side is edited: far (e.g. new background, keep the subject) or near."),
                io.Combo.Input("white_is", options=["near", "far"], default="near",
                               tooltip="What a bright depth value means. near for MiDaS / Depth Anything / ZoeDepth outputs."),
                io.Float.Input("range_start", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Normalised depth (0 = kept side, 1 = edited side) where editing begins. Raising "
                                       "it keeps more of the scene untouched."),
                io.Float.Input("range_end", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Normalised depth where editing is full (edited from the first step). Lowering it "
                                       "edits more of the scene fully; closer to range_start gives a harder edge."),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def validate_inputs(cls, range_start=None, range_end=None):
        return session.validate(cls, lambda range_start, range_end: core.check_depth_range(range_start, range_end),
                                range_start=range_start, range_end=range_end)

    @classmethod
    def execute(cls, depth, edit, white_is, range_start, range_end) -> io.NodeOutput:
        if depth.ndim != 4:
            raise ValueError(f"depth: expected an IMAGE shaped (B, H, W, C), got {tuple(depth.shape)}")
        return io.NodeOutput(core.from_depth(depth[..., :3].mean(-1), edit, white_is, range_start, range_end))


class PixelsMapRamp(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapRamp", display_name="PIXELS Map Ramp", category=CATEGORY,
            description="A gradient map for gradual spatial changes (the paper's forest-to-beach): linear at an angle, "
                        "or radial around a centre. Black at the start of the ramp, white from its end.",
            inputs=[
                io.Combo.Input("kind", options=list(core.RAMP_KINDS), default="linear",
                               tooltip="linear: along a direction; radial: by distance from a centre."),
                io.Int.Input("width", default=512, min=1, max=16384, step=8,
                             tooltip="Width in pixels (ignored when a reference image is connected)."),
                io.Int.Input("height", default=512, min=1, max=16384, step=8,
                             tooltip="Height in pixels (ignored when a reference image is connected)."),
                io.Float.Input("angle", default=0.0, min=-360.0, max=360.0, step=1.0,
                               tooltip="Linear ramp direction in degrees, counter-clockwise: 0 = dark left to white right, "
                                       "90 = dark bottom to white top."),
                io.Float.Input("start", default=0.0, min=-4.0, max=4.0, step=0.01,
                               tooltip="Where the ramp leaves black: position along the direction (0..1 across the image) "
                                       "or radius (1 = half the shorter side). Raising it widens the black part."),
                io.Float.Input("end", default=1.0, min=-4.0, max=4.0, step=0.01,
                               tooltip="Where the ramp reaches white. Closer to start gives a harder transition; "
                                       "below start reverses the ramp."),
                io.Float.Input("center_x", default=0.5, min=-2.0, max=3.0, step=0.01,
                               tooltip="Radial centre, as a fraction of the width (0 = left edge)."),
                io.Float.Input("center_y", default=0.5, min=-2.0, max=3.0, step=0.01,
                               tooltip="Radial centre, as a fraction of the height (0 = top edge)."),
                io.Int.Input("batch_size", default=1, min=1, max=4096,
                             tooltip="Number of maps (ignored when a reference image is connected)."),
                io.Image.Input("reference", optional=True,
                               tooltip="Optional image whose size and batch the ramp takes (e.g. the source image)."),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def validate_inputs(cls, start=None, end=None):
        return session.validate(cls, core.check_ramp, start=start, end=end)

    @classmethod
    def execute(cls, kind, width, height, angle, start, end, center_x, center_y, batch_size,
                reference=None) -> io.NodeOutput:
        if reference is not None:
            batch_size, height, width = reference.shape[0], reference.shape[1], reference.shape[2]
        return io.NodeOutput(core.ramp(height, width, kind, angle, start, end, center_x, center_y, batch_size))


class PixelsMapFalloff(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapFalloff", display_name="PIXELS Map Falloff", category=CATEGORY,
            description="Soft edge of a chosen width around a binary mask, by exact Euclidean distance: 1 in the mask, "
                        "falling to 0 over width pixels. Unlike a blur, the edge has exactly the width you ask for.",
            inputs=[
                io.Mask.Input("mask", tooltip="Mask; pixels at or above threshold are inside."),
                io.Float.Input("width", default=32.0, min=0.0, max=8192.0, step=1.0,
                               tooltip="Width of the soft edge in pixels (0 = the binary mask). Raising it makes the "
                                       "transition more gradual."),
                io.Combo.Input("side", options=list(core.FALLOFF_SIDES), default="outside",
                               tooltip="outside: the mask keeps its size and the edge grows out of it; inside: the edge "
                                       "fades into the mask; centered: the edge straddles the mask border."),
                io.Combo.Input("curve", options=list(core.FALLOFF_CURVES), default="linear",
                               tooltip="Shape of the edge: linear, smooth (smoothstep) or cosine; the last two ease in and out."),
                io.Float.Input("threshold", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="Mask values at or above this count as inside. Raising it makes the mask smaller."),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def execute(cls, mask, width, side, curve, threshold) -> io.NodeOutput:
        return io.NodeOutput(core.falloff(mask, width, side, curve, threshold))


class PixelsMapPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapPreview", display_name="PIXELS Map Preview", category=CATEGORY, is_output_node=True,
            description="Shows a map as the progressive sampler sees it: fitted to the latent grid (centre crop, then "
                        "antialiased bilinear, as the sampler does) and turned into the release step of each latent "
                        "pixel: black = released at the first step, white = never (kept as source). Also outputs the "
                        "latent-size map and a text table of how many pixels are released at each step. The preview shows on "
                        "the node itself (no Preview Image node needed).",
            inputs=[
                map_input(),
                io.Combo.Input("map_polarity", options=POLARITIES, default=POLARITIES[0],
                               tooltip="How the sampler will read this map (set it as on PIXELS Exemplar)."),
                io.Int.Input("steps", default=40, min=1, max=10000, tooltip="Steps actually run by the sampler."),
                io.Combo.Input("curve", options=list(px.CURVES), default="linear",
                               tooltip="Release-threshold curve, as on the sampler. log releases earlier (more change); "
                                       "quadratic/cubic later (more of the source kept)."),
                io.Float.Input("gamma", default=1.0, min=0.05, max=20.0, step=0.05,
                               tooltip="Exponent on the threshold curve, as on the sampler. Raising it releases every "
                                       "grey pixel later."),
                io.Int.Input("downscale", default=8, min=1, max=64,
                             tooltip="Pixels per latent cell (8 for SD1.x/SDXL/SD3/Flux, 16 for Flux.2 and Wan 2.2); "
                                     "ignored when a latent or a VAE is connected."),
                io.Boolean.Input("upscale_preview", default=True,
                                 tooltip="Show the preview at the map's size (nearest, so the latent grid stays visible); "
                                         "off gives it at latent size."),
                io.Latent.Input("latent", optional=True,
                                tooltip="Optional latent (e.g. VAE Encode of the source) whose size is the latent grid."),
                io.Vae.Input("vae", optional=True,
                             tooltip="The model's VAE (optional): its own pixels per latent cell replace downscale."),
            ],
            outputs=[io.Image.Output(display_name="preview"), io.Mask.Output(display_name="latent_map"),
                     io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, map, map_polarity, steps, curve, gamma, downscale, upscale_preview, latent=None, vae=None) -> io.NodeOutput:
        session.choice("map_polarity", map_polarity, POLARITIES)
        m = map if map.ndim == 3 else map[None]
        H, W = m.shape[-2:]
        if latent is not None:
            h, w = latent["samples"].shape[-2:]
        else:
            r = latent_ratio(vae=vae, default=downscale)
            h, w = max(1, H // r), max(1, W // r)
        small, img, rel = core.preview(m, h, w, steps, curve, gamma) if map_polarity == POLARITIES[0] else \
            core.preview(core.invert(m), h, w, steps, curve, gamma)
        if map_polarity != POLARITIES[0]:
            small = core.invert(small)
        img = img[:, None].expand(-1, 3, -1, -1)
        if upscale_preview:
            img = comfy.utils.common_upscale(img, W, H, "nearest-exact", "disabled")
        img = img.movedim(1, -1).float().contiguous()
        return io.NodeOutput(img, small.float(), core.release_summary(rel, steps), ui=ui.PreviewImage(img, cls=cls))


NODES = [PixelsMapFromDepth, PixelsMapRamp, PixelsMapFalloff, PixelsMapPreview]
