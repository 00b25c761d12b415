"""Test-only nodes for the inpainting-checkpoint host tests (merged into ``pixels-test-nodes`` by ``__init__.py``;
never part of the pack).

``PixelsTestConcatRecorder`` puts a ``model_function_wrapper`` on a clone of the MODEL that records, for every model
call, its sigma and the ``c_concat`` the model receives (the inpainting mask and masked image, as the sampler built
them), then runs the real network. ``PixelsTestConcatDump`` (after the sampler: it takes the sampled latent) hands
the record out as two LATENTs (sigmas ``(calls,)``, concats ``(calls, batch, C, h, w)``) and clears it.
``PixelsTestConcatReference`` is what ComfyUI itself makes of a conditioning's ``concat_latent_image`` and
``concat_mask`` (from InpaintModelConditioning): the model's own ``concat_cond``, as ``extra_conds`` calls it.
"""
from __future__ import annotations

import torch

RECORDS: dict[str, list] = {}


class PixelsTestConcatRecorder:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "name": ("STRING", {"default": "concat"})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "PIXELS/testing"

    def patch(self, model, name):
        m = model.clone()
        RECORDS[name] = []

        def wrapper(apply_model, args):
            c = args["c"]
            concat = c.get("c_concat")
            RECORDS.setdefault(name, []).append((float(args["timestep"].reshape(-1)[0]),
                                                 None if concat is None else concat.detach().float().cpu().clone()))
            return apply_model(args["input"], args["timestep"], **c)

        m.set_model_unet_function_wrapper(wrapper)
        return (m,)


class PixelsTestConcatDump:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "name": ("STRING", {"default": "concat"})}}

    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("sigmas", "concats")
    FUNCTION = "dump"
    CATEGORY = "PIXELS/testing"

    def dump(self, samples, name):
        calls, RECORDS[name] = RECORDS.get(name, []), []
        if not calls or any(c is None for _, c in calls):
            raise ValueError(f"PixelsTestConcatDump: no c_concat recorded for {name!r} ({len(calls)} calls)")
        return ({"samples": torch.tensor([s for s, _ in calls])}, {"samples": torch.stack([c for _, c in calls])})


class PixelsTestConcatReference:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "conditioning": ("CONDITIONING",), "latent": ("LATENT",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "reference"
    CATEGORY = "PIXELS/testing"

    def reference(self, model, conditioning, latent):
        extra = conditioning[0][1]
        base = model.model
        noise = torch.zeros_like(latent["samples"])
        concat = base.concat_cond(noise=noise, concat_latent_image=extra["concat_latent_image"],
                                  concat_mask=extra["concat_mask"], device=torch.device("cpu"))
        return ({"samples": concat.float()},)


NODE_CLASS_MAPPINGS = {"PixelsTestConcatRecorder": PixelsTestConcatRecorder, "PixelsTestConcatDump": PixelsTestConcatDump,
                       "PixelsTestConcatReference": PixelsTestConcatReference}
