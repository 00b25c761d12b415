"""Edit-map operations on existing maps (grow, blur, levels, equalise, stretch, invert, quantise, combine): thin
wrappers over pixels_core.editmap, all on ComfyUI MASK (B, H, W) in [0, 1]. Maps made from depth, ramps, mask
falloffs and the map preview are in nodes/editmap_make.py."""
from __future__ import annotations

from comfy_api.latest import io

from ..pixels_core import editmap as core
from . import _session as session

CATEGORY = "PIXELS/edit maps"
MAP_TIP = ("Edit map (ComfyUI MASK, values 0..1). In this pack white (1) keeps the source, black (0) is edited from the "
           "first step, grey is released part-way (darker = earlier); the ops themselves work on either polarity.")


def map_input(name="map", tip=MAP_TIP):
    return io.Mask.Input(name, tooltip=tip)


def map_outputs():
    return [io.Mask.Output(display_name="map")]


class PixelsMapGrow(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapGrow", display_name="PIXELS Map Grow/Shrink", category=CATEGORY,
            description="Grows (grey dilation: white spreads) or shrinks (grey erosion) a map by a number of pixels. "
                        "Works on grey maps, not only binary masks; same result as scipy.ndimage.grey_dilation/erosion.",
            inputs=[
                map_input(),
                io.Int.Input("pixels", default=8, min=-1024, max=1024,
                             tooltip="How far white regions grow, in pixels (negative shrinks them). Raising it spreads "
                                     "bright values further."),
                io.Combo.Input("shape", options=list(core.SHAPES), default="disk",
                               tooltip="Footprint: disk grows evenly in all directions (round corners); square grows as "
                                       "far diagonally as straight (keeps square corners; like ComfyUI's GrowMask)."),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def execute(cls, map, pixels, shape) -> io.NodeOutput:
        return io.NodeOutput(core.grow(map, pixels, shape))


class PixelsMapBlur(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapBlur", display_name="PIXELS Map Blur", category=CATEGORY,
            description="Gaussian blur / feather of a map (separable, exact kernel of radius 4 sigma, mirrored borders; "
                        "matches scipy.ndimage.gaussian_filter). Turns hard mask edges into gradual releases.",
            inputs=[
                map_input(),
                io.Float.Input("sigma", default=8.0, min=0.0, max=1024.0, step=0.1,
                               tooltip="Standard deviation in pixels (0 = unchanged). Raising it widens the soft edge "
                                       "(about 2 sigma on each side of a hard edge)."),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def execute(cls, map, sigma) -> io.NodeOutput:
        return io.NodeOutput(core.blur(map, sigma))


class PixelsMapLevels(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapLevels", display_name="PIXELS Map Levels", category=CATEGORY,
            description="Levels as in an image editor: values at or below the black point become out_black, at or above "
                        "the white point out_white, with a gamma curve between.",
            inputs=[
                map_input(),
                io.Float.Input("black", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Input black point. Raising it turns more dark greys fully black."),
                io.Float.Input("white", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Input white point (above the black point). Lowering it turns more light greys fully white."),
                io.Float.Input("gamma", default=1.0, min=0.05, max=20.0, step=0.01,
                               tooltip="Mid-grey curve, out = in^(1/gamma). Raising it brightens the greys (in paper "
                                       "polarity: released later, more of the source kept)."),
                io.Float.Input("out_black", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Output value of black. Raising it lifts the darkest pixels (nothing edited from step 0)."),
                io.Float.Input("out_white", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Output value of white. Lowering it releases even white pixels late in sampling."),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def validate_inputs(cls, black=None, white=None, gamma=None, out_black=None, out_white=None):
        return session.validate(cls, core.check_levels, black=black, white=white, gamma=gamma, out_black=out_black,
                                out_white=out_white)

    @classmethod
    def execute(cls, map, black, white, gamma, out_black, out_white) -> io.NodeOutput:
        return io.NodeOutput(core.levels(map, black, white, gamma, out_black, out_white))


class PixelsMapEqualize(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapEqualize", display_name="PIXELS Map Equalize", category=CATEGORY,
            description="Histogram equalisation of each map: spreads its grey levels evenly over 0..1, so the progressive "
                        "sampler releases about the same number of pixels at every step.",
            inputs=[
                map_input(),
                io.Int.Input("bins", default=256, min=2, max=65536,
                             tooltip="Histogram bins. Raising it separates close grey levels more finely."),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def execute(cls, map, bins) -> io.NodeOutput:
        return io.NodeOutput(core.equalize(map, bins))


class PixelsMapStretch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapStretch", display_name="PIXELS Map Stretch", category=CATEGORY,
            description="Contrast stretch of each map between two percentiles of its own values (robust auto-levels).",
            inputs=[
                map_input(),
                io.Float.Input("low_percentile", default=1.0, min=0.0, max=100.0, step=0.1,
                               tooltip="This percentile becomes black. Raising it clips more of the darkest values to 0."),
                io.Float.Input("high_percentile", default=99.0, min=0.0, max=100.0, step=0.1,
                               tooltip="This percentile becomes white (above the low one). Lowering it clips more of the "
                                       "brightest values to 1."),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def validate_inputs(cls, low_percentile=None, high_percentile=None):
        return session.validate(cls, lambda low_percentile, high_percentile: core.check_stretch(
            low_percentile, high_percentile), low_percentile=low_percentile, high_percentile=high_percentile)

    @classmethod
    def execute(cls, map, low_percentile, high_percentile) -> io.NodeOutput:
        return io.NodeOutput(core.stretch(map, low_percentile, high_percentile))


class PixelsMapInvert(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapInvert", display_name="PIXELS Map Invert", category=CATEGORY,
            description="1 - map: swaps what is kept and what is edited (e.g. an inpaint mask, white = change, into the "
                        "paper's polarity, white = keep).",
            inputs=[map_input()],
            outputs=map_outputs(),
        )

    @classmethod
    def execute(cls, map) -> io.NodeOutput:
        return io.NodeOutput(core.invert(map))


class PixelsMapQuantize(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapQuantize", display_name="PIXELS Map Quantize", category=CATEGORY,
            description="Rounds the map to N evenly spaced grey levels, so the sampler releases it in N hard-edged groups.",
            inputs=[
                map_input(),
                io.Int.Input("levels", default=4, min=2, max=256,
                             tooltip="Number of grey levels (black and white included). Raising it gives smoother steps."),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def execute(cls, map, levels) -> io.NodeOutput:
        return io.NodeOutput(core.quantize(map, levels))


class PixelsMapCombine(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapCombine", display_name="PIXELS Map Combine", category=CATEGORY,
            description="Combines two maps: min, max, multiply or screen. map_b is fitted to map_a (centre crop + "
                        "bilinear) and a single map is used for every image of a batch.",
            inputs=[
                map_input("map_a", "First map; sets the output size and batch."),
                map_input("map_b", "Second map."),
                io.Combo.Input("mode", options=list(core.COMBINE_MODES), default="min",
                               tooltip="min: darker wins (paper polarity: edit where either map edits); max: brighter "
                                       "wins (edit only where both edit); multiply: a*b; screen: 1-(1-a)(1-b)."),
                io.Float.Input("amount", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Blend from map_a (0) to the combination (1). Raising it applies more of map_b."),
            ],
            outputs=map_outputs(),
        )

    @classmethod
    def execute(cls, map_a, map_b, mode, amount) -> io.NodeOutput:
        return io.NodeOutput(core.combine(map_a, map_b, mode, amount))


NODES = [PixelsMapGrow, PixelsMapBlur, PixelsMapLevels, PixelsMapEqualize, PixelsMapStretch, PixelsMapInvert,
         PixelsMapQuantize, PixelsMapCombine]
