"""OIG host adapters: the model checks, CLIP text and image embeddings in the shared CLIP space, UNet feature taps,
gradient-safe copies of the VAE decoder (or ComfyUI's TAESD preview decoder) and the CLIP vision tower, and the authors' negative-branch gradient as a
model wrapper. Nothing here changes a shared model: weights are copied, wrappers live on a copy of the options.

The paper: Lee, Kang, Han, "Diffusion-Based Conditional Image Editing through Optimized Inference with Guidance",
WACV 2025 (authors' code Hleephilip/OIG); the maths is in ``pixels_core.oig``.
"""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.model_sampling
import comfy.patcher_extension
from comfy.ldm.modules.attention import optimized_attention_for_device
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock, UNetModel

from ..pixels_core import oig as core

TOWERS = ("g", "h", "l")  # CLIP text towers by preference (SDXL's CLIP-G, SD2's CLIP-H, CLIP-L)


def check_model(model) -> UNetModel:
    """The UNet of a supported model (SD1.x, SD2, SDXL: VP discrete-time diffusion) or a clear ValueError."""
    base = getattr(model, "model", None)
    unet = getattr(base, "diffusion_model", None)
    ms = model.get_model_object("model_sampling")
    family = f"{type(base).__name__} ({type(unet).__name__}, {type(ms).__mro__[1].__name__})"
    vp = (isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete)
          and not isinstance(ms, comfy.model_sampling.ModelSamplingDiscreteEDM)
          and isinstance(ms, comfy.model_sampling.EPS)
          and not isinstance(ms, (comfy.model_sampling.EDM, comfy.model_sampling.X0)))
    if not isinstance(unet, UNetModel) or not vp:
        raise ValueError(f"model: OIG supports SD1.x, SD2 and SDXL UNet models (discrete-time VP diffusion whose "
                         f"UNet ResBlocks give the structure features); this model is {family}. Flow models "
                         "(SD3, Flux, ...), DiT models and EDM/continuous-time models are not supported.")
    if not resblock_modules(unet):
        raise ValueError("model: this UNet has no ResBlocks in its input/output blocks to take features from")
    return unet


def resblock_modules(unet) -> list[torch.nn.Module]:
    """Residual-branch outputs of every ResBlock in the down (input) and up (output) blocks, mid block excluded
    (20 layers in SD1.x, 15 in SDXL): the last layer of ``out_layers`` gives ``h`` before the skip is added."""
    taps = []
    for blocks in (unet.input_blocks, unet.output_blocks):
        for m in blocks.modules():
            if isinstance(m, ResBlock):
                taps.append(m.out_layers[-1])
    return taps


def check_vae(vae, model) -> None:
    if vae is None:
        raise ValueError("vae: connect the checkpoint's VAE; OIG decodes the predicted x0 to score it with CLIP")
    want = model.model.latent_format.latent_channels
    if getattr(vae, "latent_dim", 2) != 2 or getattr(vae, "latent_channels", None) != want:
        raise ValueError(f"vae: this VAE has {getattr(vae, 'latent_channels', '?')}-channel latents but the model uses "
                         f"{want}; connect the image VAE that belongs to the model")


def vision_embed_dim(clip_vision) -> int:
    proj = getattr(getattr(clip_vision, "model", None), "visual_projection", None)
    if not isinstance(proj, torch.nn.Linear):
        raise ValueError("clip_vision: this vision model has no projection into CLIP's text space (SigLIP, DINO, ...); "
                         "load a CLIP ViT vision model with CLIPVisionLoader")
    return int(proj.out_features)


