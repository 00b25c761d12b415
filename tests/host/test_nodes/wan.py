"""Test-only nodes for the video host tests (merged into ``pixels-test-nodes`` by ``__init__.py``; never part of
the pack).

``PixelsTestConditioning`` stands in for text encoders that cannot be made tiny (umT5-XXL, T5-XXL, Qwen, Mistral,
OpenCLIP): a CONDITIONING ``[[(1, tokens, dim), {"pooled_output": (1, pooled)}]]`` (no pooled output when
``pooled`` is 0) drawn from a seed made of the text, so two prompts give two different conditionings
and one prompt always the same. ``PixelsTestFrames`` makes a clip of ``frames`` smooth random image frames
(IMAGE ``(frames, H, W, 3)``) from a seed, and ``PixelsTestMaskBatch`` stacks MASKs into one batch (one map per frame).
"""
from __future__ import annotations

import zlib

import torch


class PixelsTestConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": ""}),
                             "tokens": ("INT", {"default": 8, "min": 1, "max": 512}),
                             "dim": ("INT", {"default": 4096, "min": 1, "max": 65536})},
                "optional": {"pooled": ("INT", {"default": 0, "min": 0, "max": 8192})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "PIXELS/testing"

    def make(self, text, tokens=8, dim=4096, pooled=0):
        g = torch.Generator().manual_seed(zlib.crc32(text.encode("utf-8")))
        extra = {"pooled_output": torch.randn((1, pooled), generator=g)} if pooled else {}
        return ([[torch.randn((1, tokens, dim), generator=g), extra]],)


class PixelsTestFrames:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": ("INT", {"default": 5, "min": 1}), "width": ("INT", {"default": 64, "min": 8}),
                             "height": ("INT", {"default": 64, "min": 8}), "seed": ("INT", {"default": 0, "min": 0})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "make"
    CATEGORY = "PIXELS/testing"

    def make(self, frames, width, height, seed):
        g = torch.Generator().manual_seed(seed)
        coarse = torch.rand((frames, 3, max(2, height // 16), max(2, width // 16)), generator=g)
        img = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
        return (img.clamp(0, 1).movedim(1, -1).contiguous(),)


class PixelsTestMaskBatch:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("MASK",)}, "optional": {"b": ("MASK",), "c": ("MASK",), "d": ("MASK",)}}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "stack"
    CATEGORY = "PIXELS/testing"

    def stack(self, a, b=None, c=None, d=None):
        return (torch.cat([m.reshape(-1, *m.shape[-2:]) for m in (a, b, c, d) if m is not None]),)


NODE_CLASS_MAPPINGS = {"PixelsTestConditioning": PixelsTestConditioning, "PixelsTestFrames": PixelsTestFrames,
                       "PixelsTestMaskBatch": PixelsTestMaskBatch}
