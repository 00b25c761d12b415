"""Benchmark (not a test): OIG guided step vs a plain CFG step on the same model, time and peak memory.

    COMFYUI_PATH=/work/comfyui PYTHONPATH=/work/shims python benchmarks/bench_oig.py [--size 512] [--div 4]

The models are ComfyUI's own SD1.5 architectures with random weights, every width divided by ``--div`` (UNet
``model_channels`` 320/div and VAE decoder ``ch`` 128/div, both rounded up to multiples of 32 for GroupNorm; CLIP
ViT-L/14 hidden 1024/div with all 24 layers, patch 14 at 224 px): the three parts keep roughly the proportions of SD1.5 + ViT-L at the chosen image size while a CPU can
run them. ``--div 1`` is the real size (use a GPU). Each configuration runs ``--steps`` steps of
``pixels_core.oig.sample_oig``; time per step = run time / steps (the OIG runs include their source pass):

- plain: ``clip_weight = struct_weight = 0``: one batched CFG call (cond + uncond) and a DDIM step, no grad;
- OIG (authors): source pass + CFG call (positive row without autograd, negative row recorded, as the node runs the
  authors' negative-branch gradient) + full-resolution VAE decode + CLIP + backward;
- OIG (cheaper decode): the same, decoding the predicted x0 shrunk to CLIP's 224 px (latent 28);
- OIG (TAESD): the authors' settings with ComfyUI's TAESD preview decoder (``comfy.taesd.taesd`` layout, 64 channels,
  every width divided by ``--div`` as the others: 16 at the default 4) instead of the VAE decoder, at full resolution
  and (TAESD, CLIP res) at 224 px: the node's ``clip_decode`` TAESD options.

Timing is best-of-``--repeats``, interleaved. Peak memory is measured once per configuration in a fresh subprocess
(on the CPU: resident size sampled every 2 ms, minus the size before the run, with glibc's ``MALLOC_MMAP_THRESHOLD_``
fixed at 64 KiB so that freed tensors leave the resident set; ``torch.cuda.max_memory_allocated`` on a GPU).
FLOPs per step are also counted (``torch.utils.flop_counter``, meta device) for the scaled and the real-size models.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
COMFY = os.environ.get("COMFYUI_PATH", "/work/comfyui")
sys.path.insert(0, COMFY)

import torch  # noqa: E402

CONFIGS = ("plain", "oig", "oig_cheap", "oig_taesd", "oig_taesd_cheap")
TAESD_TARGET = 2.5  # issue 13: the TAESD option's step at most 2.5x a plain CFG step


def widths(div: int) -> tuple[int, int]:
    """UNet model_channels and VAE ch for ``div``, rounded to multiples of 32 (GroupNorm(32) everywhere)."""
    return max(32, math.ceil(320 / div / 32) * 32), max(32, math.ceil(128 / div / 32) * 32)


def taesd_decoder(width: int = 64, latent_channels: int = 4):
    """ComfyUI's TAESD decoder layout (``comfy.taesd.taesd.Decoder``) with ``width`` channels (64 = ComfyUI's own)."""
    import torch.nn as nn
    from comfy.taesd.taesd import Block, Clamp, conv
    layers = [Clamp(), conv(latent_channels, width), nn.ReLU()]
    for _ in range(3):
        layers += [Block(width, width), Block(width, width), Block(width, width), nn.Upsample(scale_factor=2),
                   conv(width, width, bias=False)]
    return nn.Sequential(*layers, Block(width, width), conv(width, 3))


def taesd_decode(decoder, z):
    """``TAESD.decode`` (vae_shift 0, vae_scale 1) to [0, 1], as the node's TAESD options decode the model latent."""
    return (decoder(z).sub(0.5).mul(2).float() + 1) / 2


def use_sdpa():
    """PyTorch SDPA attention in the UNet and the VAE (ComfyUI's CPU default, sub-quadratic attention, asks the
    device for free memory, which the meta device used for FLOP counting cannot answer). Benchmark process only."""
    import comfy.ldm.modules.attention as attn
    import comfy.ldm.modules.diffusionmodules.model as vae_model
    attn.optimized_attention = attn.attention_pytorch
    vae_model.vae_attention = lambda: vae_model.pytorch_attention


