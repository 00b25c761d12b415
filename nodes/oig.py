"""OIG guidance node (oig-abstract.txt; design.md §3.3): a GUIDER for SamplerCustomAdvanced over pixels_core.oig."""
from __future__ import annotations

import math

import torch
from comfy_api.latest import io

import comfy.k_diffusion.sampling as k_sampling
import comfy.model_management
import comfy.model_patcher
import comfy.model_sampling
import comfy.patcher_extension
import comfy.samplers
from comfy.ldm.modules.attention import optimized_attention_for_device
from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock, UNetModel

from ..pixels_core import oig as core

CATEGORY = "PIXELS/OIG"
SOURCE_BRANCH = "pixels_oig_source_branch"  # model_options flag: this model call belongs to the source pass
DECODES = ["full resolution (paper)", "CLIP resolution (faster)"]
STARTS = ["invert the source latent (image edit)", "latent + noise (generated source)"]
GRADIENTS = ["negative branch (authors' code)", "both CFG branches"]
TOWERS = ("g", "h", "l")  # CLIP text towers by preference (SDXL's CLIP-G, SD2's CLIP-H, CLIP-L)


# ----------------------------------------------------------------------------------------------
# Host adapters: checks, text embeddings, feature taps, gradient-safe encoder copies
# ----------------------------------------------------------------------------------------------

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


def check_sampler(sampler) -> None:
    fn = getattr(sampler, "sampler_function", None)
    churn = float((getattr(sampler, "extra_options", None) or {}).get("s_churn", 0.0))
    if fn is not k_sampling.sample_euler or churn != 0.0:
        raise ValueError("sampler: OIG steps as x <- DDIM_step(x) - eta grad L, so connect KSamplerSelect with 'ddim' or "
                         "'euler' (the same deterministic DDIM step here); other samplers are not supported")


# ----------------------------------------------------------------------------------------------
# The guider
# ----------------------------------------------------------------------------------------------

