"""Tiny random-weight Flux.1 dev, Z-Image turbo and Flux.2 dev stand-ins in the layout of the released files, for the
family host tests (the harness imports ``MODELS``; the files get the released names so example workflows can name
them).

ComfyUI fixes these families' widths instead of reading them from the weights: Flux.1 ``num_heads=24`` (0.3.64 also
``hidden_size=3072``), Flux.2 ``num_heads=48``, Z-Image only when ``dim == 3840``. Even at depth 1 those widths
are 0.7 GB and more, so the diffusion models here are the released layout at width 128 (Z-Image 256) with attention
heads of 128 (the released models' head width; the RoPE axes are the released ones, summing to 128), loaded by the
test-only ``PixelsTestTinyDiTLoader`` (``test_nodes/flux.py``), which runs ComfyUI's own detection on the file and
changes only what ComfyUI fixes (the head count; the width where ComfyUI does not read it). The VAEs load with
ComfyUI's own ``VAELoader``.

- ``diffusion_models/flux1-dev.safetensors``: Flux.1 dev layout (``comfy.ldm.flux.model.Flux``): ``img_in`` 64 -> 128
  (16 latent channels in 2x2 patches), ``txt_in`` 4096 -> 128 (T5-XXL's width), ``vector_in`` 768 (CLIP-L's pooled
  width), ``guidance_in`` (guidance-distilled: detected as ``Flux``, not ``FluxSchnell``), one double and one single
  block. About 3.3 MB in fp16.
- ``vae/ae.safetensors``: the Flux.1 / Z-Image VAE as a 16-channel TAESD (``taesd_encoder.*`` / ``taesd_decoder.*``,
  the layout of ComfyUI's ``taef1``): ComfyUI's VAELoader reads the latent channels from ``taesd_decoder.1.weight``
  and uses its 8x ratio. The released ``ae.safetensors`` is an AutoencoderKL whose width ComfyUI fixes at
  ``ch=128`` (about 160 MB in fp16), so it cannot be made small. Conv weights are He-scaled (std sqrt(2/fan_in))
  and the last encoder conv scaled so latents have std about 1 and two different images' latents differ by about
  0.25 on average instead of vanishing. About 4.9 MB.
- ``diffusion_models/z_image_turbo_bf16.safetensors``: Z-Image layout (``comfy.ldm.lumina.model.NextDiT`` with the
  Z-Image modulation): ``dim=256`` (two heads of 128; the modulation needs ``dim >= 256``), one main layer, the two
  noise and two context refiner layers, ``cap_embedder`` 2560 -> 256 (Qwen3-4B's hidden width, what ComfyUI's
  Z-Image text encoder gives), ``cap_pad_token``. About 12 MB.
- ``diffusion_models/flux2_dev_fp8mixed.safetensors``: Flux.2 dev layout (global modulation, no biases, SiLU-gated
  MLP, ``img_in`` 128 -> 128 on the 128-channel packed latent with patch size 1, ``txt_in`` 15360 -> 128 (Mistral
  Small 3's three stacked hidden layers of 5120, what ComfyUI's Flux.2 text encoder gives), ``guidance_in``, no
  ``vector_in``), one double and one single block. About 6 MB in fp16 (the weights are fp16, not fp8: only the name
  is the released one).
- ``vae/flux2-vae.safetensors``: the Flux.2 VAE in its released layout (AutoencoderKL with ``quant_conv`` /
  ``post_quant_conv``, 32 latent channels at 8x, and the ``bn`` latent batch-norm statistics, which make ComfyUI pack
  2x2 into 128 channels at 16x). ComfyUI fixes its width at ``ch=128`` too, so it is the released size in parameters
  (84 M); the weights are stored in float8 (e4m3) to halve the file, about 84 MB. VAELoader loads it as fp32.

The Flux.2 and Z-Image layouts are written out here (not read from ComfyUI's modules) so the files build the same
under a ComfyUI that does not have those families (0.3.64); ``PixelsTestTinyDiTLoader`` refuses a file whose keys or
shapes differ from what ComfyUI's module for the family expects.
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys

from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

HIDDEN = 128  # one attention head of 128, the released models' head width


def random_layout(layout, seed: int, prefix: str = ""):
    """``tiny_models.random_state`` for a list of ``(name, shape)``: normal(0, 0.02) matrices, ones for 1-D weights
    and scales, zeros for biases, fp16, from a fixed seed."""
    import torch
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in layout:
        if len(shape) > 1:
            t = torch.randn(shape, generator=g) * 0.02
        elif name.endswith("weight") or name.endswith("scale"):
            t = torch.ones(shape)
        else:
            t = torch.zeros(shape)
        out[prefix + name] = t.half()
    return out


def he_convs(sd: dict, seed: int) -> dict:
    """Redraw every 4-D (conv) weight with std sqrt(2 / fan_in), so activations keep their size through a deep
    random VAE (with std 0.02 the latents of any two images are equal to 1e-6)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    for k in sorted(sd):
        v = sd[k]
        if v.ndim == 4:
            fan_in = v.shape[1] * v.shape[2] * v.shape[3]
            sd[k] = (torch.randn(v.shape, generator=g) * (2.0 / fan_in) ** 0.5).to(v.dtype)
    return sd


