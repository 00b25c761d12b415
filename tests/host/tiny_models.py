"""Tiny random-weight checkpoints in real layouts, so the host tests exercise ComfyUI's own loaders.

Run as a script with ComfyUI importable (the host conftest does this in a subprocess):

    python tests/host/tiny_models.py MODELS_DIR

and it writes, under MODELS_DIR, each file not already there:

- ``checkpoints/v1-5-pruned-emaonly.safetensors``: an SD1.x checkpoint ComfyUI detects as SD15 (UNet with
  ``model_channels=320`` and ``context_dim=768``, one level, no middle block), the full CLIP-L text encoder
  (CLIP-L cannot shrink and still load) and a TAESD VAE with 4 latent channels. About 290 MB in fp16.
- ``checkpoints/sd3_medium_incl_clips.safetensors``: an SD3-layout MMDiT of depth 2 (loads as a flow model with
  SD3's shifted schedule), CLIP-L as the only text encoder, and a 16-channel TAESD VAE. About 255 MB in fp16.

plus every ``MODELS = {"relative/path": builder(path)}`` entry of ``tests/host/models_*.py``.
Weights are normal(0, 0.02) for matrices, ones for 1-D weights (norm scales), zeros for biases, from fixed seeds,
so two builds are identical. The parameter names come from ComfyUI's own modules built on the meta device.
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys

import torch
from safetensors.torch import save_file

HERE = pathlib.Path(__file__).resolve().parent


def random_state(module: torch.nn.Module, seed: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """Deterministic random fp16 weights for every entry of ``module.state_dict()`` (built on the meta device)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, v in module.state_dict().items():
        if v.ndim > 1:
            t = torch.randn(v.shape, generator=g) * 0.02
        elif name.endswith("weight") or name.endswith("scale"):
            t = torch.ones(v.shape)
        else:
            t = torch.zeros(v.shape)
        out[prefix + name] = t.half()
    return out


def _clip_l(prefix: str, seed: int) -> dict[str, torch.Tensor]:
    import comfy.sd1_clip
    with torch.device("meta"):
        clip = comfy.sd1_clip.SDClipModel(device="meta")
    sd = random_state(clip, seed)
    sd.pop("logit_scale", None)
    return {prefix + k: v for k, v in sd.items()}


def _taesd(prefix: str, channels: int, seed: int) -> dict[str, torch.Tensor]:
    from comfy.taesd.taesd import TAESD
    with torch.device("meta"):
        taesd = TAESD(latent_channels=channels)
    return random_state(taesd, seed, prefix)


def sd15_unet(in_channels: int = 4) -> torch.nn.Module:
    """The tiny SD1.x UNet on the meta device (``in_channels`` 9: the SD1.5 inpainting layout)."""
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    with torch.device("meta"):
        return UNetModel(image_size=32, in_channels=in_channels, model_channels=320, out_channels=4,
                         num_res_blocks=[1], channel_mult=[1], num_heads=8, use_spatial_transformer=True,
                         transformer_depth=[1], transformer_depth_middle=-2, transformer_depth_output=[1, 1],
                         context_dim=768, use_linear_in_transformer=False, operations=comfy.ops.disable_weight_init)


def build_sd15(path) -> None:
    sd = random_state(sd15_unet(), 1501, "model.diffusion_model.")
    sd.update(_clip_l("cond_stage_model.", 1502))
    sd.update(_taesd("first_stage_model.", 4, 1503))
    save_file(sd, str(path))


def build_sd3(path) -> None:
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT
    with torch.device("meta"):
        mmdit = MMDiT(patch_size=2, in_channels=16, out_channels=16, depth=2, adm_in_channels=2048,
                      context_embedder_config={"target": "torch.nn.Linear",
                                               "params": {"in_features": 4096, "out_features": 128}},
                      num_patches=1024, pos_embed_max_size=32, operations=comfy.ops.disable_weight_init)
    sd = random_state(mmdit, 3001, "model.diffusion_model.")
    sd.update(_clip_l("text_encoders.clip_l.", 3002))
    sd.update(_taesd("first_stage_model.", 16, 3003))
    save_file(sd, str(path))


MODELS = {
    "checkpoints/v1-5-pruned-emaonly.safetensors": build_sd15,
    "checkpoints/sd3_medium_incl_clips.safetensors": build_sd3,
}


def all_models() -> dict:
    """This file's models plus every ``MODELS`` dict of ``tests/host/models_*.py``."""
    found = dict(MODELS)
    for f in sorted(HERE.glob("models_*.py")):
        spec = importlib.util.spec_from_file_location(f"pixels_host_{f.stem}", f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        found.update(getattr(mod, "MODELS", {}))
    return found


def build_all(models_dir) -> list[pathlib.Path]:
    """Write every missing model under ``models_dir`` (atomically: a killed build leaves no half file)."""
    import comfy.cli_args
    comfy.cli_args.args.cpu = True  # before comfy.model_management is imported: there is no GPU here
    root = pathlib.Path(models_dir)
    written = []
    for rel, builder in all_models().items():
        dst = root / rel
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        builder(tmp)
        tmp.replace(dst)
        written.append(dst)
    return written


if __name__ == "__main__":
    for p in build_all(sys.argv[1]):
        print("built", p)
