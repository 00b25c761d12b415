"""ITO optimising KSampler nodes ("Optimisation-based multi-modal semantic image editing", anonymous authors, under
double-blind review; Sec. 3.2, Fig. 1): thin wrappers over pixels_core.ito.

The three stages of the paper's Fig. 1 are three nodes (edit mask, guidance image, optimising sampler) plus an
all-in-one node for the simple case (lambda = 1, estimated mask, no guidance image). Each node runs its whole
algorithm inside one ComfyUI sampling session whose guider holds the edit and the source conditioning as two
branches (nodes/_session.py, nodes/_ito.py), so ControlNet-applied conditioning works as anywhere else.
"""
from __future__ import annotations

import torch
from comfy_api.latest import io

import comfy.sample

from ..pixels_core import ito as core
from . import _session as session
from ._common import check_image, decode_frames, latent_ratio
from ._ito import (D, INVERSION_CFG_TIP, TIPS, check_strength, check_widgets, cond_inputs, edit_args,
                   estimate_mask_in, guider, mask_for, mask_inputs, mask_sigma, mask_to_image_size, one_frame,
                   opt_inputs, schedule_inputs, seed_input, source_args, source_latent)

CATEGORY = "PIXELS/ITO"


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
            inputs=[io.Model.Input("model", tooltip=TIPS["model"]), *cond_inputs(),
                    io.Latent.Input("latent", tooltip=TIPS["latent"]), *mask_inputs(),
                    io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                                   tooltip="CFG of both noise predictions (DiffEdit uses 7.5). Raising it amplifies the "
                                           "difference between the conditions."),
                    seed_input(),
                    io.Vae.Input("vae", optional=True,
                                 tooltip="The model's VAE (optional): the masks come out at the image size it decodes "
                                         "to. Without it the size is read off the model's latent format (16 px per "
                                         "latent cell for Flux.2 and Wan 2.2, 8 for the others).")],
            outputs=[io.Mask.Output(display_name="mask"), io.Mask.Output(display_name="heatmap")],
        )

    @classmethod
    def execute(cls, model, source_positive, source_negative, edit_positive, edit_negative, latent, mask_seeds,
                mask_strength, threshold, smoothing, cfg, seed, vae=None) -> io.NodeOutput:
        check_strength(mask_strength)
        samples = source_latent(model, latent)
        ms = model.get_model_object("model_sampling")
        report = session.progress(model, mask_seeds)
        result = {}

        def fn(model_k, x0, noise, sigmas, extra_args, kind):
            result["mask"] = estimate_mask_in(model_k, x0, edit_args(extra_args),
                                              source_args(extra_args), kind, strength=mask_strength,
                                              n=mask_seeds, seed=seed, tau=threshold, smooth=smoothing, report=report, ms=ms)
            return x0

        sigma = mask_sigma(ms, mask_strength)
        session.run(guider(model, cfg, edit_positive, edit_negative, source_positive, source_negative), samples,
                    torch.tensor([sigma, 0.0]), seed, one_frame(fn))
        binary, soft = result["mask"]
        r = latent_ratio(model, vae)
        size = (samples.shape[-2] * r, samples.shape[-1] * r)
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
            inputs=[io.Model.Input("model", tooltip=TIPS["model"]), *cond_inputs(source=False),
                    io.Latent.Input("latent", tooltip=TIPS["latent"]),
                    io.Mask.Input("mask", optional=True, tooltip="Edit mask (white = edit region), e.g. from PIXELS ITO Edit "
                                  "Mask. Any size: fitted to the latent (centre crop to its aspect ratio, logged, then resize). Without it the latent's noise_mask is used, "
                                  "else the whole image is preserved (Eq. 3)."),
                    *opt_inputs(), *schedule_inputs(),
                    io.Float.Input("encode_ratio", default=D["encode_ratio"], min=0.01, max=1.0, step=0.01,
                                   tooltip=TIPS["encode_ratio"]),
                    seed_input()],
            outputs=[io.Latent.Output(display_name="guidance")],
        )

    @classmethod
    def validate_inputs(cls, t_u=None, k=None, lr=None, steps=None, encode_ratio=None):
        return session.validate(cls, check_widgets, t_u=t_u, k=k, lr=lr, steps=steps, encode_ratio=encode_ratio)

    @classmethod
    def execute(cls, model, edit_positive, edit_negative, latent, t_u, k, lr, steps, cfg, scheduler, encode_ratio, seed,
                mask=None) -> io.NodeOutput:
        samples = source_latent(model, latent)
        sigmas = core.encode_steps(session.schedule(model, scheduler, steps), encode_ratio)
        run = len(sigmas) - 1
        core.check_params(1.0, t_u, k, lr, run, False)
        m = mask_for(mask, latent, samples)
        noise = comfy.sample.prepare_noise(samples, seed)
        report = session.progress(model, run)

        def fn(model_k, x0, noise, sigmas, extra_args, kind):
            mm = None if m is None else m.to(x0.device)
            return core.generate_guidance(model_k, x0, sigmas, noise, edit_args(extra_args), report, mask=mm,
                                          t_u=t_u, k=k, lr=lr, param=kind)

        out = session.run(guider(model, cfg, edit_positive, edit_negative), samples, sigmas, seed, one_frame(fn),
                          noise=noise)
        return io.NodeOutput({"samples": out})


