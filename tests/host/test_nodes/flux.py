"""Test-only nodes for the Flux.1, Flux.2 and Z-Image family tests (merged into ``pixels-test-nodes`` by
``__init__.py``; never part of the pack).

``PixelsTestTinyDiTLoader`` loads a tiny diffusion model (``models_flux.py``) the way ComfyUI's ``UNETLoader`` does
(``comfy.sd.load_diffusion_model_state_dict``: ComfyUI's detection picks the ``supported_models`` config class, which
makes ComfyUI's own ``model_base`` class, ``model_sampling`` and latent format), with one difference: ComfyUI fixes
these families' attention head counts instead of reading them from the weights (Flux.1 24 heads, and in 0.3.64
``hidden_size=3072``; Flux.2 48 heads; Z-Image's settings only for ``dim == 3840``), so a small model cannot be
detected as it is. This loader runs ComfyUI's detection on the file, and then changes only what ComfyUI fixes: the
width (read from ``img_in`` / ``txt_in``, as 0.8.0 does for Flux) and the head count (width / 128: the released
models' head width of 128, with their RoPE axes). For Z-Image the config class and its settings come from ComfyUI's
own detection of the same file with a 3840-wide ``cap_embedder`` (a meta tensor; nothing else changes), then the width
and heads are set back to the file's. A file whose keys or shapes differ from what ComfyUI's module for the family
expects is refused (ComfyUI itself would only log missing keys).

``PixelsTestLLMConditioning`` is ``PixelsTestConditioning`` for widths above its 8192 (Flux.2's 15360) with
``pooled_output`` None (what ``CLIPTextEncode`` gives for Mistral and Qwen3; Flux.2's model reads the key).
``PixelsTestModelReport`` shows what a MODEL (and optionally a VAE) was loaded as, for detection assertions over the
HTTP API: ``type(model.model)``, the ``supported_models`` config class, the ``model_sampling`` classes and shift, the
latent format and its channels, the VAE's latent channels and ratio.
"""
from __future__ import annotations

import json

import torch

IMAGE_MODEL = {"flux": "flux", "flux2": "flux2", "z_image": "lumina2"}
CONFIG_CLASS = {"flux": "Flux", "flux2": "Flux2", "z_image": "ZImage"}


def families() -> list[str]:
    """The families this ComfyUI has (``comfy.supported_models.Flux2`` / ``ZImage`` are missing from 0.3.64)."""
    import comfy.supported_models
    return [f for f, c in CONFIG_CLASS.items() if hasattr(comfy.supported_models, c)]


