"""Tiny inpainting checkpoints in their real layouts (random weights; the harness imports ``MODELS``), for the PIXELS
inpainting-checkpoint host tests (issue 13).

- ``diffusion_models/sd15_inpainting_tiny_unet.safetensors``: the tiny SD1.x UNet of ``tiny_models.py`` with the
  inpainting input of 9 channels (4 latent + 1 mask + 4 masked-image latent). ComfyUI's ``UNETLoader`` detects it as
  SD15, and its ``inpaint_model()`` (``in_channels > 4``) gives the model the ``concat_keys`` ``mask``,
  ``masked_image``. About 37 MB in fp16; the tests take CLIP-L and the VAE from ``v1-5-pruned-emaonly``.
- ``diffusion_models/sdxl_inpainting_tiny_unet.safetensors``: the tiny SDXL-layout UNet of ``models_sdxl.py`` with 9
  input channels, loaded as ComfyUI's SDXL family by ``PixelsTestSDXLLoader`` (which reads ``in_channels`` with
  ComfyUI's ``detect_unet_config``; ``supported_models.SDXL.get_model`` then calls ``set_inpaint``). About 14 MB.
- ``diffusion_models/flux1-fill-dev.safetensors``: the tiny Flux.1 dev layout of ``models_flux.py`` with the Fill
  input: ``img_in`` 384 -> 128 (16 latent + 16 masked-image + 64 mask channels, in 2x2 patches), the released Flux.1
  Fill dev's layout at width 128. Loaded by ``PixelsTestTinyDiTLoader`` (family ``flux``); ComfyUI's
  ``model_base.Flux.concat_cond`` sees ``num_channels`` 96 > 2 x 16 and builds [masked image, 8x8-packed mask].
  About 3.3 MB.
"""
from __future__ import annotations

import pathlib
import sys

from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def build_sd15_inpaint(path) -> None:
    from tiny_models import random_state, sd15_unet
    save_file(random_state(sd15_unet(in_channels=9), 1511, ""), str(path))


def build_sdxl_inpaint(path) -> None:
    from models_sdxl import SDXL_UNET, _unet
    from tiny_models import random_state
    save_file(random_state(_unet({**SDXL_UNET, "in_channels": 9}), 2211, ""), str(path))


def build_flux_fill(path) -> None:
    from models_flux import build_flux1
    build_flux1(path, in_channels=96, seed=1111)


MODELS = {
    "diffusion_models/sd15_inpainting_tiny_unet.safetensors": build_sd15_inpaint,
    "diffusion_models/sdxl_inpainting_tiny_unet.safetensors": build_sdxl_inpaint,
    "diffusion_models/flux1-fill-dev.safetensors": build_flux_fill,
}
