"""ITO optimising KSampler nodes (ito-paper.txt Sec. 3.2, Fig. 1; design.md §3.2): thin wrappers over pixels_core.ito.

The three stages of the paper's Fig. 1 are three nodes (edit mask, guidance image, optimising sampler) plus an
all-in-one node for the simple case (lambda = 1, estimated mask, no guidance image). Each node runs its whole
algorithm inside one ComfyUI sampling session (a CFG guider that holds the source and the edit conditioning and
answers with either, so ControlNet-applied conditioning works as anywhere else).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from comfy_api.latest import io

import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import latent_preview

from ..pixels_core import ito as core
from ._common import check_image, check_latent

CATEGORY = "PIXELS/ITO"
BRANCH = "pixels_ito_branch"  # model_options key: which conditioning a model call uses ("source" or "edit")
CFG_KEY = "pixels_ito_cfg"  # model_options key: CFG scale of that call (inversion runs at its own scale)
D = core.DEFAULTS

TIPS = {
    "model": "Diffusion model (SD1.x, SD2, SDXL; flow models SD3/Flux are handled with reverse-Euler inversion).",
    "source_positive": "Conditioning that describes the SOURCE image (its caption, and for layout edits the source "
                       "pose/scribble through ControlNet Apply). The source is DDIM-inverted with it.",
    "source_negative": "Negative conditioning for the source branch.",
    "edit_positive": "Edit conditioning: the new prompt and/or the new layout (e.g. ControlNet Apply with the target "
                     "pose or scribble). The image is decoded with it.",
    "edit_negative": "Negative conditioning for the edit branch.",
    "latent": "The source image's latent (VAE Encode).",
    "steps": "DDIM steps of the full schedule (paper: 25). t_u counts within them.",
    "cfg": "Classifier-free guidance of the edit decoding, as in KSampler. Raising it follows the edit conditioning "
           "more strongly (and drifts further from the inverted source).",
    "scheduler": "Sigma schedule (the paper uses DDIM's uniform timesteps: 'ddim_uniform' or 'normal').",
    "t_u": "Number of first decoding steps in which the latent is optimised (paper: 15 of 25). Raising it keeps more "
           "of the source (and of the guidance image); lowering it leaves more freedom late in the edit.",
    "k": "Adam steps per optimised step (paper: 1). Raising it pulls harder towards the targets each step (the "
         "paper's Fig. 7 shows more artefacts in the final edit with k = 30).",
    "lr": "Adam learning rate gamma (paper: 0.1). Each Adam step moves each latent value by about lr; raising it "
          "preserves (and follows the guidance) more strongly.",
    "encode_ratio": "Encoding ratio t_E/T: the fraction of the schedule the source is inverted through (paper: 1.0). "
                    "Lowering it keeps more of the source everywhere (smaller edits).",
    "seed": "Seed. The inversion and the optimised decoding are deterministic; the seed draws the noise of the "
            "random-noise encodings (guidance image, mask estimate) and is passed to models that use one.",
}


# ----------------------------------------------------------------------------------------------
# Host adapters
# ----------------------------------------------------------------------------------------------

def param_kind(model) -> str:
    """'flow' for rectified-flow (CONST) models, else 'eps' (ComfyUI's VE sigma form covers eps, v and EDM)."""
    return "flow" if isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.CONST) else "eps"


class ITOGuider(comfy.samplers.CFGGuider):
    """CFG guider holding the edit conditioning (``positive``/``negative``) and, optionally, the source conditioning;
    a model call picks its branch and CFG scale through ``model_options`` (see :func:`branch_args`)."""

    def set_ito_conds(self, edit_positive, edit_negative, source_positive=None, source_negative=None):
        conds = {"positive": edit_positive, "negative": edit_negative}
        if source_positive is not None:
            conds["source_positive"] = source_positive
            conds["source_negative"] = source_negative
        self.inner_set_conds(conds)
        for c in self.original_conds.get("source_negative", []):
            c.setdefault("prompt_type", "negative")  # models that treat negatives specially (SDXL refiner) still do
        for c in self.original_conds.get("source_positive", []):
            c.setdefault("prompt_type", "positive")

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        if model_options.get(BRANCH) == "source":
            pos, neg = self.conds.get("source_positive"), self.conds.get("source_negative")
        else:
            pos, neg = self.conds.get("positive"), self.conds.get("negative")
        cfg = model_options.get(CFG_KEY, self.cfg)
        return comfy.samplers.sampling_function(self.inner_model, x, timestep, neg, pos, cfg,
                                                model_options=model_options, seed=seed)