def build(size: int, div: int, device, init: bool = True):
    from comfy.cli_args import args
    args.cpu = device.type in ("cpu", "meta")
    import comfy.ops
    ops = comfy.ops.disable_weight_init
    ch, vch = widths(div)
    use_sdpa()
    if not init:
        with torch.device("meta"):
            return _modules(div, ops, ch, vch)
    parts = _modules(div, ops, ch, vch)
    g = torch.Generator().manual_seed(0)
    for m in parts:
        for name, p in m.named_parameters():
            with torch.no_grad():
                if p.ndim > 1:
                    fan_in = p[0].numel()
                    p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
                else:
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
            p.requires_grad_(False)
        m.to(device).eval()
    return parts


def _modules(div, ops, ch, vch):
    from comfy.clip_model import CLIPVisionModelProjection
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    unet = UNetModel(image_size=32, in_channels=4, model_channels=ch, out_channels=4, num_res_blocks=[2] * 4,
                     channel_mult=[1, 2, 4, 4], num_heads=8, use_spatial_transformer=True,
                     transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
                     transformer_depth_output=[0, 0, 0] + [1] * 9, context_dim=768,
                     use_linear_in_transformer=False, operations=ops)
    vae = AutoencoderKL(ddconfig={"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3,
                                  "out_ch": 3, "ch": vch, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2,
                                  "attn_resolutions": [], "dropout": 0.0}, embed_dim=4)
    clip = CLIPVisionModelProjection({"hidden_size": 1024 // div, "intermediate_size": 4096 // div,
                                      "num_attention_heads": max(1, 16 // div), "num_hidden_layers": 24,
                                      "image_size": 224, "patch_size": 14, "num_channels": 3,
                                      "projection_dim": 768, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
                                      "model_type": "clip_vision_model"},
                                     None, None, ops)
    taesd = taesd_decoder(max(8, 64 // div))
    for m in (unet, vae, clip, taesd):
        m.requires_grad_(False)
    return unet, vae, clip, taesd


def flops(size: int, div: int) -> dict:
    """FLOPs per step (``torch.utils.flop_counter`` on the meta device, no weights needed) for the three configurations,
    composed from their parts: plain = CFG forward (batch 2); OIG = source forward (batch 1) + positive CFG row
    forward (no autograd) + negative CFG row forward and backward to the latent + VAE decode forward and backward
    + CLIP forward and backward."""
    from torch.utils.flop_counter import FlopCounterMode
    from pixels_core.oig import clip_preprocess
    unet, vae, clip, taesd = build(size, div, torch.device("meta"), init=False)
    lat = size // 8

    def count(fn):
        with FlopCounterMode(display=False) as fc:
            fn()
        return fc.get_total_flops() / 1e12

    def unet_run(bs, grad):
        x = torch.randn(bs, 4, lat, lat, device="meta", requires_grad=grad)
        out = unet(x, torch.ones(bs, device="meta"), context=torch.randn(bs, 77, 768, device="meta"))
        if grad:
            out.sum().backward()

    def decode_clip(latent, part):
        z = torch.randn(1, 4, latent, latent, device="meta", requires_grad=True)
        img = taesd_decode(taesd, z) if part == "taesd" else vae.decode(z)
        if part == "clip":
            img = img.detach().requires_grad_(True)
            with FlopCounterMode(display=False) as fc:
                clip_embed(clip, clip_preprocess(img, 224)).sum().backward()
            return fc.get_total_flops() / 1e12
        img.sum().backward()

    t = {"unet_b1": count(lambda: unet_run(1, False)), "unet_b2": count(lambda: unet_run(2, False)),
         "unet_b1_grad": count(lambda: unet_run(1, True)), "vae_full": count(lambda: decode_clip(lat, "vae")),
         "vae_224": count(lambda: decode_clip(min(lat, 28), "vae")), "clip": decode_clip(min(lat, 28), "clip"),
         "taesd_full": count(lambda: decode_clip(lat, "taesd")),
         "taesd_224": count(lambda: decode_clip(min(lat, 28), "taesd"))}
    # source row + positive row without autograd + negative row forward and backward (the node's split call)
    guided = 2 * t["unet_b1"] + t["unet_b1_grad"] + t["clip"]
    return {**t, "plain": t["unet_b2"], "oig": guided + t["vae_full"], "oig_cheap": guided + t["vae_224"],
            "oig_taesd": guided + t["taesd_full"], "oig_taesd_cheap": guided + t["taesd_224"]}


def make_model(unet, ctx_c, ctx_u, cfg=5.0):
    """EPS denoiser x0 = x - sigma eps(x / sqrt(1 + sigma^2)), batched CFG (cond, uncond) like ComfyUI."""
    from pixels_core import oig

    def denoise(xb, sb, ctx):
        t = (sb * 60.0).clamp(max=999.0)  # any timestep: cost does not depend on it
        eps = unet(xb / torch.sqrt(1 + sb[:, None, None, None] ** 2), t, context=ctx)
        return xb - sb[:, None, None, None] * eps.float()

    def model(x, sigma, uncond=True, authors_grad=False, **_):
        b = x.shape[0]
        if not uncond:
            return denoise(x, sigma, ctx_c.expand(b, -1, -1))
        xx, ss = torch.cat([x, x]), torch.cat([sigma, sigma])
        ctx = torch.cat([ctx_c.expand(b, -1, -1), ctx_u.expand(b, -1, -1)])
        def run_chunks(xi, idx):  # as the node's wrapper: the chunks' rows of every per-row input
            rows = torch.cat([torch.arange(j * b, (j + 1) * b, device=x.device) for j in idx])
            return denoise(xi, ss[rows], ctx[rows])

        out = (oig.negative_branch_only(lambda xi: denoise(xi, ss, ctx), xx, [False, True], run_chunks)
               if authors_grad else denoise(xx, ss, ctx))
        dc, du = out.chunk(2)
        return du + cfg * (dc - du)
    return model


def run_config(name, parts, size, steps, device):
    from pixels_core import oig
    unet, vae, clip, taesd = parts
    model = make_model(unet, *[torch.randn(1, 77, 768, generator=torch.Generator().manual_seed(s)).to(device)
                               for s in (1, 2)])
    x = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(3)).to(device) * 14.6
    sigmas = torch.cat([torch.exp(torch.linspace(math.log(14.6), math.log(0.03), steps)), torch.zeros(1)]).to(device)
    if name == "plain":
        return oig.sample_oig(model, x, sigmas, clip_weight=0.0, struct_weight=0.0)
    import comfy.ldm.modules.diffusionmodules.openaimodel as om
    taps_modules = [m.out_layers[-1] for blocks in (unet.input_blocks, unet.output_blocks)
                    for m in blocks.modules() if isinstance(m, om.ResBlock)]

    def decode(z):
        if name.startswith("oig_taesd"):  # TAESD decodes the model-space latent
            return taesd_decode(taesd, z)
        return (vae.decode(z / 0.18215).float() + 1) / 2

    from pixels_core.oig import clip_preprocess

    def embed_image(img):
        return clip_embed(clip, clip_preprocess(img, 224))

    with oig.FeatureTaps(taps_modules) as taps:
        return oig.sample_oig(model, x, sigmas, source_extra_args={"uncond": False},
                              grad_extra_args={"authors_grad": True}, decode=decode, embed_image=embed_image,
                              text_src=torch.randn(1, 768).to(device), text_tgt=torch.randn(1, 768).to(device),
                              features=taps, clip_latent_size=28 if name.endswith("cheap") else None,
                              cache_device="cpu")


def pack_module(name: str):
    """A module of the pack imported as a package (``nodes`` alone would collide with ComfyUI's own nodes.py)."""
    import importlib
    import importlib.util
    if "pixels_pack" not in sys.modules:
        spec = importlib.util.spec_from_file_location("pixels_pack", REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        pack = importlib.util.module_from_spec(spec)
        sys.modules["pixels_pack"] = pack
        spec.loader.exec_module(pack)
    return importlib.import_module(f"pixels_pack.{name}")


def clip_embed(model, px):
    """The OIG node's own CLIP vision forward (out-of-place residuals): nodes/_oig.py's clip_vision_embed."""
    return pack_module("nodes._oig").clip_vision_embed(model, px)


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_extra_mb(fn, device) -> float:
    """Peak memory above the level before ``fn()``: CUDA allocator peak, or RSS sampled every 2 ms on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    import threading
    base, peak, done = rss_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.002)
    th = threading.Thread(target=sample)
    th.start()
    try:
        fn()
    finally:
        done.set()
        th.join()
    return max(peak[0], rss_mb()) - base


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


LABELS = {"plain": "plain CFG step", "oig": "OIG, authors' settings", "oig_cheap": "OIG, cheaper decode (224 px)",
          "oig_taesd": "OIG, TAESD decode", "oig_taesd_cheap": "OIG, TAESD at 224 px"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="image size in pixels (latent = size / 8)")
    ap.add_argument("--div", type=int, default=4, help="divide every model width by this (1 = real SD1.5 + ViT-L)")
    ap.add_argument("--steps", type=int, default=1, help="steps per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-flops", action="store_true", help="skip the FLOP counts")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    if a.one:  # peak memory of one configuration, in a process of its own
        parts = build(a.size, a.div, device)
        run_config(a.one, parts, a.size, 1, device)  # libraries' one-off allocations
        print(json.dumps({"peak_mb": peak_extra_mb(lambda: run_config(a.one, parts, a.size, a.steps, device), device)}))
        return

    for div in ([] if a.no_flops else sorted({1, a.div})):
        f = flops(a.size, div)
        ch, vch = widths(div)
        print(f"FLOPs per step at {a.size} px, UNet model_channels {ch}, VAE ch {vch}, CLIP hidden {1024 // div}"
              f"{' (real SD1.5 + ViT-L/14)' if div == 1 else ''}: parts (TFLOP) "
              + ", ".join(f"{k} {v:.3f}" for k, v in f.items() if k not in CONFIGS))
        for name in CONFIGS:
            print(f"  {LABELS[name]:<32}{f[name]:>8.3f} TFLOP {f[name] / f['plain']:>6.2f}x plain")
        print(f"  cheaper decode: {f['oig'] / f['oig_cheap']:.2f}x fewer FLOPs than the authors' settings; "
              f"TAESD {f['oig'] / f['oig_taesd']:.2f}x, TAESD at 224 px {f['oig'] / f['oig_taesd_cheap']:.2f}x")

    parts = build(a.size, a.div, device)
    ch, vch = widths(a.div)
    print(f"\nmeasured on {device}: {a.size} px (latent {a.size // 8}), UNet model_channels {ch}, VAE ch {vch}, "
          f"CLIP hidden {1024 // a.div}, {a.steps} step(s) per run, best of {a.repeats} interleaved, "
          f"{a.threads} threads")
    for name in CONFIGS:  # warm-up: the first backward and first shapes are many times slower
        run_config(name, parts, a.size, 1, device)
    best = {n: float("inf") for n in CONFIGS}
    for _ in range(a.repeats):
        for name in CONFIGS:
            sync(device)
            t = time.perf_counter()
            run_config(name, parts, a.size, a.steps, device)
            sync(device)
            best[name] = min(best[name], (time.perf_counter() - t) / a.steps)
    del parts
    mem = {}
    for name in ([] if a.no_memory else CONFIGS):
        proc = subprocess.run([sys.executable, __file__, "--one", name, "--size", str(a.size), "--div", str(a.div),
                               "--steps", str(a.steps), "--threads", str(a.threads)],
                              capture_output=True, text=True,
                              env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        mem[name] = json.loads(line[-1])["peak_mb"] if line else float("nan")
    mem = {n: mem.get(n, float("nan")) for n in CONFIGS}
    p = best["plain"]
    print(f"{'configuration':<34}{'s/step':>9}{'x plain':>9}{'peak MB':>10}{'x plain':>9}")
    for name in CONFIGS:
        print(f"{LABELS[name]:<34}{best[name]:>9.3f}{best[name] / p:>9.2f}{mem[name]:>10.0f}"
              f"{mem[name] / mem['plain']:>9.2f}")
    print(f"cheaper decode speed-up over the authors' settings: {best['oig'] / best['oig_cheap']:.2f}x; TAESD "
          f"{best['oig'] / best['oig_taesd']:.2f}x, TAESD at 224 px {best['oig'] / best['oig_taesd_cheap']:.2f}x")
    for name in ("oig_taesd", "oig_taesd_cheap"):
        print(f"target {LABELS[name]} <= {TAESD_TARGET}x plain (measured): {best[name] / p:.2f}x -> "
              f"{'met' if best[name] / p <= TAESD_TARGET else 'NOT met'}")
    print(f"targets (measured): OIG <= 3x plain -> {'met' if best['oig'] / p <= 3 else 'NOT met'}; "
          f"cheaper >= 1.5x faster -> {'met' if best['oig'] / best['oig_cheap'] >= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
