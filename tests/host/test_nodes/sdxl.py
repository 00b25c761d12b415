"""Test-only nodes for the SDXL family tests (merged into ``pixels-test-nodes`` by ``__init__.py``; never part of
the pack).

``PixelsTestSDXLLoader`` loads a small SDXL-layout UNet file from ``diffusion_models`` as ComfyUI's own SDXL family.
ComfyUI's model list fixes SDXL's UNet config (320 channels, transformer depths [0, 0, 2, 2, 10, 10]), so a tiny
SDXL is never *detected*; this node does what ``comfy.sd.load_diffusion_model_state_dict`` does after detection,
with only the family choice forced:

1. ``comfy.model_detection.detect_unet_config`` reads the architecture from the weights (as ComfyUI does);
2. the config class is ``comfy.supported_models.SDXL`` (instead of the one ``model_config_from_unet_config`` would
   match), so the model gets SDXL's ``latent_format`` (``SDXL``, scale 0.13025), sampling settings (EPS, discrete
   scaled-linear schedule) and extra UNet config (64-wide heads);
3. the dtype comes from ``model_management.unet_dtype`` / ``unet_manual_cast`` as in ComfyUI, the model from the
   config's ``get_model`` (``comfy.model_base.SDXL``: its ``encode_adm`` builds the 2816-wide vector from the pooled
   1280 text embedding and the six size embeddings), weights by ``load_model_weights``, and the result is a
   ``comfy.model_patcher.ModelPatcher`` on ComfyUI's load and offload devices.

What differs from a real SDXL base checkpoint: only the UNet's size (see ``models_sdxl.py``): fewer channels, levels
and transformer blocks; ``context_dim`` 2048 and ``adm_in_channels`` 2816 are SDXL's, so the real conditioning shapes
flow. It refuses a file whose UNet has another context or adm width.

``PixelsTestSDXLSize`` adds the size keys ComfyUI's ``CLIPTextEncodeSDXL`` puts on a conditioning (``width``,
``height``, ``crop_w``, ``crop_h``, ``target_width``, ``target_height``), so they reach ``model_base.SDXL.encode_adm``
as they do with the real text encoder node (which needs CLIP-L + CLIP-G, too big to make tiny).
"""
from __future__ import annotations

import folder_paths


def load_sdxl_unet(path: str):
    import comfy.model_detection
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models
    import comfy.utils

    sd = comfy.utils.load_torch_file(path)
    unet_config = comfy.model_detection.detect_unet_config(sd, "")
    if unet_config is None or unet_config.get("context_dim") != 2048 or unet_config.get("adm_in_channels") != 2816:
        got = None if unet_config is None else (unet_config.get("context_dim"), unet_config.get("adm_in_channels"))
        raise ValueError(f"PixelsTestSDXLLoader: {path} is not an SDXL-layout UNet (context_dim, adm_in_channels = "
                         f"{got}, SDXL has 2048, 2816)")
    model_config = comfy.supported_models.SDXL(unet_config)
    load_device = comfy.model_management.get_torch_device()
    offload_device = comfy.model_management.unet_offload_device()
    unet_dtype = comfy.model_management.unet_dtype(model_params=comfy.utils.calculate_parameters(sd),
                                                   supported_dtypes=list(model_config.supported_inference_dtypes),
                                                   weight_dtype=comfy.utils.weight_dtype(sd))
    manual_cast_dtype = comfy.model_management.unet_manual_cast(unet_dtype, load_device,
                                                                model_config.supported_inference_dtypes)
    model_config.set_inference_dtype(unet_dtype, manual_cast_dtype)
    model = model_config.get_model(sd, "")
    model = model.to(offload_device)
    model.load_model_weights(sd, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


class PixelsTestSDXLLoader:
    @classmethod
    def INPUT_TYPES(cls):
        names = [n for n in folder_paths.get_filename_list("diffusion_models") if "sdxl" in n.lower()]
        return {"required": {"unet_name": (names,)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = "PIXELS/testing"

    def load(self, unet_name):
        return (load_sdxl_unet(folder_paths.get_full_path_or_raise("diffusion_models", unet_name)),)


class PixelsTestSDXLSize:
    @classmethod
    def INPUT_TYPES(cls):
        size = {"default": 1024, "min": 0, "max": 16384}
        return {"required": {"conditioning": ("CONDITIONING",), "width": ("INT", size), "height": ("INT", size),
                             "crop_w": ("INT", {"default": 0, "min": 0, "max": 16384}),
                             "crop_h": ("INT", {"default": 0, "min": 0, "max": 16384}),
                             "target_width": ("INT", size), "target_height": ("INT", size)}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "set"
    CATEGORY = "PIXELS/testing"

    def set(self, conditioning, width, height, crop_w, crop_h, target_width, target_height):
        keys = dict(width=width, height=height, crop_w=crop_w, crop_h=crop_h, target_width=target_width,
                    target_height=target_height)
        return ([[t, {**d, **keys}] for t, d in conditioning],)


NODE_CLASS_MAPPINGS = {"PixelsTestSDXLLoader": PixelsTestSDXLLoader, "PixelsTestSDXLSize": PixelsTestSDXLSize}
