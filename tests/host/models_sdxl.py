"""Tiny SD2.x 768-v and SDXL stand-ins for the family host tests (random weights, ComfyUI's real layouts; the harness
imports ``MODELS``).

- ``checkpoints/v2-1_768-ema-pruned.safetensors``: an SD2-layout checkpoint (the released 768-v file's name) holding a
  UNet that ComfyUI's ``CheckpointLoaderSimple`` detects as ``SD20`` (``model_channels=320``, ``context_dim=1024``,
  ``use_linear_in_transformer=True``, 64-wide heads, no ``adm``; one level, one ResBlock, no middle block) and a
  4-channel TAESD VAE under ``first_stage_model.`` (the SD1.x/SD2 latent format). No text encoder: OpenCLIP-H cannot
  be made tiny, the tests use ``PixelsTestConditioning`` (1, 77, 1024) instead; ComfyUI warns "no CLIP/text encoder
  weights in checkpoint" and returns no CLIP. About 43 MB in fp16.

  v-prediction: ComfyUI's ``SD20.model_type`` picks V_PREDICTION only from the std of
  ``output_blocks.11.1.transformer_blocks.0.norm1.bias``, i.e. a UNet with 12 output blocks. Every output block
  starts with a 320-channel ResBlock fed by a 640-channel concatenation, and ``model_channels`` must stay 320 for
  the SD20 match: the smallest such UNet (measured on the meta device, 1 to 6 levels, one transformer) has 68 to 70 M
  parameters, 136 MB in fp16 (68 MB even in fp8), over the size these tests allow. So this file loads as an EPS
  SD20 model, and the specs put ComfyUI's own ``ModelSamplingDiscrete`` node
  (``sampling=v_prediction``) after the loader, which is what users do with v models ComfyUI does not recognise.
- ``diffusion_models/sdxl_tiny_unet.safetensors``: an SDXL-layout UNet (``openaimodel.UNetModel`` with
  ``context_dim=2048``, ``adm_in_channels=2816``, linear transformers, 64-wide heads, no attention on the first level as
  in SDXL) but ``model_channels=64``, two levels (``channel_mult=[1, 2]``), one ResBlock per level, transformer depth 1.
  ComfyUI's detection matches SDXL only on its full config (320 channels, depths [0, 0, 2, 2, 10, 10]), so
  ``UNETLoader`` cannot load this file; the test-only ``PixelsTestSDXLLoader`` (``test_nodes/sdxl.py``) reads its
  architecture with ComfyUI's ``detect_unet_config`` and builds it as ComfyUI's ``SDXL`` family. About 14 MB in fp16.
- ``vae/sdxl_taesd_tiny.safetensors``: a 4-channel TAESD VAE in the standalone layout (``taesd_encoder.*``,
  ``taesd_decoder.*``), which ``VAELoader`` loads as a TAESD VAE (the SDXL model's own ``SDXL`` latent format applies
  its 0.13025 scale). About 5 MB in fp16. Both TAESDs have their last encoder conv scaled up (see ``_vae``).

Weights: ``tiny_models.random_state`` (normal(0, 0.02) matrices, ones for 1-D weights, zeros for biases, fixed seeds).
"""
from __future__ import annotations

import pathlib
import sys

from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

SD2_UNET = dict(image_size=32, in_channels=4, model_channels=320, out_channels=4, num_res_blocks=[1],
                channel_mult=[1], num_heads=-1, num_head_channels=64, use_spatial_transformer=True,
                transformer_depth=[1], transformer_depth_middle=-2, transformer_depth_output=[1, 1],
                context_dim=1024, use_linear_in_transformer=True)

SDXL_UNET = dict(image_size=32, in_channels=4, model_channels=64, out_channels=4, num_res_blocks=[1, 1],
                 channel_mult=[1, 2], num_heads=-1, num_head_channels=64, use_spatial_transformer=True,
                 transformer_depth=[0, 1], transformer_depth_middle=1, transformer_depth_output=[0, 0, 1, 1],
                 context_dim=2048, use_linear_in_transformer=True, adm_in_channels=2816, num_classes="sequential")


def _unet(cfg):
    import torch

    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    with torch.device("meta"):
        return UNetModel(operations=comfy.ops.disable_weight_init, **cfg)


def _vae(prefix: str, seed: int) -> dict:
    """A 4-channel TAESD with its last encoder conv scaled up: normal(0, 0.02) through the whole encoder leaves
    latents of about 6e-4; times 5000 they have a std of about 3, the order of a real SD VAE's unscaled latents, so
    after the latent format's scale (0.18215 SD1.x/SD2, 0.13025 SDXL) they are of order 0.5 in model space."""
    from tiny_models import _taesd
    sd = _taesd(prefix, 4, seed)
    key = prefix + "taesd_encoder.14.weight"
    sd[key] = sd[key] * 5000.0
    return sd


def build_sd2_768v(path) -> None:
    from tiny_models import random_state
    sd = random_state(_unet(SD2_UNET), 2001, "model.diffusion_model.")
    sd.update(_vae("first_stage_model.", 2002))
    save_file(sd, str(path))


def build_sdxl_unet(path) -> None:
    from tiny_models import random_state
    save_file(random_state(_unet(SDXL_UNET), 2201, ""), str(path))


def build_sdxl_vae(path) -> None:
    save_file(_vae("", 2202), str(path))


MODELS = {
    "checkpoints/v2-1_768-ema-pruned.safetensors": build_sd2_768v,
    "diffusion_models/sdxl_tiny_unet.safetensors": build_sdxl_unet,
    "vae/sdxl_taesd_tiny.safetensors": build_sdxl_vae,
}
