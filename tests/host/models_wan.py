"""Tiny Wan 2.1 text-to-video stand-ins for the video host tests (random weights, real layout; the harness imports
``MODELS``).

- ``diffusion_models/wan2.1_t2v_tiny.safetensors``: a Wan 2.1 T2V ``WanModel`` (ComfyUI's ``comfy.ldm.wan.model``) in
  the layout of the released ``diffusion_models`` files (no key prefix), ``dim=128`` (ComfyUI reads ``num_heads`` as
  ``dim // 128``, so one head of 128), ``ffn_dim=256``, one block, ``text_dim=4096`` (umT5-XXL's width), 16 latent
  channels in and out. ``UNETLoader`` detects it as ``WAN21_T2V`` (flow model, shift 8, ``Wan21`` latent format).
  About 1.8 MB in fp16.
- ``vae/wan2.1_vae_tiny.safetensors``: a Wan 2.1 causal video VAE (``comfy.ldm.wan.vae.WanVAE``) with base width
  ``dim=16`` (the released one has 96), 16 latent channels, 8x space and 4x time compression (``1 + 4k`` image frames
  -> ``1 + k`` latent frames). ComfyUI 0.8.0 reads the width from ``decoder.head.0.gamma``; 0.3.64 fixes it at 96,
  which would be about 254 MB in fp16, so there this VAE does not load (the video tests skip). Its 1x1 ``conv1``
  (the latent's mean and log-variance) is scaled up so the latents are of order 0.5. About 7 MB in fp16.
"""
from __future__ import annotations

import pathlib
import sys

from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def build_wan_t2v(path, seed: int, channels: int = 16) -> None:
    """A one-block ``WanModel`` T2V (dim 128: one head) with ``channels`` latent channels in and out."""
    import torch

    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    from tiny_models import random_state
    with torch.device("meta"):
        net = WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=channels, dim=128, ffn_dim=256, freq_dim=256,
                       text_dim=4096, out_dim=channels, num_heads=1, num_layers=1, image_model="wan2.1",
                       operations=comfy.ops.disable_weight_init)
    save_file(random_state(net, seed, ""), str(path))


def build_wan_vae(path, seed: int, z_dim: int = 16, wan22: bool = False) -> None:
    """A Wan causal video VAE of base width 16: Wan 2.1's (``comfy.ldm.wan.vae``, also Qwen-Image's) or Wan 2.2's
    (``vae2_2``, 16x space)."""
    import torch

    from tiny_models import random_state
    if wan22:
        from comfy.ldm.wan.vae2_2 import WanVAE
        widths = {"dim": 16, "dec_dim": 16}
    else:
        from comfy.ldm.wan.vae import WanVAE
        widths = {"dim": 16}
    with torch.device("meta"):
        vae = WanVAE(**widths, z_dim=z_dim, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                     temperal_downsample=[False, True, True], dropout=0.0)
    sd = random_state(vae, seed, "")
    # normal(0, 0.02) through the whole encoder leaves latents of about 5e-4; scaling the last 1x1 conv (the one
    # that makes the mean and log-variance) brings them to about 0.5, the order of a real VAE's, so the latent
    # format's shift and scale do not swamp the source's and exemplars' differences
    sd["conv1.weight"] = sd["conv1.weight"] * 1000.0
    save_file(sd, str(path))


MODELS = {"diffusion_models/wan2.1_t2v_tiny.safetensors": lambda path: build_wan_t2v(path, 2101),
          "vae/wan2.1_vae_tiny.safetensors": lambda path: build_wan_vae(path, 2102)}