def _flux2_double_block(h: int, mlp: int):
    """Keys of one Flux.2 double block (``comfy.ldm.flux.layers.DoubleStreamBlock`` without biases or modulation)."""
    out = []
    for s in ("img", "txt"):
        b = f"double_blocks.0.{s}"
        out += [(f"{b}_attn.qkv.weight", (3 * h, h)), (f"{b}_attn.norm.query_norm.scale", (h,)),
                (f"{b}_attn.norm.key_norm.scale", (h,)), (f"{b}_attn.proj.weight", (h, h)),
                (f"{b}_mlp.0.weight", (2 * mlp, h)), (f"{b}_mlp.2.weight", (h, mlp))]
    return out


# Flux.2 dev at hidden 128: mlp_ratio 3 with a SiLU-gated MLP (in 2 x 384, out 384), no biases, global modulation.
# The order is the one of ``comfy.ldm.flux.model.Flux(image_model="flux2", ...).state_dict()`` in ComfyUI 0.8.0.
FLUX2_CONTEXT = 15360


def flux2_layout(h: int = HIDDEN, ctx: int = FLUX2_CONTEXT):
    mlp = 3 * h
    out = [("img_in.weight", (h, 128)), ("time_in.in_layer.weight", (h, 256)), ("time_in.out_layer.weight", (h, h)),
           ("guidance_in.in_layer.weight", (h, 256)), ("guidance_in.out_layer.weight", (h, h)),
           ("txt_in.weight", (h, ctx))]
    out += _flux2_double_block(h, mlp)
    out += [("single_blocks.0.linear1.weight", (3 * h + 2 * mlp, h)), ("single_blocks.0.linear2.weight", (h, h + mlp)),
            ("single_blocks.0.norm.query_norm.scale", (h,)), ("single_blocks.0.norm.key_norm.scale", (h,)),
            ("final_layer.linear.weight", (128, h)), ("final_layer.adaLN_modulation.1.weight", (2 * h, h)),
            ("double_stream_modulation_img.lin.weight", (6 * h, h)),
            ("double_stream_modulation_txt.lin.weight", (6 * h, h)),
            ("single_stream_modulation.lin.weight", (3 * h, h))]
    return out


ZIMAGE_CAP = 2560  # Qwen3-4B's hidden width


ZIMAGE_DIM = 256  # Z-Image's modulation takes min(dim, 256) inputs from a 256-wide time embedding: dim >= 256
HEAD = 128


def _zimage_block(prefix: str, d: int, ffn: int, modulation: bool):
    out = [(f"{prefix}.attention.qkv.weight", (3 * d, d)), (f"{prefix}.attention.out.weight", (d, d)),
           (f"{prefix}.attention.q_norm.weight", (HEAD,)), (f"{prefix}.attention.k_norm.weight", (HEAD,)),
           (f"{prefix}.feed_forward.w1.weight", (ffn, d)), (f"{prefix}.feed_forward.w2.weight", (d, ffn)),
           (f"{prefix}.feed_forward.w3.weight", (ffn, d)),
           (f"{prefix}.attention_norm1.weight", (d,)), (f"{prefix}.ffn_norm1.weight", (d,)),
           (f"{prefix}.attention_norm2.weight", (d,)), (f"{prefix}.ffn_norm2.weight", (d,))]
    if modulation:
        out += [(f"{prefix}.adaLN_modulation.0.weight", (4 * d, 256)), (f"{prefix}.adaLN_modulation.0.bias", (4 * d,))]
    return out