def branch_args(extra_args: dict, branch: str, cfg: float | None = None) -> dict:
    """``extra_args`` whose model calls use the ``branch`` conditioning (and CFG ``cfg`` if given)."""
    mo = dict(extra_args.get("model_options") or {})
    mo[BRANCH] = branch
    if cfg is not None:
        mo[CFG_KEY] = float(cfg)
    return {**extra_args, "model_options": mo}


def progress(model, total: int):
    """Core callback -> ComfyUI progress bar with latent previews; raises on cancel."""
    cb = latent_preview.prepare_callback(model, total)

    def report(d):
        comfy.model_management.throw_exception_if_processing_interrupted()
        cb(min(int(d["i"]), total - 1), d["denoised"], d["x"], total)
    return report


def run_session(model, conds: dict, cfg: float, latent: torch.Tensor, sigmas: torch.Tensor, seed: int, fn,
                noise: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``fn(model_k, x0, noise, sigmas, extra_args, param)`` inside one ComfyUI sampling session and return
    its latent, mapped back to the user's latent space. ``x0``/``noise`` come on the model's device in model space."""
    guider = ITOGuider(model)
    guider.set_ito_conds(**conds)
    guider.set_cfg(cfg)
    kind = param_kind(model)

    def sampler_fn(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        return fn(model_k, model_k.latent_image, model_k.noise, sigmas, dict(extra_args or {}), kind)

    noise = torch.zeros_like(latent) if noise is None else noise
    out = guider.sample(noise, latent, comfy.samplers.KSAMPLER(sampler_fn), sigmas, denoise_mask=None, callback=None,
                        disable_pbar=True, seed=seed)
    return out.to(comfy.model_management.intermediate_device())


def full_sigmas(model, scheduler: str, steps: int) -> torch.Tensor:
    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu().float()


def source_latent(model, latent: dict, name: str = "latent") -> torch.Tensor:
    if not isinstance(latent, dict) or "samples" not in latent:
        raise ValueError(f"{name}: connect a LATENT (e.g. VAE Encode of the source image)")
    samples = latent["samples"]
    if samples.ndim != 4:
        raise ValueError(f"{name}: ITO works on image latents (B, C, H, W); got shape {tuple(samples.shape)}")
    return check_latent(model, comfy.sample.fix_empty_latent_channels(model, samples), name)


def mask_for(mask, latent: dict | None, samples: torch.Tensor, name: str = "mask") -> torch.Tensor | None:
    """The edit mask (1 = edit) at latent size: the ``mask`` input, else the latent's noise_mask, else None."""
    if mask is None and latent is not None:
        mask = latent.get("noise_mask")
        name = "latent noise_mask"
    if mask is None:
        return None
    h, w = samples.shape[-2:]
    return core.prepare_mask(mask, samples.shape[0], h, w, name=name)  # logs when another aspect ratio is cropped


def mask_to_image_size(m: torch.Tensor, size, mode="nearest-exact") -> torch.Tensor:
    """``(B, 1, h, w)`` latent mask -> ComfyUI MASK ``(B, H, W)``."""
    return F.interpolate(m.float(), size=tuple(size), mode=mode).squeeze(1).clamp(0, 1).cpu()


def mask_sigma(ms, strength: float) -> float:
    """Noise level of a denoise ``strength`` (DiffEdit's encode strength), capped at the model's sigma_max."""
    return min(float(ms.percent_to_sigma(1.0 - float(strength))), float(ms.sigma_max))


def estimate_mask_in(model_k, x0, edit_args, source_args, kind, *, strength, n, seed, tau, smooth, report, ms):
    sigma = mask_sigma(ms, strength)
    return core.estimate_mask(model_k, x0, sigma, source_args, edit_args, report, n=n, seed=seed, tau=tau,
                              smooth=smooth, clamp_ratio=D["mask_clamp_ratio"], param=kind)


def check_strength(strength):
    if not (0.0 < strength <= 1.0):
        raise ValueError(f"mask_strength must be in (0, 1]; got {strength}")


# ----------------------------------------------------------------------------------------------
# Inputs shared by the nodes
# ----------------------------------------------------------------------------------------------

def _cond_inputs(source=True):
    ins = []
    if source:
        ins += [io.Conditioning.Input("source_positive", tooltip=TIPS["source_positive"]),
                io.Conditioning.Input("source_negative", tooltip=TIPS["source_negative"])]
    return ins + [io.Conditioning.Input("edit_positive", tooltip=TIPS["edit_positive"]),
                  io.Conditioning.Input("edit_negative", tooltip=TIPS["edit_negative"])]


def _seed():
    return io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip=TIPS["seed"])


