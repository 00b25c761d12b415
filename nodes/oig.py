"""OIG guidance node (Lee, Kang, Han, "Diffusion-Based Conditional Image Editing through Optimized Inference with
Guidance", WACV 2025; authors' code Hleephilip/OIG): a GUIDER for SamplerCustomAdvanced over pixels_core.oig, with
the host adapters in nodes/_oig.py."""
from __future__ import annotations

import math

import torch
from comfy_api.latest import io

import comfy.k_diffusion.sampling as k_sampling
import comfy.model_management
import comfy.samplers

from ..pixels_core import oig as core
from . import _session as session
from ._oig import (GradCopy, _detached, check_model, check_vae, clip_vision_embed, resblock_modules, taesd_decode,
                   taesd_decoder, text_embedding, text_tower, vae_decode, vision_embed_dim,
                   with_negative_branch_gradient)

CATEGORY = "PIXELS/OIG"
# appended values only: saved workflows keep their meaning. TAESD = ComfyUI's preview decoder (models/vae_approx)
DECODES = ["full resolution (paper)", "CLIP resolution (faster)", "TAESD preview decoder (faster)",
           "TAESD at CLIP resolution (fastest)"]
TAESD_DECODES = DECODES[2:]
CLIP_RESOLUTION = (DECODES[1], DECODES[3])
DECODE_TIP = ("How the predicted x0 is decoded for the CLIP term. 'full resolution (paper)': the model's VAE decoder. "
              "'CLIP resolution': the latent is shrunk to CLIP's input size first (much cheaper decode and backward). "
              "'TAESD': ComfyUI's small preview decoder instead of the VAE (models/vae_approx/taesd_decoder for SD1.x "
              "and SD2, taesdxl_decoder for SDXL, from github.com/madebyollin/taesd), at full or CLIP resolution: "
              "cheaper still. All but the first are approximations beyond the paper.")
STARTS = ["invert the source latent (image edit)", "latent + noise (generated source)"]
GRADIENTS = ["negative branch (authors' code)", "both CFG branches"]
INVERSIONS = {"authors (pix2pix-zero, N-2 steps)": "authors", "exact (N steps, refined)": "exact"}
INVERSION_TIP = ("How the source latent is DDIM-inverted. 'authors' (default) is pix2pix-zero's inversion as the OIG "
                 "authors run it: N-2 of the N steps, alphas read one training step back, the setting behind the "
                 "paper's results. 'exact' is the pack's own: every one of the N steps inverted and refined by 2 "
                 "fixed-point iterations (3x the inversion's model calls); it gets back to the source about 100x more "
                 "closely (relative error 1e-4 against 4e-2 at 50 steps on a model with a known answer).")


def check_sampler(sampler) -> None:
    fn = getattr(sampler, "sampler_function", None)
    churn = float((getattr(sampler, "extra_options", None) or {}).get("s_churn", 0.0))
    if fn is not k_sampling.sample_euler or churn != 0.0:
        raise ValueError("sampler: OIG steps as x <- DDIM_step(x) - eta grad L, so connect KSamplerSelect with 'ddim' or "
                         "'euler' (the same deterministic DDIM step here); other samplers are not supported")


# ----------------------------------------------------------------------------------------------
# The guider
# ----------------------------------------------------------------------------------------------

