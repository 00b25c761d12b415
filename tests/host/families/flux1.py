"""Flux.1 dev (guidance-distilled flow DiT) from the tiny files of ``tests/host/models_flux.py``, one 64x64 image.

The transformer (``flux1-dev.safetensors``, the released layout at hidden 128 with one head of 128) goes through
``PixelsTestTinyDiTLoader``: ComfyUI's own detection says ``Flux`` (``model_base.Flux``, ``ModelSamplingFlux`` shift
1.15, ``latent_formats.Flux``); only the width and head count are read from the weights, which ComfyUI fixes at the
released 3072 / 24. The VAE (``ae.safetensors``) goes through ``VAELoader``: a 16-channel TAESD (the layout of
ComfyUI's ``taef1``; the released AutoencoderKL's width is fixed by ComfyUI at 128 channels, about 160 MB), 8x, so the
image encodes to (1, 16, 8, 8). Text: ``PixelsTestConditioning`` of T5-XXL's shape (1, 8, 4096) with CLIP-L's pooled
vector (1, 768), as ``CLIPTextEncode`` with Flux's dual CLIP gives (neither encoder can be made tiny), then ComfyUI's
``FluxGuidance`` 3.5 on each prompt, run at CFG 1 as Flux dev workflows are.
"""

OIG = "OIG supports SD1.x, SD2 and SDXL UNet models"
COND = {"src": ["110", 0], "tgt": ["111", 0], "neg": ["112", 0]}


def nodes(prompts):
    g = {"100": {"class_type": "PixelsTestTinyDiTLoader", "inputs": {"unet_name": "flux1-dev.safetensors",
                                                                     "family": "flux"}},
         "101": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}}}
    for text_id, nid, key in (("103", "110", "src"), ("104", "111", "tgt"), ("105", "112", "neg")):
        g[text_id] = {"class_type": "PixelsTestConditioning", "inputs": {"text": prompts[key], "tokens": 8,
                                                                         "dim": 4096, "pooled": 768}}
        g[nid] = {"class_type": "FluxGuidance", "inputs": {"conditioning": [text_id, 0], "guidance": 3.5}}
    return g


FAMILIES = [
    dict(id="flux1", title="Flux.1 dev (guidance-distilled)", skip=lambda oi: None, nodes=nodes,
         model=["100", 0], vae=["101", 0], cond=COND, frames=1, size=64, latent=(1, 16, 8, 8), cfg=1.0,
         # ITO's preservation halves the outside drift on the known-answer model, not exact (the fixed Adam step of
         # 0.1 on these flow latents: pixels_core/ito.py)
         ito_check="halves",
         methods=("pixels", "syncsde", "ito"), refused={"oig": OIG}),
]