def _schedule_inputs():
    return [io.Int.Input("steps", default=D["steps"], min=1, max=1000, tooltip=TIPS["steps"]),
            io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01, tooltip=TIPS["cfg"]),
            io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="normal", tooltip=TIPS["scheduler"])]


def _opt_inputs():
    return [io.Int.Input("t_u", default=D["t_u"], min=0, max=1000, tooltip=TIPS["t_u"]),
            io.Int.Input("k", default=D["k"], min=1, max=100, tooltip=TIPS["k"]),
            io.Float.Input("lr", default=D["lr"], min=0.0001, max=10.0, step=0.001, round=0.0001, tooltip=TIPS["lr"])]


def _mask_inputs():
    return [io.Int.Input("mask_seeds", default=D["mask_seeds"], min=1, max=100,
                         tooltip="Number n of noise draws averaged (Eq. 7; DiffEdit's 10). Raising it gives a steadier mask "
                                 "at 2 model calls per draw."),
            io.Float.Input("mask_strength", default=D["mask_strength"], min=0.01, max=1.0, step=0.01,
                           tooltip="Noise level the noise predictions are compared at, as a denoise strength (DiffEdit's "
                                   "0.5). Raising it compares noisier latents: coarser, larger masks."),
            io.Float.Input("threshold", default=D["tau"], min=0.0, max=0.99, step=0.01,
                           tooltip="Threshold tau on the normalised, smoothed difference map (paper: 0.1). Raising it "
                                   "gives a tighter mask (less is edited)."),
            io.Float.Input("smoothing", default=D["mask_smooth"], min=0.0, max=16.0, step=0.1,
                           tooltip="Gaussian smoothing sigma in latent pixels (8 image pixels each) before the threshold. "
                                   "Raising it gives rounder, slightly larger masks.")]


# ----------------------------------------------------------------------------------------------
# Nodes
# ----------------------------------------------------------------------------------------------