class OIGGuider(session.BranchGuider):
    """Guider whose sampling runs OIG's two passes: the ``source`` branch (source prompt alone, CFG 1) caches the
    features, then the ``target`` branch (target prompt, the source as negative by default) takes the guided steps."""

    def __init__(self, model, vae, clip_vision, text_src, text_tgt, settings: dict, taesd=None):
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
        self.taesd = taesd  # ComfyUI's TAESD preview decoder when clip_decode asks for it

    def set_oig_conds(self, source, target, negative, cfg):
        self.set_branches("target", {"target": (target, source if negative is None else negative, None),
                                     "source": (source, None, 1.0)}, cfg)

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
        source_args = session.branch_args(extra_args, "source")
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
                taesd = self.taesd if s["clip_decode"] in TAESD_DECODES else None
                if taesd is not None:  # TAESD decodes the model-space latent, as ComfyUI's previews do
                    decoder = GradCopy(taesd, taesd_decode, device)
                else:
                    decoder = GradCopy(vae.first_stage_model, vae_decode, device)
                embedder = GradCopy(cv.model, clip_vision_embed, device)

                def decode(z):
                    img = decoder((z if taesd is not None else base.process_latent_out(z)).to(decoder.dtype))
                    return (img.float() + 1.0) / 2.0

                def embed_image(img):
                    px = core.clip_preprocess(img, cv.image_size, cv.image_mean, cv.image_std)
                    return embedder(px.to(embedder.dtype)).float()

                latent_size = None
                if s["clip_decode"] in CLIP_RESOLUTION:
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
                kw.update(invert=True, invert_callback=report, inversion=INVERSIONS[s["inversion"]],
                          train_sigmas=base.model_sampling.sigmas)
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
                io.Clip.Input("clip", lazy=True,
                              tooltip="Text encoder for the prompts' CLIP-space embeddings (its text projection). SDXL: "
                                      "the checkpoint's CLIP (CLIP-G). SD1.x checkpoints carry no CLIP-L projection: "
                                      "load a CLIP-L file that has one with CLIPLoader (type stable_diffusion). Not "
                                      "loaded when clip_weight is 0."),
                io.ClipVision.Input("clip_vision", lazy=True,
                                    tooltip="CLIP vision model sharing the text side's embedding space: ViT-L/14 with "
                                            "CLIP-L (SD1.x), ViT-bigG/14 with CLIP-G (SDXL), ViT-H/14 with CLIP-H (SD2). "
                                            "Not loaded when clip_weight is 0."),
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
                io.Combo.Input("clip_decode", options=DECODES, default=DECODES[0], tooltip=DECODE_TIP),
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
                # optional: saved API workflows from before this input still validate (the default is the authors')
                io.Combo.Input("inversion", options=list(INVERSIONS), default=list(INVERSIONS)[0], optional=True,
                               tooltip=INVERSION_TIP),
            ],
            outputs=[io.Guider.Output()],
        )

    @classmethod
    def check_lazy_status(cls, clip_weight=None, **inputs):
        if clip_weight is not None and clip_weight <= 0:
            return []  # the CLIP term is off: neither encoder is needed, so their loaders do not run
        # a linked input not computed yet arrives as None; an unconnected one does not arrive at all
        return [name for name in ("clip", "clip_vision") if name in inputs and inputs[name] is None]

    @classmethod
    def execute(cls, model, source, target, clip, clip_vision, vae, source_text, target_text, cfg, clip_weight,
                struct_weight, beta_p, beta_f, step_scale, clip_decode, start=STARTS[0], gradient=GRADIENTS[0],
                negative=None, inversion=None) -> io.NodeOutput:
        inversion = list(INVERSIONS)[0] if inversion is None else inversion
        check_model(model)
        check_vae(vae, model)
        for name, value, options in (("clip_decode", clip_decode, DECODES), ("start", start, STARTS),
                                     ("gradient", gradient, GRADIENTS), ("inversion", inversion, INVERSIONS)):
            session.choice(name, value, options)
        texts, taesd = [None, None], None
        if clip_weight > 0:
            key, tower = text_tower(clip, vision_embed_dim(clip_vision))
            texts = [text_embedding(clip, key, tower, t) for t in (source_text, target_text)]
            if clip_decode in TAESD_DECODES:
                taesd = taesd_decoder(model)
        settings = dict(clip_weight=clip_weight, struct_weight=struct_weight, beta_p=beta_p, beta_f=beta_f,
                        step_scale=step_scale, clip_decode=clip_decode, start=start, gradient=gradient,
                        inversion=inversion)
        guider = OIGGuider(model, vae, clip_vision, *texts, settings, taesd)
        guider.set_oig_conds(source, target, negative, cfg)
        return io.NodeOutput(guider)


NODES = [PixelsOIGGuider]