def text_tower(clip, dim: int):
    """The CLIP text tower whose projection shares ``dim`` with the vision model: (tokenizer key, tower)."""
    cm = clip.cond_stage_model
    found = {}
    for key in TOWERS:
        tower = getattr(cm, f"clip_{key}", None)
        proj = getattr(getattr(tower, "transformer", None), "text_projection", None)
        if isinstance(proj, torch.nn.Linear):
            found[key] = (tower, int(proj.out_features))
    match = [k for k in TOWERS if k in found and found[k][1] == dim]
    if not match:
        have = ", ".join(f"CLIP-{k.upper()} {d}" for k, (_, d) in found.items()) or "none"
        raise ValueError(f"clip_vision embeds images into {dim} values but the clip text towers project to: {have}. "
                         "Pair them: ViT-L/14 (768) with CLIP-L (SD1.x), ViT-H/14 (1024) with CLIP-H (SD2), "
                         "ViT-bigG/14 (1280) with CLIP-G (SDXL)")
    key = match[0]
    tower = found[key][0]
    w = tower.transformer.text_projection.weight
    wmax = w.detach().float().abs().max().item() if w.numel() else 0.0
    if not torch.isfinite(w).all() or wmax == 0.0 or wmax > 100.0:
        raise ValueError(f"clip: the CLIP-{key.upper()} text projection is missing or uninitialised. SD1.x checkpoints "
                         "do not ship one: load a CLIP-L text encoder that has `text_projection.weight` (e.g. OpenAI's "
                         "clip-vit-large-patch14 or clip_l.safetensors) with CLIPLoader (type stable_diffusion) and "
                         "connect it to clip")
    return key, tower


def text_embedding(clip, key: str, tower, text: str) -> torch.Tensor:
    """Projected pooled CLIP text embedding (1, D) of ``text`` (the shared CLIP space), on the intermediate device."""
    tokens = clip.tokenize(text)
    if key not in tokens:
        raise ValueError(f"clip: its tokenizer gives no tokens for the CLIP-{key.upper()} tower")
    clip.load_model()
    tower.reset_clip_options()
    tower.set_clip_options({"projected_pooled": True})
    try:
        pooled = tower.encode_token_weights(tokens[key])[1]
    finally:
        tower.reset_clip_options()
    if pooled is None:
        raise ValueError("clip: the text encoder returned no pooled output")
    return pooled[:1].float().to(comfy.model_management.intermediate_device())


class _Fn(torch.nn.Module):
    def __init__(self, module, fn):
        super().__init__()
        self.inner = module
        self.fn = fn

    def forward(self, *args):
        return self.fn(self.inner, *args)


class GradCopy:
    """Runs ``fn(module, *args)`` with private, non-inference copies of the module's weights on ``device``
    (``torch.func.functional_call``): weights loaded under ComfyUI's inference mode cannot take part in a backward
    pass, and the shared module stays untouched. Drop the object to free the copies. Callers cast inputs to
    ``self.dtype``."""

    def __init__(self, module, fn, device):
        self.call = _Fn(module, fn)
        named = list(self.call.named_parameters()) + list(self.call.named_buffers())
        device = torch.device(device)
        # half precision on the CPU is many times slower than float32 (its backward even more): compute in float32 there
        upcast = device.type == "cpu"

        def copy(t):
            if upcast and t.is_floating_point() and t.dtype in (torch.float16, torch.bfloat16):
                return t.detach().to(device=device, dtype=torch.float32, copy=True)
            return t.detach().to(device=device, copy=True)

        self.state = {n: copy(t) for n, t in named}
        self.dtype = next((t.dtype for t in self.state.values() if t.is_floating_point()), torch.float32)

    def __call__(self, *args):
        return torch.func.functional_call(self.call, self.state, args)


def vae_decode(first_stage_model, latent):
    return first_stage_model.decode(latent)


TAESD_REPO = "https://github.com/madebyollin/taesd"