class PixelsITOEditMask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsITOEditMask",
            display_name="PIXELS ITO Edit Mask",
            category=CATEGORY,
            description="Stage 1 of ITO (Fig. 1): estimates where the edit conditioning changes the image, DiffEdit-style "
                        "(Eq. 7): mean |noise(edit) - noise(source)| over several noise draws, smoothed and thresholded. "
                        "White = edit region. Inspect or paint over it before the sampler.",
            inputs=[io.Model.Input("model", tooltip=TIPS["model"]), *_cond_inputs(),
                    io.Latent.Input("latent", tooltip=TIPS["latent"]), *_mask_inputs(),
                    io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                                   tooltip="CFG of both noise predictions (DiffEdit uses 7.5). Raising it amplifies the "
                                           "difference between the conditions."),
                    _seed()],
            outputs=[io.Mask.Output(display_name="mask"), io.Mask.Output(display_name="heatmap")],
        )

    @classmethod
    def execute(cls, model, source_positive, source_negative, edit_positive, edit_negative, latent, mask_seeds,
                mask_strength, threshold, smoothing, cfg, seed) -> io.NodeOutput:
        check_strength(mask_strength)
        samples = source_latent(model, latent)
        ms = model.get_model_object("model_sampling")
        report = progress(model, mask_seeds)
        result = {}

        def fn(model_k, x0, noise, sigmas, extra_args, kind):
            result["mask"] = estimate_mask_in(model_k, x0, branch_args(extra_args, "edit"),
                                              branch_args(extra_args, "source"), kind, strength=mask_strength,
                                              n=mask_seeds, seed=seed, tau=threshold, smooth=smoothing, report=report, ms=ms)
            return x0

        sigma = mask_sigma(ms, mask_strength)
        run_session(model, dict(edit_positive=edit_positive, edit_negative=edit_negative, source_positive=source_positive,
                                source_negative=source_negative), cfg, samples, torch.tensor([sigma, 0.0]), seed, fn)
        binary, soft = result["mask"]
        size = (samples.shape[-2] * 8, samples.shape[-1] * 8)
        return io.NodeOutput(mask_to_image_size(binary, size), mask_to_image_size(soft, size, "bilinear"))


class PixelsITOGuidanceImage(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsITOGuidanceImage",
            display_name="PIXELS ITO Guidance Image",
            category=CATEGORY,
            description="Stage 2 of ITO (Fig. 1a): the guidance image. The source is encoded with random noise (SDEdit) "
                        "instead of DDIM inversion, which allows larger changes, and decoded with the edit conditioning "
                        "while the preservation loss (lambda = 1) keeps the source outside the mask for the first t_u "
                        "steps. Connect its latent to the sampler's guidance input (VAE Decode it to look at it).",
            inputs=[io.Model.Input("model", tooltip=TIPS["model"]), *_cond_inputs(source=False),
                    io.Latent.Input("latent", tooltip=TIPS["latent"]),
                    io.Mask.Input("mask", optional=True, tooltip="Edit mask (white = edit region), e.g. from PIXELS ITO Edit "
                                  "Mask. Any size: fitted to the latent (centre crop to its aspect ratio, logged, then resize). Without it the latent's noise_mask is used, "
                                  "else the whole image is preserved (Eq. 3)."),
                    *_opt_inputs(), *_schedule_inputs(),
                    io.Float.Input("encode_ratio", default=D["encode_ratio"], min=0.01, max=1.0, step=0.01,
                                   tooltip=TIPS["encode_ratio"]),
                    _seed()],
            outputs=[io.Latent.Output(display_name="guidance")],
        )

    @classmethod
    def execute(cls, model, edit_positive, edit_negative, latent, t_u, k, lr, steps, cfg, scheduler, encode_ratio, seed,
                mask=None) -> io.NodeOutput:
        samples = source_latent(model, latent)
        sigmas = core.encode_steps(full_sigmas(model, scheduler, steps), encode_ratio)
        run = len(sigmas) - 1
        core.check_params(1.0, t_u, k, lr, run, False)
        m = mask_for(mask, latent, samples)
        noise = comfy.sample.prepare_noise(samples, seed)
        report = progress(model, run)

        def fn(model_k, x0, noise, sigmas, extra_args, kind):
            mm = None if m is None else m.to(x0.device)
            return core.generate_guidance(model_k, x0, sigmas, noise, branch_args(extra_args, "edit"), report, mask=mm,
                                          t_u=t_u, k=k, lr=lr, param=kind)

        out = run_session(model, dict(edit_positive=edit_positive, edit_negative=edit_negative), cfg, samples, sigmas,
                          seed, fn, noise=noise)
        return io.NodeOutput({"samples": out})


