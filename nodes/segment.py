"""Segmentation to edit map (PixelsMapFromSegments) and exemplar placement (PixelsPlaceExemplar): thin wrappers over
pixels_core.segment and pixels_core.place, for the PIXELS progressive sampler (maps in paper polarity: white keeps
the source, black takes the exemplar)."""
from __future__ import annotations

from comfy_api.latest import io

from ..pixels_core import place as place_core
from ..pixels_core import segment as seg_core
from . import _session as session
from .editmap import CATEGORY as MAP_CATEGORY
from .pixels import CATEGORY as PIXELS_CATEGORY


class PixelsMapFromSegments(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsMapFromSegments", display_name="PIXELS Map From Segments", category=MAP_CATEGORY,
            description="Turns a segmentation into an edit map with one grey level per segment: from a label image (one "
                        "flat colour per segment, or integer labels as grey) or from a batch of masks (e.g. SAM / "
                        "SEGS-to-mask output). Optional soft edges of a chosen width between segments (Gaussian blur of "
                        "the level map, sigma = edge_width / 4; levels stay exact away from the edges).",
            inputs=[
                io.String.Input("levels", default="0.0, 0.5",
                                tooltip="Grey level of each segment, comma-separated, in segment order (label image: by "
                                        "first appearance or by label value, see order; mask batch: mask 1, mask 2, ...). "
                                        "0 = take the exemplar from the first step, 1 = keep the source, grey = released "
                                        "part-way (darker = earlier). Give at least one value per segment."),
                io.Float.Input("default", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Level of pixels in no segment (pixels no mask covers; a label image has none). "
                                       "1 keeps them as the source."),
                io.Float.Input("edge_width", default=0.0, min=0.0, max=1024.0, step=1.0,
                               tooltip="Width in pixels of the soft transition across each boundary between segments "
                                       "(0 = hard edges). Gaussian of sigma = edge_width / 4: 95 % of the change lies "
                                       "within edge_width centred on the boundary."),
                io.Combo.Input("order", options=list(seg_core.ORDERS), default=seg_core.ORDERS[0],
                               tooltip="Segment order of a label image: first appearance (raster order, row by row from "
                                       "the top left, over the whole batch) or label value (8-bit colour value "
                                       "ascending: for a grey integer-label image, label 0 first). Ignored for masks."),
                io.Image.Input("labels", optional=True,
                               tooltip="Label image: one flat colour per segment (no antialiasing; at most 256 colours). "
                                       "Connect this or masks, not both. A batch gives one map per image."),
                io.Mask.Input("masks", optional=True,
                              tooltip="Batch of segment masks (N, H, W): mask k is segment k (values >= 0.5 inside; where "
                                      "masks overlap the later one wins). Gives one map."),
            ],
            outputs=[io.Mask.Output(display_name="map"), io.Image.Output(display_name="preview")],
        )

    @classmethod
    def validate_inputs(cls, levels=None):
        return session.validate(cls, lambda levels: seg_core.parse_levels(levels), levels=levels)

    @classmethod
    def execute(cls, levels, default, edge_width, order, labels=None, masks=None) -> io.NodeOutput:
        session.choice("order", order, seg_core.ORDERS)
        m, preview, _ = seg_core.map_from_segments(labels, masks, levels, default, edge_width, order)
        return io.NodeOutput(m, preview)


class PixelsPlaceExemplar(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsPlaceExemplar", display_name="PIXELS Place Exemplar", category=PIXELS_CATEGORY,
            description="Places an exemplar (optionally cut out by a mask) into the source frame at a position, scale and "
                        "rotation: outputs the exemplar composited onto the source (source size) and the matching edit "
                        "map in paper polarity (white keeps the source, black takes the exemplar, a feathered soft "
                        "edge), ready for PIXELS Exemplar. Exact bilinear affine resampling, antialiased when shrinking.",
            inputs=[
                io.Image.Input("exemplar", tooltip="Exemplar image (a 4th channel, if any, is its alpha). One image for "
                               "every source, or one per source."),
                io.Image.Input("source", tooltip="The image to edit: gives the frame size and fills everything outside "
                               "the placed exemplar."),
                io.Float.Input("x", default=0.5, min=-2.0, max=3.0, step=0.01,
                               tooltip="Horizontal position of the exemplar's centre, as a fraction of the source width "
                                       "(0 = left edge, 1 = right edge)."),
                io.Float.Input("y", default=0.5, min=-2.0, max=3.0, step=0.01,
                               tooltip="Vertical position of the exemplar's centre, as a fraction of the source height "
                                       "(0 = top edge, 1 = bottom edge)."),
                io.Float.Input("scale", default=0.5, min=0.001, max=64.0, step=0.01,
                               tooltip="Size of the exemplar. With scale_by 'source shorter side': the exemplar's longer "
                                       "side as a fraction of the source's shorter side (1 = as large as fits). With "
                                       "'exemplar pixels': a plain factor on its own size (1 = pixel for pixel)."),
                io.Float.Input("rotation", default=0.0, min=-360.0, max=360.0, step=1.0,
                               tooltip="Rotation in degrees about the exemplar's centre, counter-clockwise."),
                io.Float.Input("feather", default=8.0, min=0.0, max=1024.0, step=1.0,
                               tooltip="Width in pixels of the soft edge of the map, growing out of the cut-out (linear "
                                       "from black at the cut-out to white). 0 = only the 1-px antialiased edge."),
                io.Combo.Input("scale_by", options=list(place_core.SCALE_MODES), default=place_core.SCALE_MODES[0],
                               tooltip="What scale measures: a fraction of the source's shorter side, or a plain factor "
                                       "on the exemplar's own pixels."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Cut-out of the exemplar (its size, or fitted to it). Without it the whole "
                                      "exemplar rectangle is placed."),
                io.Combo.Input("mask_meaning", options=list(place_core.MASK_MEANINGS),
                               default=place_core.MASK_MEANINGS[0], optional=True,
                               tooltip="How to read mask: white = the exemplar's object (SAM, SolidMask, painted masks), "
                                       "or white = transparent (the MASK output of Load Image, which is 1 - alpha)."),
            ],
            outputs=[io.Image.Output(display_name="exemplar"), io.Mask.Output(display_name="edit_map")],
        )

    @classmethod
    def execute(cls, exemplar, source, x, y, scale, rotation, feather, scale_by, mask=None,
                mask_meaning=None) -> io.NodeOutput:
        session.choice("scale_by", scale_by, place_core.SCALE_MODES)
        meaning = place_core.MASK_MEANINGS[0] if mask_meaning is None else mask_meaning
        session.choice("mask_meaning", meaning, place_core.MASK_MEANINGS)
        image, edit_map, _ = place_core.place(exemplar, source, mask, x, y, scale, rotation, feather, scale_by, meaning)
        return io.NodeOutput(image, edit_map)


NODES = [PixelsMapFromSegments, PixelsPlaceExemplar]