def zimage_layout(cap: int = ZIMAGE_CAP):
    """``comfy.ldm.lumina.model.NextDiT`` with ComfyUI's Z-Image settings at ``dim=256`` (two heads of 128), one
    layer, in the order of its ``state_dict()`` in ComfyUI 0.8.0."""
    d, ffn = ZIMAGE_DIM, 768  # ffn: int(8/3 * int(2 * 4d / 3)) rounded up to a multiple of 256
    out = [("x_pad_token", (1, d)), ("cap_pad_token", (1, d)), ("x_embedder.weight", (d, 64)),
           ("x_embedder.bias", (d,))]
    for i in range(2):
        out += _zimage_block(f"noise_refiner.{i}", d, ffn, True)
    for i in range(2):
        out += _zimage_block(f"context_refiner.{i}", d, ffn, False)
    out += [("t_embedder.mlp.0.weight", (d, 256)), ("t_embedder.mlp.0.bias", (d,)),
            ("t_embedder.mlp.2.weight", (256, d)), ("t_embedder.mlp.2.bias", (256,)),
            ("cap_embedder.0.weight", (cap,)), ("cap_embedder.1.weight", (d, cap)), ("cap_embedder.1.bias", (d,))]
    out += _zimage_block("layers.0", d, ffn, True)
    out += [("final_layer.linear.weight", (64, d)), ("final_layer.linear.bias", (64,)),
            ("final_layer.adaLN_modulation.1.weight", (d, 256)), ("final_layer.adaLN_modulation.1.bias", (d,))]
    return out


def build_flux1(path, in_channels: int = 16, seed: int = 1101) -> None:
    """Flux.1 dev; ``in_channels`` 96 (latent + masked image + 64 mask channels): the Flux.1 Fill layout."""
    import torch

    import comfy.ops
    from comfy.ldm.flux.model import Flux, FluxParams
    kw = dict(in_channels=in_channels, out_channels=16, vec_in_dim=768, context_in_dim=4096, hidden_size=HIDDEN, mlp_ratio=4.0,
              num_heads=1, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56], theta=10000, patch_size=2,
              qkv_bias=True, guidance_embed=True, txt_ids_dims=[])
    fields = {f.name for f in dataclasses.fields(FluxParams)}  # 0.3.64's FluxParams has no txt_ids_dims
    with torch.device("meta"):
        net = Flux(operations=comfy.ops.disable_weight_init, **{k: v for k, v in kw.items() if k in fields})
    from tiny_models import random_state
    save_file(random_state(net, seed, ""), str(path))


def build_flux_ae(path) -> None:
    from tiny_models import _taesd
    sd = he_convs(_taesd("", 16, 1102), 1103)
    # He scaling keeps the activations' size, which leaves latents of std about 30; the last conv (the latent)
    # is scaled down to std about 1, the order of the released VAE's latents
    sd["taesd_encoder.14.weight"] = (sd["taesd_encoder.14.weight"].float() / 30.0).half()
    save_file(sd, str(path))


def build_zimage(path) -> None:
    save_file(random_layout(zimage_layout(), 1201), str(path))


def build_flux2(path) -> None:
    save_file(random_layout(flux2_layout(), 1301), str(path))


def build_flux2_vae(path) -> None:
    import torch

    from comfy.ldm.modules.diffusionmodules.model import Decoder, Encoder
    from tiny_models import random_state
    dd = {"double_z": True, "z_channels": 32, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
          "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    with torch.device("meta"):
        enc, dec = Encoder(**dd), Decoder(**dd)
    sd = random_state(enc, 1302, "encoder.")
    sd.update(random_state(dec, 1303, "decoder."))
    g = torch.Generator().manual_seed(1304)
    sd["quant_conv.weight"] = (torch.randn((64, 64, 1, 1), generator=g) * 0.125).half()
    sd["quant_conv.bias"] = torch.zeros(64).half()
    sd["post_quant_conv.weight"] = (torch.randn((32, 32, 1, 1), generator=g) * 0.18).half()
    sd["post_quant_conv.bias"] = torch.zeros(32).half()
    sd = he_convs(sd, 1305)
    # the latent batch-norm statistics (over the 2x2-packed 128 channels): their presence is what ComfyUI detects
    sd["bn.running_mean"] = torch.zeros(128)
    sd["bn.running_var"] = torch.ones(128)
    sd["bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    out = {k: (v.to(torch.float8_e4m3fn) if v.is_floating_point() and v.ndim >= 1 and not k.startswith("bn.") else v)
           for k, v in sd.items()}
    save_file(out, str(path))


MODELS = {
    "diffusion_models/flux1-dev.safetensors": build_flux1,
    "vae/ae.safetensors": build_flux_ae,
    "diffusion_models/z_image_turbo_bf16.safetensors": build_zimage,
    "diffusion_models/flux2_dev_fp8mixed.safetensors": build_flux2,
    "vae/flux2-vae.safetensors": build_flux2_vae,
}
