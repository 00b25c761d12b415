"""Extra stand-in models for the OIG host tests (random weights, real layouts; the harness imports ``MODELS``).

- ``clip_vision/clip-vit-large-patch14.safetensors``: a CLIP ViT-L/14 vision tower with projection (768), in the
  Hugging Face layout that ComfyUI's CLIPVisionLoader reads. The loader picks its config from the layer count
  (24 layers -> ViT-L/14 at 224 px), so this is the smallest vision model it accepts whose embedding matches CLIP-L's
  768-wide text projection: full size, random weights (fp16, about 600 MB).
- ``text_encoders/clip_l.safetensors``: a CLIP-L text encoder *with* ``text_projection.weight`` (SD1.x checkpoints
  carry no text projection, so OIG's SD1.5 workflow loads this with CLIPLoader), random weights (fp16, about 250 MB).
- ``vae_approx/taesd_decoder.safetensors``: ComfyUI's TAESD preview decoder for SD1.x latents (random weights, 2.4 MB).

Weights: normal(0, 0.02) for matrices and embeddings, ones/zeros for layer norms, from a fixed seed.
"""
from __future__ import annotations

import torch
from safetensors.torch import save_file


def _layers(prefix: str, n: int, hidden: int, mlp: int):
    for i in range(n):
        p = f"{prefix}.encoder.layers.{i}"
        for ln in ("layer_norm1", "layer_norm2"):
            yield f"{p}.{ln}.weight", (hidden,)
            yield f"{p}.{ln}.bias", (hidden,)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            yield f"{p}.self_attn.{proj}.weight", (hidden, hidden)
            yield f"{p}.self_attn.{proj}.bias", (hidden,)
        yield f"{p}.mlp.fc1.weight", (mlp, hidden)
        yield f"{p}.mlp.fc1.bias", (mlp,)
        yield f"{p}.mlp.fc2.weight", (hidden, mlp)
        yield f"{p}.mlp.fc2.bias", (hidden,)


def _vision_vit_l14():
    h = 1024
    yield "vision_model.embeddings.class_embedding", (h,)
    yield "vision_model.embeddings.patch_embedding.weight", (h, 3, 14, 14)
    yield "vision_model.embeddings.position_embedding.weight", (257, h)
    yield "vision_model.pre_layrnorm.weight", (h,)
    yield "vision_model.pre_layrnorm.bias", (h,)
    yield from _layers("vision_model", 24, h, 4096)
    yield "vision_model.post_layernorm.weight", (h,)
    yield "vision_model.post_layernorm.bias", (h,)
    yield "visual_projection.weight", (768, h)


def _text_clip_l():
    h = 768
    yield "text_model.embeddings.token_embedding.weight", (49408, h)
    yield "text_model.embeddings.position_embedding.weight", (77, h)
    yield from _layers("text_model", 12, h, 3072)
    yield "text_model.final_layer_norm.weight", (h,)
    yield "text_model.final_layer_norm.bias", (h,)
    yield "text_projection.weight", (h, h)


def _materialise(spec, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in spec:
        if "norm" in name or "layrnorm" in name:
            sd[name] = (torch.ones(shape) if name.endswith("weight") else torch.zeros(shape)).half()
        elif name.endswith("bias"):
            sd[name] = torch.zeros(shape, dtype=torch.float16)
        else:
            sd[name] = (torch.randn(shape, generator=g) * 0.02).half()
    return sd


def build_clip_vision_vit_l14(path) -> None:
    save_file(_materialise(_vision_vit_l14(), seed=6061), str(path))


def build_clip_l_text(path) -> None:
    save_file(_materialise(_text_clip_l(), seed=6062), str(path))


def build_tiny_sd15_checkpoint(path) -> None:
    """Fallback for the OIG host tests when the harness's tiny SD1.5 checkpoint is not there: an SD1.5-layout file
    (320-channel two-level UNet that ComfyUI detects as SD15, TAESD VAE, random CLIP-L text without projection, as
    real SD1.x checkpoints are). Needs ComfyUI importable (it takes the UNet's parameter names from ComfyUI)."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from comfy.taesd.taesd import TAESD

    with torch.device("meta"):
        unet = UNetModel(image_size=32, in_channels=4, model_channels=320, out_channels=4, num_res_blocks=[1, 1],
                         channel_mult=[1, 1], num_heads=8, use_spatial_transformer=True, transformer_depth=[1, 1],
                         transformer_depth_middle=1, transformer_depth_output=[1, 1, 1, 1], context_dim=768,
                         use_linear_in_transformer=False, operations=comfy.ops.disable_weight_init)
        taesd = TAESD()
    g = torch.Generator().manual_seed(6063)
    sd = {}
    for prefix, module in (("model.diffusion_model.", unet), ("first_stage_model.", taesd)):
        for name, v in module.state_dict().items():
            if v.ndim > 1:
                t = torch.randn(v.shape, generator=g) * 0.02
            elif name.endswith("weight") or name == "vae_scale":  # 1-D weights are norm scales
                t = torch.ones(v.shape)
            else:
                t = torch.zeros(v.shape)
            sd[prefix + name] = t.half()
    for name, t in _materialise(_text_clip_l(), seed=6064).items():
        if name.startswith("text_model."):
            sd["cond_stage_model.transformer." + name] = t
    save_file(sd, str(path))


def build_taesd_decoder(path) -> None:
    """``vae_approx/taesd_decoder.safetensors``: ComfyUI's TAESD decoder layout (``comfy.taesd.taesd.Decoder``, the
    keys of madebyollin's ``taesd_decoder`` file: ``1.weight``, ``3.conv.0.weight``, ...) with random weights, for the
    OIG guider's TAESD options. Only the SD1.x decoder: an SDXL model finds no ``taesdxl_decoder`` (the missing-file
    message is tested)."""
    from comfy.taesd.taesd import Decoder

    g = torch.Generator().manual_seed(6065)
    sd = {}
    for name, v in Decoder(latent_channels=4).state_dict().items():
        sd[name] = (torch.randn(v.shape, generator=g) / max(1, v[0].numel()) ** 0.5 if v.ndim > 1
                    else torch.zeros(v.shape)).half()
    save_file(sd, str(path))


MODELS = {
    "vae_approx/taesd_decoder.safetensors": build_taesd_decoder,
    "clip_vision/clip-vit-large-patch14.safetensors": build_clip_vision_vit_l14,
    "text_encoders/clip_l.safetensors": build_clip_l_text,
}
