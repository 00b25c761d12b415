"""Extra stand-in model for the ITO host tests (random weights, real layout; the harness imports ``MODELS``).

- ``controlnet/tiny_sd15_controlnet.safetensors``: an SD1.x ControlNet in the original (``control_model.*``) layout whose
  UNet half matches the tiny SD1.5 checkpoint of ``tiny_models.py`` (one level, 320 channels, CLIP-L context), with a
  3-channel hint. ComfyUI's ControlNetLoader detects and loads it like a real ControlNet 1.x ``.pth``/``.safetensors``,
  so layout-conditioned ITO runs through ControlNetApplyAdvanced as a user's would (about 60 MB in fp16).
"""
from __future__ import annotations

import pathlib
import sys

from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def build_controlnet(path) -> None:
    import torch

    import comfy.ops
    from comfy.cldm.cldm import ControlNet
    from tiny_models import random_state
    with torch.device("meta"):
        net = ControlNet(image_size=32, in_channels=4, hint_channels=3, model_channels=320, num_res_blocks=[1],
                         channel_mult=[1], num_heads=8, use_spatial_transformer=True, transformer_depth=[1],
                         transformer_depth_middle=-2, transformer_depth_output=[1, 1], context_dim=768,
                         use_linear_in_transformer=False, operations=comfy.ops.disable_weight_init)
    save_file(random_state(net, 1511, "control_model."), str(path))


MODELS = {"controlnet/tiny_sd15_controlnet.safetensors": build_controlnet}
