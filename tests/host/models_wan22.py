"""Tiny Wan 2.2 TI2V 5B stand-ins for the family host tests (random weights, real layout; the harness imports
``MODELS``).

- ``diffusion_models/wan2.2_ti2v_5B_fp16.safetensors``: a Wan 2.2 TI2V ``WanModel`` (``comfy.ldm.wan.model``) in the
  layout of the released file (no key prefix), 48 latent channels in and out (what makes ComfyUI's detection pick
  ``WAN22_T2V``: ``out_dim`` 48, no ``img_emb``), ``dim=128`` (ComfyUI reads ``num_heads`` as ``dim // 128``: one head;
  the released 5B has ``dim=3072``), ``ffn_dim=256``, one block instead of 30, ``text_dim=4096`` (umT5-XXL).
  ``UNETLoader`` detects it as ``WAN22_T2V`` (``model_base.WAN22``, flow, shift 8, ``Wan22`` latent format). About
  2 MB in fp16.
- ``vae/wan2.2_vae.safetensors``: a Wan 2.2 VAE (``comfy.ldm.wan.vae2_2.WanVAE``: 2x2 patchify, 48 channels, 16x space
  and 4x time) with encoder width 16 and decoder width 16 (the released one: 160 and 256, about 1.4 GB). Both ComfyUI
  versions fix those widths at 160/256, so ``VAELoader`` cannot build it; ``PixelsTestWanVAELoader``
  (``test_nodes/qwen.py``) builds it through ComfyUI's own ``comfy.sd.VAE`` with the widths read from the weights.
  ``conv1`` scaled up so the latents are of order 0.5. About 8 MB.
"""
from __future__ import annotations

import pathlib
import sys


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


from models_wan import build_wan_t2v, build_wan_vae  # noqa: E402

MODELS = {"diffusion_models/wan2.2_ti2v_5B_fp16.safetensors": lambda path: build_wan_t2v(path, 2201, channels=48),
          "vae/wan2.2_vae.safetensors": lambda path: build_wan_vae(path, 2202, z_dim=48, wan22=True)}
