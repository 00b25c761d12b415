"""Tiny Qwen-Image stand-ins for the family host tests (random weights, real layout; the harness imports ``MODELS``).

- ``diffusion_models/qwen_image_fp8_e4m3fn.safetensors``: a Qwen-Image MMDiT (ComfyUI's
  ``comfy.ldm.qwen_image.model.QwenImageTransformer2DModel``) in the key layout of the released ``diffusion_models``
  file (no key prefix; ``txt_norm.weight`` is what ComfyUI's detection keys on), 16 latent channels (``img_in`` takes
  2x2 patches: 64 inputs), ``joint_attention_dim=3584`` (Qwen2.5-VL-7B's hidden width), ONE head of width 128 (the
  released model has 24 heads of 128; the rope axes 16+56+56 fix the head width at 128) and one block instead of 60.
  ComfyUI's detection reads only ``in_channels`` and ``num_layers`` and keeps the heads at 24x128, so ``UNETLoader``
  cannot build it; ``PixelsTestQwenImageLoader`` (``test_nodes/qwen.py``) loads it with the same detection and the
  head count read from the weights. Weights are fp16, not fp8 (the name is the released file's, for workflows).
  About 2.3 MB.
- ``vae/qwen_image_vae.safetensors``: the Qwen-Image VAE is a Wan 2.1-layout causal video VAE
  (``comfy.ldm.wan.vae.WanVAE``, 16 channels, 8x space, 4x time); base width 16 instead of 96 (ComfyUI 0.8.0 reads the
  width from ``decoder.head.0.gamma``, so ``VAELoader`` loads it; 0.3.64 fixes it at 96, so there it goes through
  ``PixelsTestWanVAELoader``, which reads the width as 0.8.0 does), ``conv1`` scaled up so the latents are of order
  0.5 (as ``models_wan.py`` does). About 7 MB.
"""
from __future__ import annotations

import pathlib
import sys

from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from models_wan import build_wan_vae  # noqa: E402


def build_qwen_image(path) -> None:
    import torch

    import comfy.ops
    from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel
    from tiny_models import random_state
    with torch.device("meta"):
        net = QwenImageTransformer2DModel(patch_size=2, in_channels=64, out_channels=16, num_layers=1,
                                          attention_head_dim=128, num_attention_heads=1, joint_attention_dim=3584,
                                          image_model="qwen_image", operations=comfy.ops.disable_weight_init)
    save_file(random_state(net, 3101, ""), str(path))


MODELS = {"diffusion_models/qwen_image_fp8_e4m3fn.safetensors": build_qwen_image,
          "vae/qwen_image_vae.safetensors": lambda path: build_wan_vae(path, 3102)}  # Qwen-Image's is a Wan 2.1 VAE