def _detect(sd: dict, family: str):
    import comfy.model_detection as md
    cfg = md.detect_unet_config(sd, "")
    if cfg is None or cfg.get("image_model") != IMAGE_MODEL[family]:
        raise ValueError(f"PixelsTestTinyDiTLoader: ComfyUI does not detect this file as {family} "
                         f"(image_model {None if cfg is None else cfg.get('image_model')})")
    if family == "z_image":
        probe = dict(sd)
        probe["cap_embedder.1.weight"] = torch.empty((3840, sd["cap_embedder.1.weight"].shape[1]), device="meta")
        model_config = md.model_config_from_unet_config(md.detect_unet_config(probe, ""), probe)
    else:
        model_config = md.model_config_from_unet_config(cfg, sd)
    import comfy.supported_models
    # a subclass is the family's variant (Flux -> FluxInpaint for the Fill layout)
    if model_config is None or not isinstance(model_config, getattr(comfy.supported_models, CONFIG_CLASS[family])):
        raise ValueError(f"PixelsTestTinyDiTLoader: ComfyUI's config for this file is {type(model_config).__name__}, "
                         f"not {CONFIG_CLASS[family]}")
    if family == "z_image":
        width = cfg["dim"]
        model_config.unet_config.update(dim=width, n_heads=width // 128, n_kv_heads=width // 128)
    else:
        width = sd["img_in.weight"].shape[0]
        model_config.unet_config.update(hidden_size=width, context_in_dim=sd["txt_in.weight"].shape[1],
                                        num_heads=width // 128)
    return model_config


class PixelsTestTinyDiTLoader:
    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths
        return {"required": {"unet_name": (folder_paths.get_filename_list("diffusion_models"),),
                             "family": (families(),)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = "PIXELS/testing"

    def load(self, unet_name, family):
        import comfy.model_management as mm
        import comfy.model_patcher
        import comfy.utils
        import folder_paths
        sd = comfy.utils.load_torch_file(folder_paths.get_full_path_or_raise("diffusion_models", unet_name))
        model_config = _detect(sd, family)
        parameters = comfy.utils.calculate_parameters(sd)
        load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
        unet_dtype = mm.unet_dtype(model_params=parameters,
                                   supported_dtypes=list(model_config.supported_inference_dtypes),
                                   weight_dtype=comfy.utils.weight_dtype(sd))
        manual_cast_dtype = mm.unet_manual_cast(unet_dtype, load_device, model_config.supported_inference_dtypes)
        model_config.set_inference_dtype(unet_dtype, manual_cast_dtype)
        model = model_config.get_model(sd, "").to(offload_device)
        want = {k: tuple(v.shape) for k, v in model.diffusion_model.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in sd.items()}
        if want != got:
            diff = sorted(set(want.items()) ^ set(got.items()))[:6]
            raise ValueError(f"PixelsTestTinyDiTLoader: the file's layout differs from ComfyUI's {family} module: "
                             f"{diff}")
        model.load_model_weights(sd, "")
        return (comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device),)


class PixelsTestModelReport:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}, "optional": {"vae": ("VAE",)}}

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "report"
    CATEGORY = "PIXELS/testing"

    def report(self, model, vae=None):
        base = model.model
        ms = model.get_model_object("model_sampling")
        lf = base.latent_format
        info = {"model": type(base).__name__, "config": type(base.model_config).__name__,
                "unet_config": {k: v for k, v in base.model_config.unet_config.items()
                                if isinstance(v, (int, float, str, bool, list)) or v is None},
                "model_sampling": [c.__name__ for c in type(ms).__mro__],
                "shift": float(getattr(ms, "shift", float("nan"))), "multiplier": float(getattr(ms, "multiplier", 1.0)),
                "sigma_max": float(ms.sigma_max), "sigma_min": float(ms.sigma_min),
                "latent_format": type(lf).__name__, "latent_channels": int(lf.latent_channels),
                "diffusion_model": type(base.diffusion_model).__name__,
                "parameters": int(sum(p.numel() for p in base.diffusion_model.parameters()))}
        if vae is not None:
            ratio = vae.downscale_ratio
            info["vae"] = {"first_stage_model": type(vae.first_stage_model).__name__,
                           "latent_channels": int(vae.latent_channels),
                           "downscale_ratio": ratio if isinstance(ratio, (int, float)) else str(ratio),
                           "spacial_compression": int(vae.spacial_compression_encode())}
        return {"ui": {"text": [json.dumps(info)]}}


class PixelsTestLLMConditioning:
    """``PixelsTestConditioning`` (same seeding by the text) for wide LLM text encoders, with ``pooled_output`` None
    as ``CLIPTextEncode`` gives for encoders without a pooled vector (Mistral, Qwen3): Flux.2's conditioning is
    Mistral Small 3's three hidden layers of 5120 per token side by side (15360), wider than that node allows, and
    Flux-based models read the ``pooled_output`` key."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": ""}),
                             "tokens": ("INT", {"default": 8, "min": 1, "max": 512}),
                             "dim": ("INT", {"default": 15360, "min": 1, "max": 65536})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "PIXELS/testing"

    def make(self, text, tokens=8, dim=15360):
        import zlib
        g = torch.Generator().manual_seed(zlib.crc32(text.encode("utf-8")))
        return ([[torch.randn((1, tokens, dim), generator=g), {"pooled_output": None}]],)


NODE_CLASS_MAPPINGS = {"PixelsTestTinyDiTLoader": PixelsTestTinyDiTLoader,
                       "PixelsTestModelReport": PixelsTestModelReport,
                       "PixelsTestLLMConditioning": PixelsTestLLMConditioning}