def taesd_decoder(model):
    """ComfyUI's TAESD preview decoder for the model's latent format (SD1.x/SD2: ``taesd_decoder``, SDXL:
    ``taesdxl_decoder``), found in ``models/vae_approx`` and built as ``latent_preview.get_previewer`` builds it
    (``comfy.taesd.taesd.TAESD(None, path, latent_channels)``, ComfyUI 0.3.64 and 0.8.0 alike). It decodes the
    model-space latent (no ``process_latent_out``) to an image in [-1, 1]. A missing file is a clear ValueError."""
    import folder_paths
    from comfy.taesd.taesd import TAESD

    fmt = model.model.latent_format
    name = getattr(fmt, "taesd_decoder_name", None)
    if name is None:
        raise ValueError(f"clip_decode: ComfyUI has no TAESD decoder for this model's latent format "
                         f"({type(fmt).__name__}); choose a VAE decode")
    found = next((f for f in folder_paths.get_filename_list("vae_approx") if f.startswith(name)), None)
    path = folder_paths.get_full_path("vae_approx", found) if found else None
    if not path:
        folders = folder_paths.get_folder_paths("vae_approx")
        raise ValueError(f"clip_decode: the TAESD option needs ComfyUI's preview decoder {name}.safetensors (or "
                         f"{name}.pth) in models/vae_approx ({', '.join(folders) or 'no vae_approx folder'}), and it "
                         f"is not there. Download {name}.pth from {TAESD_REPO} (raw file: "
                         f"{TAESD_REPO}/raw/main/{name}.pth) into that folder, or choose a VAE decode")
    return TAESD(None, path, latent_channels=fmt.latent_channels)


def taesd_decode(taesd, latent):
    return taesd.decode(latent)


def clip_vision_embed(model, pixel_values):
    """Projected CLIP image embedding (B, D) of a ComfyUI ``CLIPVisionModelProjection`` with residual additions done
    out of place (ComfyUI's CLIPLayer adds in place, which autograd cannot differentiate through)."""
    vm = model.vision_model
    x = vm.pre_layrnorm(vm.embeddings(pixel_values))
    attention = optimized_attention_for_device(x.device, mask=False, small_input=True)
    for layer in vm.encoder.layers:
        x = x + layer.self_attn(layer.layer_norm1(x), None, attention)
        x = x + layer.mlp(layer.layer_norm2(x))
    return model.visual_projection(vm.post_layernorm(x[:, 0, :]))


def _detached(weight):
    """Weight wrapper: the cast copy ComfyUI makes for wrapped weights is a normal (non-inference) tensor; detach it
    so no gradient is ever taken for the model's weights (only for the latent)."""
    return weight.detach()


def negative_branch_wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={},
                            **kwargs):
    """APPLY_MODEL wrapper: the authors' gradient (first, negative copy of the CFG-doubled latent only), see
    :func:`pixels_core.oig.negative_branch_only`. ComfyUI labels batch chunks 0 = positive, 1 = negative.
    Where every per-row input can be sliced (no ControlNet), the positive chunks run in a call of their own without
    autograd, so the backward pass covers only the negative rows."""
    labels = list(transformer_options.get("cond_or_uncond", []))
    rows = [label == 1 for label in labels]
    if not rows:
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    n, k = x.shape[0], len(rows)

    def per_row(v):
        return torch.is_tensor(v) and v.ndim > 0 and v.shape[0] == n

    sliceable = (control is None and n % k == 0 and per_row(t)
                 and all(v is None or per_row(v) for v in (c_concat, c_crossattn))
                 and all(per_row(v) or not torch.is_tensor(v) for v in kwargs.values()))

    def run_chunks(xi, idx):
        b = n // k
        sel = torch.cat([torch.arange(j * b, (j + 1) * b, device=x.device) for j in idx])

        def take(v):
            return v[sel.to(v.device)] if per_row(v) else v
        opts = dict(transformer_options)
        opts["cond_or_uncond"] = [labels[j] for j in idx]
        if len(transformer_options.get("uuids", [])) == k:
            opts["uuids"] = [transformer_options["uuids"][j] for j in idx]
        return executor(xi, take(t), take(c_concat), take(c_crossattn), None, opts,
                        **{name: take(v) for name, v in kwargs.items()})

    return core.negative_branch_only(
        lambda xi: executor(xi, t, c_concat, c_crossattn, control, transformer_options, **kwargs), x, rows,
        run_chunks if sliceable else None)


def with_negative_branch_gradient(extra_args: dict) -> dict:
    """A copy of ``extra_args`` whose model options carry :func:`negative_branch_wrapper` (nothing shared is changed)."""
    options = comfy.model_patcher.create_model_options_clone(extra_args.get("model_options", {}))
    comfy.patcher_extension.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "pixels_oig_gradient",
                                                 negative_branch_wrapper, options, is_model_options=True)
    return {**extra_args, "model_options": options}
