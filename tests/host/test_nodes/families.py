"""Test-only nodes for the family matrix (merged into ``pixels-test-nodes`` by ``__init__.py``; never part of the
pack).

``PixelsTestCLIPLoader`` gives a CLIP stand-in with a released text encoder's output shapes (see ``ENCODERS``),
so shipped workflows run their own CLIP Text Encode nodes on families whose encoders cannot be made tiny.
``PixelsTestLatentSplice`` makes a known edit target: latent ``a`` with the right ``fraction`` of its width (the last
axis, so image and video latents alike) taken from latent ``b``; the latent's own grid, whatever the VAE's ratio.
``PixelsTestLatentScale`` multiplies a latent by any factor (ComfyUI's LatentMultiply stops at 10): the tiny random
VAEs give latents of about 1e-3, a real VAE's are of order 1.
"""
from __future__ import annotations

import zlib

import torch

# Text encoders that cannot be made tiny: (tokens, width of the hidden states the model reads, pooled width or 0).
# The widths are those of the released encoders' outputs as the families' models take them.
ENCODERS = {
    "sd2 (OpenCLIP-H)": (77, 1024, 0),
    "sdxl (CLIP-L + OpenCLIP-bigG)": (77, 2048, 1280),
    "flux (CLIP-L + T5-XXL)": (8, 4096, 768),
    "wan (umT5-XXL)": (8, 4096, 0),
    "qwen_image (Qwen2.5-VL 7B)": (8, 3584, 0),
    "lumina2 (Qwen3 4B, Z-Image)": (8, 2560, 0),
}


class _Tokens(dict):
    """What ``tokenize`` returns: every encoder's key gives the text (nodes such as CLIP Text Encode (Flux) read
    ``tokens["t5xxl"]`` of a second tokenize and put it into the first)."""

    def __missing__(self, key):
        return self.get("text", "")


class StandInCLIP:
    """A CLIP object for ComfyUI's text-encode nodes: ``tokenize`` keeps the text, ``encode_from_tokens_scheduled``
    returns ``[[(1, tokens, dim), {"pooled_output": (1, pooled), **add_dict}]]`` drawn from a seed made of the
    texts, so two prompts give two conditionings and one prompt always the same."""

    def __init__(self, encoder: str):
        self.encoder = encoder
        self.tokens, self.dim, self.pooled = ENCODERS[encoder]

    def clone(self):
        return StandInCLIP(self.encoder)

    def clip_layer(self, layer_idx):
        pass

    def tokenize(self, text, return_word_ids=False, **kwargs):
        return _Tokens(text=text)

    def _draw(self, tokens):
        texts = set(tokens.values())  # one prompt (every key the same text) or several (CLIP Text Encode (Flux))
        text = tokens["text"] if len(texts) == 1 else "\x00".join(f"{k}={tokens[k]}" for k in sorted(tokens))
        g = torch.Generator().manual_seed(zlib.crc32(text.encode("utf-8")))
        cond = torch.randn((1, self.tokens, self.dim), generator=g)
        pooled = torch.randn((1, self.pooled), generator=g) if self.pooled else None
        return cond, pooled

    def encode_from_tokens_scheduled(self, tokens, unprojected=False, add_dict=None, show_pbar=True, **kwargs):
        cond, pooled = self._draw(tokens)
        extra = {} if pooled is None else {"pooled_output": pooled}
        extra.update(add_dict or {})
        return [[cond, extra]]

    def encode_from_tokens(self, tokens, return_pooled=False, return_dict=False):
        cond, pooled = self._draw(tokens)
        if return_dict:
            return {"cond": cond, "pooled_output": pooled}
        return (cond, pooled) if return_pooled else cond


class PixelsTestCLIPLoader:
    """Stands in for a text-encoder loader (Load CLIP, DualCLIPLoader, a checkpoint's CLIP) where the released
    encoder cannot be made tiny; ComfyUI's own text-encode nodes run on it unchanged."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"encoder": (list(ENCODERS),)}}

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "PIXELS/testing"

    def load(self, encoder):
        return (StandInCLIP(encoder),)


class PixelsTestLatentSplice:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("LATENT",), "b": ("LATENT",),
                             "fraction": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "splice"
    CATEGORY = "PIXELS/testing"

    def splice(self, a, b, fraction=0.5):
        out = a["samples"].clone()
        w = out.shape[-1]
        cut = w - int(round(w * fraction))
        out[..., cut:] = b["samples"][..., cut:]
        return ({"samples": out},)


class PixelsTestLatentScale:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "factor": ("FLOAT", {"default": 1.0, "min": -1e9, "max": 1e9})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "scale"
    CATEGORY = "PIXELS/testing"

    def scale(self, samples, factor=1.0):
        return ({"samples": samples["samples"] * factor},)


class PixelsTestModelSpace:
    """The latent as the model sees it, less its shift: ``process_latent_in(x) - process_latent_in(0)`` (the latent
    format's scale applied), to size test latents as a real VAE's would be in the model's space (about 1)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "samples": ("LATENT",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "convert"
    CATEGORY = "PIXELS/testing"

    def convert(self, model, samples):
        x = samples["samples"].float()
        base = model.model
        return ({"samples": base.process_latent_in(x) - base.process_latent_in(torch.zeros_like(x))},)


NODE_CLASS_MAPPINGS = {"PixelsTestModelSpace": PixelsTestModelSpace, "PixelsTestLatentSplice": PixelsTestLatentSplice, "PixelsTestLatentScale": PixelsTestLatentScale,
                       "PixelsTestCLIPLoader": PixelsTestCLIPLoader}
