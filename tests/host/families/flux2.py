"""Flux.2 dev (guidance-distilled flow DiT, 128-channel latent at 16x) from the tiny files of
``tests/host/models_flux.py``, one 64x64 image. ComfyUI 0.8.0 only: 0.3.64 has no Flux.2 (no
``comfy.supported_models.Flux2``, no ``EmptyFlux2LatentImage``), so it skips there.

The transformer (``flux2_dev_fp8mixed.safetensors``, the released layout at hidden 128 with one head of 128, stored
in fp16) goes through ``PixelsTestTinyDiTLoader``: ComfyUI's own detection says ``Flux2`` (``model_base.Flux2``,
``ModelSamplingFlux`` shift 2.02, ``latent_formats.Flux2``, 128 channels); only the head count is read from the
weights, which ComfyUI fixes at the released 48. The VAE (``flux2-vae.safetensors``) goes through ``VAELoader`` in
its released layout and width (ComfyUI fixes the AutoencoderKL width at 128 channels, so it cannot be made small; its
weights are stored in float8 to halve the file, about 84 MB): 32 channels at 8x, packed 2x2 by its latent batch norm
into 128 channels at 16x, so the image encodes to (1, 128, 4, 4).
Text: ``PixelsTestLLMConditioning`` (``PixelsTestConditioning`` for wider encoders) of Mistral Small 3's shape as
ComfyUI's Flux.2 text encoder gives it (three hidden layers of 5120 side by side: 15360), 512 tokens
(``model_base.Flux2`` pads shorter prompts to 512 with zeros, which would blur the known-answer model's prompt
matching), ``pooled_output`` None (Mistral has no pooled vector, as ``CLIPTextEncode`` gives), then ComfyUI's
``FluxGuidance`` 4.0 (Flux.2 dev's default); CFG 1.
"""

OIG = "OIG supports SD1.x, SD2 and SDXL UNet models"
COND = {"src": ["110", 0], "tgt": ["111", 0], "neg": ["112", 0]}


def skip(object_info):
    fams = object_info.get("PixelsTestTinyDiTLoader", {}).get("input", {}).get("required", {}).get("family", [[]])[0]
    if "flux2" not in fams or "EmptyFlux2LatentImage" not in object_info:
        return "this ComfyUI has no Flux.2 model (comfy.supported_models.Flux2 and EmptyFlux2LatentImage are " \
               "missing; ComfyUI 0.8.0 has them)"
    return None


def nodes(prompts):
    g = {"100": {"class_type": "PixelsTestTinyDiTLoader", "inputs": {"unet_name": "flux2_dev_fp8mixed.safetensors",
                                                                     "family": "flux2"}},
         "101": {"class_type": "VAELoader", "inputs": {"vae_name": "flux2-vae.safetensors"}}}
    for text_id, nid, key in (("103", "110", "src"), ("104", "111", "tgt"), ("105", "112", "neg")):
        g[text_id] = {"class_type": "PixelsTestLLMConditioning", "inputs": {"text": prompts[key], "tokens": 512,
                                                                            "dim": 15360}}
        g[nid] = {"class_type": "FluxGuidance", "inputs": {"conditioning": [text_id, 0], "guidance": 4.0}}
    return g


FAMILIES = [
    dict(id="flux2", title="Flux.2 dev (guidance-distilled, 16x VAE)", skip=skip, nodes=nodes,
         model=["100", 0], vae=["101", 0], cond=COND, frames=1, size=64, latent=(1, 128, 4, 4), cfg=1.0,
         ito_check="kept",  # the plain decode already keeps the outside (128 channels: a sharp per-cell posterior)
         methods=("pixels", "syncsde", "ito"), refused={"oig": OIG}),
]
