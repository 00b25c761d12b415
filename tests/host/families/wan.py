"""Wan 2.1 T2V and Wan 2.2 TI2V 5B (flow video DiTs) from the tiny files of ``tests/host/models_wan.py`` and
``tests/host/models_wan22.py``, 5 image frames of 64x64 px.

Both transformers go through ``UNETLoader`` (ComfyUI detects ``WAN21_T2V`` / ``WAN22_T2V``) and ``ModelSamplingSD3``
shift 8, as ComfyUI's Wan templates do. The VAEs go through ``PixelsTestWanVAELoader``: ComfyUI's own ``comfy.sd.VAE``
with the widths read from the weights (0.3.64 fixes the Wan 2.1 width at 96; both versions fix the Wan 2.2 widths at
160/256, about 1.4 GB). Wan 2.1: 16 channels, 8x space, 4x time, 5 frames -> (1, 16, 2, 8, 8). Wan 2.2: 48
channels, 16x space (2x2 patchify before the 8x encoder), 4x time -> (1, 48, 2, 4, 4); with the DiT's 2x2 patch a
Wan 2.2 frame must be a multiple of 32 px.
Text: ``PixelsTestConditioning`` of umT5-XXL's shape (1, 512, 4096): ComfyUI's umT5 tokenizer pads to 512 tokens
(umT5-XXL cannot be made tiny). ITO works on image latents only and says so; OIG is for SD1.x/SD2/SDXL UNets.
"""

ITO_VIDEO = "ITO works on image latents (B, C, H, W)"
OIG = "OIG supports SD1.x, SD2 and SDXL UNet models"
COND = {"src": ["110", 0], "tgt": ["111", 0], "neg": ["112", 0]}


def _nodes(unet, vae):
    def nodes(prompts):
        g = {"100": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
             "101": {"class_type": "PixelsTestWanVAELoader", "inputs": {"vae_name": vae}},
             "102": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["100", 0], "shift": 8.0}}}
        for nid, key in (("110", "src"), ("111", "tgt"), ("112", "neg")):
            g[nid] = {"class_type": "PixelsTestConditioning", "inputs": {"text": prompts[key], "tokens": 512,
                                                                         "dim": 4096}}
        return g
    return nodes


FAMILIES = [
    dict(id="wan21", title="Wan 2.1 T2V (flow, video)", skip=lambda oi: None,
         nodes=_nodes("wan2.1_t2v_tiny.safetensors", "wan2.1_vae_tiny.safetensors"),
         model=["102", 0], vae=["101", 0], cond=COND, frames=5, size=64, latent=(1, 16, 2, 8, 8), cfg=6.0,
         methods=("pixels", "syncsde"), refused={"ito": ITO_VIDEO, "oig": OIG}),
    dict(id="wan22", title="Wan 2.2 TI2V 5B (flow, video, 16x VAE)", skip=lambda oi: None,
         nodes=_nodes("wan2.2_ti2v_5B_fp16.safetensors", "wan2.2_vae.safetensors"),
         model=["102", 0], vae=["101", 0], cond=COND, frames=5, size=64, latent=(1, 48, 2, 4, 4), cfg=5.0,
         methods=("pixels", "syncsde"), refused={"ito": ITO_VIDEO, "oig": OIG}),
]