class OIGGuider(comfy.samplers.CFGGuider):
    """CFG guider whose sampling runs OIG's two passes (source pass, then the guided target pass)."""

    def __init__(self, model, vae, clip_vision, text_src, text_tgt, settings: dict):
        patched = model.clone()
        for name, m in patched.model.named_modules():
            if name.startswith("diffusion_model.") and hasattr(m, "comfy_cast_weights"):
                for p in ("weight", "bias"):
                    if getattr(m, p, None) is not None:
                        patched.add_weight_wrapper(f"{name}.{p}", _detached)
        super().__init__(patched)
        self.vae, self.clip_vision = vae, clip_vision
        self.text_src, self.text_tgt = text_src, text_tgt
        self.settings = dict(settings)

    def set_conds(self, source, target, negative=None):
        self.inner_set_conds({"positive": target, "negative": source if negative is None else negative,
                              "source": source})

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        if model_options.get(SOURCE_BRANCH):
            return comfy.samplers.sampling_function(self.inner_model, x, timestep, None, self.conds["source"], 1.0,
                                                    model_options=model_options, seed=seed)
        return super().predict_noise(x, timestep, model_options, seed)

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
               seed=None):
        check_sampler(sampler)
        with torch.inference_mode(False):
            noise, latent_image, sigmas = noise.clone(), latent_image.clone(), sigmas.clone()
            denoise_mask = None if denoise_mask is None else denoise_mask.clone()
            oig_sampler = comfy.samplers.KSAMPLER(self._oig_sampler, inpaint_options=dict(sampler.inpaint_options))
            try:
                return super().sample(noise, latent_image, oig_sampler, sigmas, denoise_mask, callback, disable_pbar,
                                      seed)
            finally:
                comfy.model_management.soft_empty_cache()

    def _oig_sampler(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
        s = self.settings
        extra_args = dict(extra_args or {})
        source_args = {**extra_args, "model_options": {**extra_args.get("model_options", {}), SOURCE_BRANCH: True}}
        device, base = x.device, self.inner_model

        def report(d):
            comfy.model_management.throw_exception_if_processing_interrupted()
            if callback is not None:
                callback(d)

        decoder = embedder = taps = None
        try:
            kw = {}
            if s["clip_weight"] > 0:
                vae, cv = self.vae, self.clip_vision
                decoder = GradCopy(vae.first_stage_model, vae_decode, device)
                embedder = GradCopy(cv.model, clip_vision_embed, device)

                def decode(z):
                    img = decoder(base.process_latent_out(z).to(decoder.dtype))
                    return (img.float() + 1.0) / 2.0

                def embed_image(img):
                    px = core.clip_preprocess(img, cv.image_size, cv.image_mean, cv.image_std)
                    return embedder(px.to(embedder.dtype)).float()

                latent_size = None
                if s["clip_decode"] == DECODES[1]:
                    latent_size = math.ceil(cv.image_size / vae.spacial_compression_decode())
                kw.update(decode=decode, embed_image=embed_image, clip_latent_size=latent_size,
                          text_src=self.text_src.clone().to(device), text_tgt=self.text_tgt.clone().to(device))
            if s["struct_weight"] > 0:
                taps = core.FeatureTaps(resblock_modules(base.diffusion_model))
                kw["features"] = taps
            if s["start"] == STARTS[0]:
                x = model.latent_image  # the clean source latent; the noise input is not used
                if x is None or not torch.count_nonzero(x):
                    raise ValueError("start: inverting needs the source image's latent (VAEEncode) as latent_image; "
                                     "for a generated source (empty latent plus noise) choose "
                                     f"'{STARTS[1]}'")
                kw.update(invert=True, invert_callback=report)
            if s["gradient"] == GRADIENTS[0] and not math.isclose(self.cfg, 1.0):
                # (without CFG the authors' doubled latent does not exist: they take the full gradient)
                kw["grad_extra_args"] = with_negative_branch_gradient(extra_args)
            return core.sample_oig(model, x, sigmas, extra_args, report, disable, source_extra_args=source_args,
                                   clip_weight=s["clip_weight"], struct_weight=s["struct_weight"], beta_p=s["beta_p"],
                                   beta_f=s["beta_f"], step_scale=s["step_scale"],
                                   cache_device=comfy.model_management.intermediate_device(),
                                   source_callback=report, **kw)
        finally:
            if taps is not None:
                taps.remove()
            del decoder, embedder, taps


# ----------------------------------------------------------------------------------------------
# Node
# ----------------------------------------------------------------------------------------------

class PixelsOIGGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsOIGGuider",
            display_name="PIXELS OIG Guider",
            category=CATEGORY,
            description="OIG text-driven editing (Optimized Inference with Guidance) as a GUIDER for "
                        "SamplerCustomAdvanced. It DDIM-inverts the source image's latent with the source prompt (or starts "
                        "from latent + noise for a generated source), runs the source prompt once, caching the UNet's ResBlock "
                        "features, then the target prompt where each DDIM step also descends "
                        "0.1 x CLIP triplet + 1.0 x structural triplet. Use sampler ddim (or euler) and the ddim_uniform "
                        "scheduler. SD1.x, SD2 and SDXL UNets only.",
            inputs=[
                io.Model.Input("model", tooltip="SD1.x, SD2 or SDXL model (discrete-time VP UNet). Flow models (SD3, "
                               "Flux) and DiT models are rejected."),
                io.Conditioning.Input("source", tooltip="Conditioning of the source prompt (what the input image shows). "
                                      "Drives the source pass and, as in the authors' runs, is the target pass's negative."),
                io.Conditioning.Input("target", tooltip="Conditioning of the target prompt (the edit, e.g. cat -> dog)."),
                io.Clip.Input("clip", tooltip="Text encoder for the prompts' CLIP-space embeddings (its text projection). "
                              "SDXL: the checkpoint's CLIP (CLIP-G). SD1.x checkpoints carry no CLIP-L projection: load "
                              "a CLIP-L file that has one with CLIPLoader (type stable_diffusion)."),
                io.ClipVision.Input("clip_vision", tooltip="CLIP vision model sharing the text side's embedding space: "
                                    "ViT-L/14 with CLIP-L (SD1.x), ViT-bigG/14 with CLIP-G (SDXL), ViT-H/14 with CLIP-H (SD2)."),
                io.Vae.Input("vae", tooltip="The model's VAE: decodes the predicted x0 (with gradients) for the CLIP term."),
                io.String.Input("source_text", multiline=True, default="a photo of a cat",
                                tooltip="Source prompt text, embedded by clip for the CLIP triplet (usually the text of "
                                        "the source conditioning)."),
                io.String.Input("target_text", multiline=True, default="a photo of a dog",
                                tooltip="Target prompt text, embedded by clip for the CLIP triplet."),
                io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance of the target pass (authors: 5; the source pass runs the "
                                       "source prompt alone). Raising it follows the target prompt more strongly."),
                io.Float.Input("clip_weight", default=core.LAMBDA_CLIP, min=0.0, max=100.0, step=0.01,
                               tooltip="lambda1, weight of the CLIP triplet term (paper 0.1). Raising it pushes harder "
                                       "toward the target text in CLIP space; 0 skips the VAE decode and CLIP."),
                io.Float.Input("struct_weight", default=core.LAMBDA_STRUCT, min=0.0, max=100.0, step=0.01,
                               tooltip="lambda2, weight of the structural triplet on UNet features (paper 1.0). Raising "
                                       "it keeps more of the source's structure; 0 skips the source pass."),
                io.Float.Input("beta_p", default=core.BETA_P, min=0.0, max=2.0, step=0.01,
                               tooltip="Margin of the CLIP hinge (paper 0.5). Raising it keeps the CLIP term active "
                                       "longer: a stronger push toward the target text."),
                io.Float.Input("beta_f", default=core.BETA_F, min=0.0, max=100.0, step=0.1,
                               tooltip="Weight of the distance to the source features inside the structural hinge "
                                       "(paper 2.5). Raising it holds the structure closer to the source."),
                io.Float.Input("step_scale", default=1.0, min=0.0, max=100.0, step=0.05,
                               tooltip="Multiplies the authors' step sizes eta_i (1 = paper). Raising it takes bigger "
                                       "guidance steps: a stronger effect, with a risk of artefacts."),
                io.Combo.Input("clip_decode", options=DECODES, default=DECODES[0],
                               tooltip="How the predicted x0 is decoded for the CLIP term: at full resolution (paper) or "
                                       "shrunk to CLIP's input size first (much cheaper decode and backward; an "
                                       "approximation beyond the paper)."),
                io.Combo.Input("start", options=STARTS, default=STARTS[0],
                               tooltip="Where both passes start. Image edit (paper, real images): the latent_image is "
                                       "VAEEncode of the source image; it is DDIM-inverted with the source prompt "
                                       "(guidance 1) to x_T and the noise input is ignored (use DisableNoise). "
                                       "Generated source: latent_image plus the noise is x_T, as in the authors' "
                                       "synthetic-image script."),
                io.Combo.Input("gradient", options=GRADIENTS, default=GRADIENTS[0],
                               tooltip="Which derivative of the loss moves the latent. The authors' code takes it with "
                                       "respect to the negative branch's copy of the latent only; 'both CFG branches' "
                                       "uses the total derivative (a different, usually weaker push with high cfg)."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="Negative of the target pass. Unconnected: the source conditioning (authors)."),
            ],
            outputs=[io.Guider.Output()],
        )

    @classmethod
    def execute(cls, model, source, target, clip, clip_vision, vae, source_text, target_text, cfg, clip_weight,
                struct_weight, beta_p, beta_f, step_scale, clip_decode, start=STARTS[0], gradient=GRADIENTS[0],
                negative=None) -> io.NodeOutput:
        check_model(model)
        check_vae(vae, model)
        for name, value, options in (("clip_decode", clip_decode, DECODES), ("start", start, STARTS),
                                     ("gradient", gradient, GRADIENTS)):
            if value not in options:
                raise ValueError(f"{name} must be one of {options}, got {value!r}")
        key, tower = text_tower(clip, vision_embed_dim(clip_vision))
        texts = [text_embedding(clip, key, tower, t) for t in (source_text, target_text)]
        settings = dict(clip_weight=clip_weight, struct_weight=struct_weight, beta_p=beta_p, beta_f=beta_f,
                        step_scale=step_scale, clip_decode=clip_decode, start=start, gradient=gradient)
        guider = OIGGuider(model, vae, clip_vision, *texts, settings)
        guider.set_conds(source, target, negative)
        guider.set_cfg(cfg)
        return io.NodeOutput(guider)


NODES = [PixelsOIGGuider]
