"""Z-Image turbo (flow DiT in the Lumina 2 / NextDiT family) from the tiny files of ``tests/host/models_flux.py``,
one 64x64 image. ComfyUI 0.8.0 only: 0.3.64 has no Z-Image (no ``comfy.supported_models.ZImage``), so it skips there.

The transformer (``z_image_turbo_bf16.safetensors``, the released layout at dim 256 with two heads of 128) goes
through ``PixelsTestTinyDiTLoader``: ComfyUI's detection says ``lumina2``, and its Z-Image settings (config ``ZImage``,
``model_base.Lumina2``, ``ModelSamplingDiscreteFlow`` shift 3, ``latent_formats.Flux``) come from ComfyUI's own
detection, which gives them only for the released width 3840; the width and head count are the file's. The VAE is
Flux.1's (``ae.safetensors`` through ``VAELoader``: a 16-channel TAESD, 8x), so (1, 16, 8, 8). Text:
``PixelsTestConditioning`` of Qwen3-4B's hidden width (1, 8, 2560, what ComfyUI's Z-Image text encoder gives and the
detected ``cap_feat_dim``), no pooled output and no guidance; CFG 1, as the turbo model is run.
"""

OIG = "OIG supports SD1.x, SD2 and SDXL UNet models"
COND = {"src": ["110", 0], "tgt": ["111", 0], "neg": ["112", 0]}


def skip(object_info):
    fams = object_info.get("PixelsTestTinyDiTLoader", {}).get("input", {}).get("required", {}).get("family", [[]])[0]
    if "z_image" not in fams:
        return "this ComfyUI has no Z-Image model (comfy.supported_models.ZImage is missing; ComfyUI 0.8.0 has it)"
    return None


def nodes(prompts):
    g = {"100": {"class_type": "PixelsTestTinyDiTLoader", "inputs": {"unet_name": "z_image_turbo_bf16.safetensors",
                                                                     "family": "z_image"}},
         "101": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}}}
    for nid, key in (("110", "src"), ("111", "tgt"), ("112", "neg")):
        g[nid] = {"class_type": "PixelsTestConditioning", "inputs": {"text": prompts[key], "tokens": 8, "dim": 2560}}
    return g


FAMILIES = [
    dict(id="zimage", title="Z-Image turbo", skip=skip, nodes=nodes,
         model=["100", 0], vae=["101", 0], cond=COND, frames=1, size=64, latent=(1, 16, 8, 8), cfg=1.0,
         # ITO's preservation halves the outside drift on the known-answer model, not exact (the fixed Adam step of
         # 0.1 on these flow latents: pixels_core/ito.py)
         ito_check="halves",
         methods=("pixels", "syncsde", "ito"), refused={"oig": OIG}),
]
