"""Qwen-Image (flow MMDiT, true CFG) from the tiny files of ``tests/host/models_qwen.py``.

The transformer goes through ``PixelsTestQwenImageLoader`` (ComfyUI's own detection says ``QwenImage``; only the head
count is read from the weights, which ComfyUI fixes at the released 24) and ``ModelSamplingAuraFlow`` shift 3.1, as
ComfyUI's Qwen-Image template does. The VAE (Wan 2.1 layout, 16 channels, 8x) goes through
``PixelsTestWanVAELoader`` (0.3.64's ``VAELoader`` fixes the width at 96; on 0.8.0 the two loaders agree, see
``test_family_qwen_wan.py``). Its VAEEncode of one image is a 5-D latent (1, 16, 1, h, w): ComfyUI encodes images with
this video VAE as a clip of one frame (``EmptySD3LatentImage``'s 4-D latent is unsqueezed to that when sampling).
ITO's image maths takes that one-frame latent as (1, 16, h, w) and hands the model its own shape back.
Text: ``PixelsTestConditioning`` of Qwen2.5-VL-7B's width (1, 12, 3584), no pooled output, as ``CLIPTextEncode``
with ``qwen_2.5_vl_7b`` gives after dropping the chat template (Qwen2.5-VL-7B cannot be made tiny).
"""

OIG = "OIG supports SD1.x, SD2 and SDXL UNet models"


def nodes(prompts):
    g = {"100": {"class_type": "PixelsTestQwenImageLoader",
                 "inputs": {"unet_name": "qwen_image_fp8_e4m3fn.safetensors"}},
         "101": {"class_type": "PixelsTestWanVAELoader", "inputs": {"vae_name": "qwen_image_vae.safetensors"}},
         "102": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["100", 0], "shift": 3.1}}}
    for nid, key in (("110", "src"), ("111", "tgt"), ("112", "neg")):
        g[nid] = {"class_type": "PixelsTestConditioning", "inputs": {"text": prompts[key], "tokens": 12, "dim": 3584}}
    return g


FAMILIES = [
    dict(id="qwen_image", title="Qwen-Image (flow, true CFG)", skip=lambda oi: None, nodes=nodes,
         model=["102", 0], vae=["101", 0], cond={"src": ["110", 0], "tgt": ["111", 0], "neg": ["112", 0]},
         frames=1, size=64, latent=(1, 16, 1, 8, 8), cfg=2.5,
         methods=("pixels", "syncsde", "ito"), refused={"oig": OIG}),
]