def _edit_fn(*, m, guidance, lam, t_u, k, lr, inversion_cfg, refine, report):
    def fn(model_k, x0, noise, sigmas, extra_args, kind):
        base = model_k.inner_model.inner_model
        g0 = None
        if guidance is not None:
            g0 = base.process_latent_in(guidance.to(x0.device, x0.dtype))
            if g0.ndim == x0.ndim + 1:  # a one-frame clip latent, x0 its image (one_frame)
                g0 = g0.squeeze(2)
        mm = None if m is None else m.to(x0.device)
        return core.edit(model_k, x0, sigmas, source_args(extra_args, inversion_cfg),
                         edit_args(extra_args), report, mask=mm, guidance=g0, lam=lam, t_u=t_u, k=k, lr=lr,
                         param=kind, fixed_point_iters=refine,
                         guidance_args=edit_args(extra_args, inversion_cfg))
    return fn


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
            inputs=[io.Model.Input("model", tooltip=TIPS["model"]), *cond_inputs(),
                    io.Latent.Input("latent", tooltip=TIPS["latent"]),
                    io.Mask.Input("mask", optional=True, tooltip="Edit mask (white = edit region, preserved elsewhere), e.g. "
                                  "from PIXELS ITO Edit Mask. Any size: fitted to the latent (centre crop to its aspect ratio, logged, then resize). Without it the "
                                  "latent's noise_mask is used, else the whole image is preserved (Eq. 3)."),
                    io.Latent.Input("guidance", optional=True, lazy=True,
                                    tooltip="Guidance image latent from PIXELS ITO Guidance Image (or VAE Encode of any "
                                            "image of the source's size). Needed when lambda < 1; with lambda = 1 it is "
                                            "not used, and the nodes that make it do not run."),
                    io.Float.Input("lam", display_name="lambda", default=D["lam"], min=0.0, max=1.0, step=0.001,
                                   tooltip="Balance lambda of Eq. 6 (paper: 0.6) between L_REC, the squared error to "
                                           "the source summed over the latent outside the mask, and L_G = 1 - cos to the guidance "
                                           "image. 1 = preservation only (no guidance image needed); 0 = guidance only. "
                                           "Because L_REC is a sum over every latent value, any lambda from about 0.01 "
                                           "up (0.6 included) keeps the background at the source while the edit region "
                                           "follows the guidance image; the balance only turns below about 0.001."),
                    *opt_inputs(), *schedule_inputs(), seed_input(),
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
    def validate_inputs(cls, lam=None, t_u=None, k=None, lr=None, steps=None, encode_ratio=None):
        return session.validate(cls, check_widgets, lam=lam, t_u=t_u, k=k, lr=lr, steps=steps,
                                encode_ratio=encode_ratio)

    @classmethod
    def check_lazy_status(cls, lam=None, **inputs):
        # a linked input not computed yet arrives as None; an unconnected one does not arrive at all
        wanted = "guidance" in inputs and inputs["guidance"] is None and lam is not None and lam < 1.0
        return ["guidance"] if wanted else []

    @classmethod
    def execute(cls, model, source_positive, source_negative, edit_positive, edit_negative, latent, lam, t_u, k, lr,
                steps, cfg, scheduler, seed, encode_ratio, inversion_cfg, inversion_refine, mask=None,
                guidance=None) -> io.NodeOutput:
        samples = source_latent(model, latent)
        sigmas = core.encode_steps(session.schedule(model, scheduler, steps), encode_ratio)
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
        report = session.progress(model, core.edit_steps(run, g is not None))
        fn = _edit_fn(m=m, guidance=g, lam=lam, t_u=t_u, k=k, lr=lr, inversion_cfg=inversion_cfg,
                      refine=inversion_refine, report=report)
        out = session.run(guider(model, cfg, edit_positive, edit_negative, source_positive, source_negative), samples,
                          sigmas, seed, one_frame(fn))
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
            inputs=[io.Model.Input("model", tooltip=TIPS["model"]), *cond_inputs(),
                    io.Vae.Input("vae", tooltip="VAE of the model: encodes the source image and decodes the result."),
                    io.Image.Input("image", tooltip="The source image to edit."),
                    *schedule_inputs(), seed_input(), *opt_inputs(), *mask_inputs(),
                    io.Mask.Input("mask", optional=True, tooltip="Edit mask (white = edit region). If connected, the mask "
                                  "estimate is skipped. Any size: fitted to the latent (centre crop to its aspect ratio, logged, then resize).")],
            outputs=[io.Image.Output(display_name="image"), io.Latent.Output(display_name="latent"),
                     io.Mask.Output(display_name="mask")],
        )

    @classmethod
    def validate_inputs(cls, t_u=None, k=None, lr=None, steps=None):
        return session.validate(cls, check_widgets, t_u=t_u, k=k, lr=lr, steps=steps)

    @classmethod
    def execute(cls, model, source_positive, source_negative, edit_positive, edit_negative, vae, image, steps, cfg,
                scheduler, seed, t_u, k, lr, mask_seeds, mask_strength, threshold, smoothing, mask=None) -> io.NodeOutput:
        check_strength(mask_strength)
        sigmas = session.schedule(model, scheduler, steps)
        core.check_params(1.0, t_u, k, lr, steps, False)
        check_image(image, "image", vae)
        samples = source_latent(model, {"samples": vae.encode(image[..., :3])}, "vae (the image it encodes)")
        m = mask_for(mask, None, samples)
        ms = model.get_model_object("model_sampling")
        n_mask = 0 if m is not None else mask_seeds
        report = session.progress(model, n_mask + core.edit_steps(steps, False))
        shifted = lambda d: report({**d, "i": d["i"] + n_mask})  # noqa: E731
        found = {}

        def fn(model_k, x0, noise, sigmas, extra_args, kind):
            mm = m
            if mm is None:
                mm, _ = estimate_mask_in(model_k, x0, edit_args(extra_args), source_args(extra_args),
                                         kind, strength=mask_strength, n=mask_seeds, seed=seed, tau=threshold,
                                         smooth=smoothing, report=report, ms=ms)
            found["mask"] = mm
            return _edit_fn(m=mm.to(x0.device), guidance=None, lam=1.0, t_u=t_u, k=k, lr=lr, inversion_cfg=1.0, refine=0,
                            report=shifted)(model_k, x0, noise, sigmas, extra_args, kind)

        out = session.run(guider(model, cfg, edit_positive, edit_negative, source_positive, source_negative), samples,
                          sigmas, seed, one_frame(fn))
        out_mask = mask_to_image_size(found["mask"].float().cpu(), image.shape[1:3])
        return io.NodeOutput(decode_frames(vae, out), {"samples": out}, out_mask)


NODES = [PixelsITOEditMask, PixelsITOGuidanceImage, PixelsITOSampler, PixelsITOEdit]
