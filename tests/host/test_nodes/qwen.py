"""Test-only loaders for families whose released widths ComfyUI fixes in code, so a tiny random-weight file in the
released layout cannot go through the stock loader (merged into ``pixels-test-nodes`` by ``__init__.py``; never part
of the pack).

``PixelsTestQwenImageLoader`` (Qwen-Image): the same steps as ``UNETLoader`` (``comfy.sd.load_diffusion_model``):
ComfyUI's own detection (``model_detection.model_config_from_unet``, which must answer ``QwenImage``), its dtype
choice, ``model_config.get_model`` (``model_base.QwenImage`` around ``QwenImageTransformer2DModel``) and
``load_model_weights``, in a ``ModelPatcher``. The one difference: ComfyUI's detection reads only ``in_channels`` and
``num_layers`` and leaves the heads at the released 24 of width 128; here ``num_attention_heads`` and
``attention_head_dim`` are read from the weights (``img_in`` width over the ``norm_q`` width) and put in the
detected ``unet_config``. Quantised (fp8 scaled) files are not handled: the tiny file is fp16.

``PixelsTestWanVAELoader`` (the Wan 2.1-layout VAE that Wan 2.1 and Qwen-Image use, and the Wan 2.2 VAE):
``VAELoader``'s own path (``comfy.sd.VAE(sd=...)``, which detects the VAE and sets its channels, ratios, dtypes and
memory estimates) with one difference: ComfyUI builds the VAE module (``comfy.ldm.wan.vae.WanVAE`` /
``comfy.ldm.wan.vae2_2.WanVAE``) with the released widths (0.3.64: Wan 2.1 ``dim=96``; both versions: Wan 2.2
``dim=160``, ``dec_dim=256``, about 1.4 GB); here, while the VAE is built, that class is called with the widths read
from the weights (Wan 2.1: ``decoder.head.0.gamma``, exactly what 0.8.0's own loader reads; Wan 2.2:
``encoder.conv1`` and ``decoder.head.0``). The class is restored before the node returns. On 0.8.0 a Wan 2.1-layout
file loads the same through ``VAELoader`` (``test_family_qwen_wan.py`` checks the two agree).
"""
from __future__ import annotations


def _qwen_unet(path: str):
    import comfy.model_detection
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.utils
    sd = comfy.utils.load_torch_file(path)
    config = comfy.model_detection.model_config_from_unet(sd, "")
    if type(config).__name__ != "QwenImage":
        raise ValueError(f"PixelsTestQwenImageLoader: ComfyUI detects this file as "
                         f"{type(config).__name__ if config is not None else 'nothing'}, not QwenImage")
    head_dim = sd["transformer_blocks.0.attn.norm_q.weight"].shape[0]
    config.unet_config["attention_head_dim"] = head_dim
    config.unet_config["num_attention_heads"] = sd["img_in.weight"].shape[0] // head_dim
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    unet_dtype = mm.unet_dtype(model_params=comfy.utils.calculate_parameters(sd),
                               supported_dtypes=list(config.supported_inference_dtypes),
                               weight_dtype=comfy.utils.weight_dtype(sd))
    config.set_inference_dtype(unet_dtype, mm.unet_manual_cast(unet_dtype, load_device,
                                                               config.supported_inference_dtypes))
    model = config.get_model(sd, "").to(offload_device)
    model.load_model_weights(sd, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def _wan_vae(path: str):
    import comfy.ldm.wan.vae as vae2_1
    import comfy.ldm.wan.vae2_2 as vae2_2
    import comfy.sd
    import comfy.utils
    sd = comfy.utils.load_torch_file(path)
    if "decoder.middle.0.residual.0.gamma" not in sd:
        raise ValueError("PixelsTestWanVAELoader: not a Wan VAE (no decoder.middle.0.residual.0.gamma)")
    if "decoder.upsamples.0.upsamples.0.residual.2.weight" in sd:  # Wan 2.2, as comfy.sd.VAE tells them apart
        module, widths = vae2_2, {"dim": sd["encoder.conv1.weight"].shape[0],
                                  "dec_dim": sd["decoder.head.0.gamma"].shape[0]}
    else:
        module, widths = vae2_1, {"dim": sd["decoder.head.0.gamma"].shape[0]}
    released = module.WanVAE

    def with_widths(*args, **config):
        return released(*args, **{**config, **widths})

    module.WanVAE = with_widths
    try:
        vae = comfy.sd.VAE(sd=sd)
    finally:
        module.WanVAE = released
    vae.throw_exception_if_invalid()
    return vae


class PixelsTestQwenImageLoader:
    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths
        return {"required": {"unet_name": (folder_paths.get_filename_list("diffusion_models"),)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = "PIXELS/testing"

    def load(self, unet_name):
        import folder_paths
        return (_qwen_unet(folder_paths.get_full_path_or_raise("diffusion_models", unet_name)),)


class PixelsTestWanVAELoader:
    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths
        return {"required": {"vae_name": (folder_paths.get_filename_list("vae"),)}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "load"
    CATEGORY = "PIXELS/testing"

    def load(self, vae_name):
        import folder_paths
        return (_wan_vae(folder_paths.get_full_path_or_raise("vae", vae_name)),)


NODE_CLASS_MAPPINGS = {"PixelsTestQwenImageLoader": PixelsTestQwenImageLoader,
                       "PixelsTestWanVAELoader": PixelsTestWanVAELoader}