def _edit_fn(*, m, guidance, lam, t_u, k, lr, inversion_cfg, refine, report):
    def fn(model_k, x0, noise, sigmas, extra_args, kind):
        base = model_k.inner_model.inner_model
        g0 = None
        if guidance is not None:
            g0 = base.process_latent_in(guidance.to(x0.device, x0.dtype))
        mm = None if m is None else m.to(x0.device)
        return core.edit(model_k, x0, sigmas, branch_args(extra_args, "source", inversion_cfg),
                         branch_args(extra_args, "edit"), report, mask=mm, guidance=g0, lam=lam, t_u=t_u, k=k, lr=lr,
                         param=kind, fixed_point_iters=refine,
                         guidance_args=branch_args(extra_args, "edit", inversion_cfg))
    return fn


INVERSION_CFG_TIP = ("CFG used while DDIM-inverting the source (with the source conditioning) and the guidance image "
                     "(with the edit conditioning). 1.0 (no CFG) inverts most faithfully (DiffEdit's choice); raising "
                     "it follows the conditioning during inversion but reconstructs less exactly.")


class PixelsITOSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsITOSampler",
            display_name="PIXELS ITO Sampler",
            category=CATEGORY,
            description="Stage 3 of ITO (Fig. 1b), the optimising KSampler: DDIM-inverts the source with the source "
                        "conditioning, decodes with the edit conditioning, and for the first t_u steps applies k Adam "
                        "steps to the latent on (1 - lambda) L_G + lambda L_REC: L_REC keeps the source trajectory "
                        "outside the mask, L_G = 1 - cos pulls towards the guidance image's trajectory. The losses are "
                        "on latents only (no backpropagation through the model).",
            inputs=[io.Model.Input("model", tooltip=TIPS["model"]), *_cond_inputs(),
                    io.Latent.Input("latent", tooltip=TIPS["latent"]),
                    io.Mask.Input("mask", optional=True, tooltip="Edit mask (white = edit region, preserved elsewhere), e.g. "
                                  "from PIXELS ITO Edit Mask. Any size: fitted to the latent (centre crop to its aspect ratio, logged, then resize). Without it the "
                                  "latent's noise_mask is used, else the whole image is preserved (Eq. 3)."),
                    io.Latent.Input("guidance", optional=True, tooltip="Guidance image latent from PIXELS ITO Guidance Image "
                                    "(or VAE Encode of any image of the source's size). Needed when lambda < 1."),
                    io.Float.Input("lam", display_name="lambda", default=D["lam"], min=0.0, max=1.0, step=0.01,
                                   tooltip="Balance lambda of Eq. 6 (paper: 0.6). Raising it preserves more of the source "
                                           "(1 = preservation only, no guidance image needed); lowering it follows the "
                                           "guidance image more (0 = guidance only)."),
                    *_opt_inputs(), *_schedule_inputs(), _seed(),
                    io.Float.Input("encode_ratio", default=D["encode_ratio"], min=0.01, max=1.0, step=0.01,
                                   tooltip=TIPS["encode_ratio"]),
                    io.Float.Input("inversion_cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                                   tooltip=INVERSION_CFG_TIP),
                    io.Int.Input("inversion_refine", default=0, min=0, max=20,
                                 tooltip="Fixed-point refinements per inversion step (0 = plain DDIM inversion, the paper's). "
                                         "Raising it makes the inversion reconstruct the source more exactly, at one extra "
                                         "model call per step each.")],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, model, source_positive, source_negative, edit_positive, edit_negative, latent, lam, t_u, k, lr,
                steps, cfg, scheduler, seed, encode_ratio, inversion_cfg, inversion_refine, mask=None,
                guidance=None) -> io.NodeOutput:
        samples = source_latent(model, latent)
        sigmas = core.encode_steps(full_sigmas(model, scheduler, steps), encode_ratio)
        run = len(sigmas) - 1
        core.check_params(lam, t_u, k, lr, run, guidance is not None)
        g = None
        if guidance is not None and lam < 1.0:
            g = source_latent(model, guidance, "guidance")
            if g.shape[1:] != samples.shape[1:]:
                raise ValueError(f"guidance: its latent is {g.shape[-1]}x{g.shape[-2]} cells with {g.shape[1]} "
                                 f"channels but the source latent is {samples.shape[-1]}x{samples.shape[-2]} cells with "
                                 f"{samples.shape[1]}: make the guidance image from this source (PIXELS ITO Guidance "
                                 "Image) or scale it to the source size before VAE Encode")
        m = mask_for(mask, latent, samples)
        report = progress(model, core.edit_steps(run, g is not None))
        fn = _edit_fn(m=m, guidance=g, lam=lam, t_u=t_u, k=k, lr=lr, inversion_cfg=inversion_cfg,
                      refine=inversion_refine, report=report)
        out = run_session(model, dict(edit_positive=edit_positive, edit_negative=edit_negative,
                                      source_positive=source_positive, source_negative=source_negative),
                          cfg, samples, sigmas, seed, fn)
        return io.NodeOutput({"samples": out})


class PixelsITOEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsITOEdit",
            display_name="PIXELS ITO Edit (all-in-one)",
            category=CATEGORY,
            description="ITO's simple mode in one box (paper Sec. 3.2, 'lambda = 1'): estimates the edit mask (unless one "
                        "is given), DDIM-inverts the source and decodes it with the edit conditioning while the "
                        "preservation loss keeps everything outside the mask. No guidance image. Close to DiffEdit, "
                        "with the mask applied as a loss instead of a hard blend.",
            inputs=[io.Model.Input("model", tooltip=TIPS["model"]), *_cond_inputs(),
                    io.Vae.Input("vae", tooltip="VAE of the model: encodes the source image and decodes the result."),
                    io.Image.Input("image", tooltip="The source image to edit."),
                    *_schedule_inputs(), _seed(), *_opt_inputs(), *_mask_inputs(),
                    io.Mask.Input("mask", optional=True, tooltip="Edit mask (white = edit region). If connected, the mask "
                                  "estimate is skipped. Any size: fitted to the latent (centre crop to its aspect ratio, logged, then resize).")],
            outputs=[io.Image.Output(display_name="image"), io.Latent.Output(display_name="latent"),
                     io.Mask.Output(display_name="mask")],
        )

    @classmethod
    def execute(cls, model, source_positive, source_negative, edit_positive, edit_negative, vae, image, steps, cfg,
                scheduler, seed, t_u, k, lr, mask_seeds, mask_strength, threshold, smoothing, mask=None) -> io.NodeOutput:
        check_strength(mask_strength)
        sigmas = full_sigmas(model, scheduler, steps)
        core.check_params(1.0, t_u, k, lr, steps, False)
        check_image(image, "image", vae)
        samples = check_latent(model, comfy.sample.fix_empty_latent_channels(model, vae.encode(image[..., :3])),
                               "vae (the image it encodes)")
        m = mask_for(mask, None, samples)
        ms = model.get_model_object("model_sampling")
        n_mask = 0 if m is not None else mask_seeds
        report = progress(model, n_mask + core.edit_steps(steps, False))
        shifted = lambda d: report({**d, "i": d["i"] + n_mask})  # noqa: E731
        found = {}

        def fn(model_k, x0, noise, sigmas, extra_args, kind):
            mm = m
            if mm is None:
                mm, _ = estimate_mask_in(model_k, x0, branch_args(extra_args, "edit"), branch_args(extra_args, "source"),
                                         kind, strength=mask_strength, n=mask_seeds, seed=seed, tau=threshold,
                                         smooth=smoothing, report=report, ms=ms)
            found["mask"] = mm
            return _edit_fn(m=mm.to(x0.device), guidance=None, lam=1.0, t_u=t_u, k=k, lr=lr, inversion_cfg=1.0, refine=0,
                            report=shifted)(model_k, x0, noise, sigmas, extra_args, kind)

        out = run_session(model, dict(edit_positive=edit_positive, edit_negative=edit_negative,
                                      source_positive=source_positive, source_negative=source_negative),
                          cfg, samples, sigmas, seed, fn)
        out_mask = mask_to_image_size(found["mask"].float().cpu(), image.shape[1:3])
        return io.NodeOutput(vae.decode(out), {"samples": out}, out_mask)


NODES = [PixelsITOEditMask, PixelsITOGuidanceImage, PixelsITOSampler, PixelsITOEdit]
