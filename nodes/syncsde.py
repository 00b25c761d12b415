"""sync-SDE coupled editing nodes ("Semantic Editing with Coupled Stochastic Differential Equations", Jianxin Zhang and
Clayton Scott, arXiv:2509.24223): thin wrappers over pixels_core.syncsde.

PIXELS Sync-SDE Guider: source and target conditioning (positive/negative each) with separate CFG, both predictions
of a step in one batched model call (nodes/_syncsde.py). PIXELS Sync-SDE Sampler: the coupled sampler for
SamplerCustomAdvanced. PIXELS Sync-SDE Edit: all-in-one.
"""
from __future__ import annotations

import torch
from comfy_api.latest import io

import comfy.sample
import comfy.samplers

from ..pixels_core import syncsde as core
from ..pixels_core.masks import check_values
from . import _session as session
from ._common import check_latent
from ._syncsde import make_guider

CATEGORY = "PIXELS/sync-SDE editing"

CFG_TIP = ("Classifier-free guidance for the {side} prediction (1 = no CFG, the authors' demo value on Flux, whose "
           "guidance is distilled). Non-distilled models (SD1.5, SDXL, SD3) want more, e.g. FlowEdit's source 1.5 / "
           "target 5.5. Raising it {effect}.")
START_TIP = ("Step of the schedule where the edit starts (the authors' demo: 4 of 28, sigma ~ 0.95 on Flux/SD3). "
             "Raising it starts later, at less noise: more of the source's structure is kept, smaller edits; "
             "lowering it allows bigger structural edits (0 is not allowed for flow models: sigma 1 is singular).")
START_SIGMA_TIP = ("If > 0, overrides start_step: the edit starts at the first step whose sigma is at most this value "
                   "(flow models: 0..1; SD1.x/SDXL: 0..~14.6). 0 = use start_step.")
RESAMPLE_TIP = ("Draw a fresh source noise every step instead of one shared Brownian path (the authors' "
                "'resample the reference process', FlowEdit-like). Off (paper default) gives the tightest coupling.")
INTEGRATORS = {"euler (authors)": "euler", "exponential (exact linear part)": "exponential"}
INTEGRATOR_DEFAULT = "euler (authors)"
INTEGRATOR_TIP = ("How each step advances the edit. 'euler (authors)': the paper's Euler step on the drift difference "
                  "(default, exactly the authors' code). 'exponential (exact linear part)': beyond the paper, solves the "
                  "step exactly for the prediction difference held fixed over the step, so a model that predicts the "
                  "target exactly lands on it (Euler misses by ~7e-4 of the edit on SD1.x at 20 steps); same cost.")
MASK_NOTE = ("A latent noise mask (Set Latent Noise Mask; 1 = may change) confines the edit to the mask; a grey level "
             "means a proportional edit (the edit runs wherever the mask is above 0, and the output keeps the mask's "
             "fraction of it: 0.5 = half the edit).")
NOISE_MASK_NAME = "latent noise_mask (Set Latent Noise Mask)"


def integrator_name(label: str) -> str:
    """The core integrator (``"euler"``/``"exponential"``) of a combo label (the core names are accepted too)."""
    if label in INTEGRATORS:
        return INTEGRATORS[label]
    if label in INTEGRATORS.values():
        return label
    raise ValueError(f"integrator: unknown option {label!r}; choose one of {list(INTEGRATORS)}")


def make_sampler(start_step: int = core.DEMO_START_INDEX, start_sigma: float = 0.0, resample: bool = False,
                 integrator: str = "euler", latent_name: str = "latent_image"):
    """A ComfyUI SAMPLER (KSAMPLER) running pixels_core.syncsde.sample_syncsde with the SyncSDEGuider.
    ``latent_name``: the input that carries the source latent, for error messages."""
    integrator = integrator_name(integrator)

    def syncsde_sampler(model, x, sigmas, extra_args=None, callback=None, disable=None):
        guider = getattr(model, "inner_model", None)  # KSamplerX0Inpaint -> guider
        if not getattr(guider, "is_syncsde_guider", False):
            raise ValueError("PIXELS Sync-SDE Sampler needs the PIXELS Sync-SDE Guider on SamplerCustomAdvanced's "
                             "guider input (it supplies the source and target conditioning)")
        source = model.latent_image  # finite: the guider checked it (check_latent) before sampling began
        if source is None or torch.count_nonzero(source) == 0:
            raise ValueError(f"{latent_name}: the source latent is empty (all zeros). sync-SDE edits an existing "
                             "image: connect VAE Encode of the source image")
        kind = session.param_kind(guider.model_patcher)
        extra = dict(extra_args or {})
        mask = extra.get("denoise_mask")
        if mask is not None:
            check_values(mask, NOISE_MASK_NAME)
        extra["denoise_mask"] = None  # the pair applies the mask itself (KSamplerX0Inpaint would mix batch sizes)
        seed = int(extra.get("seed") or 0)
        return core.sample_syncsde(model, x, sigmas, extra, callback, disable, source=source, kind=kind,
                                   start_index=start_step, start_sigma=start_sigma if start_sigma > 0 else None,
                                   resample=resample, seed=seed, mask=mask, integrator=integrator)

    return comfy.samplers.KSAMPLER(syncsde_sampler)


def _cond_inputs():
    return [
        io.Conditioning.Input("source_positive", tooltip="Prompt describing the source image as it is (the authors "
                              "stress detailed, comparable source and target prompts)."),
        io.Conditioning.Input("source_negative", tooltip="Negative prompt of the source side (used when source_cfg != 1)."),
        io.Conditioning.Input("target_positive", tooltip="Prompt describing the edited image: the source prompt with "
                              "only the words you want changed."),
        io.Conditioning.Input("target_negative", tooltip="Negative prompt of the target side (used when target_cfg != 1)."),
        session.cfg_input(CFG_TIP.format(side="source", effect="makes the reference prediction follow the source "
                                         "prompt more strongly"), 1.0, name="source_cfg", step=0.05),
        session.cfg_input(CFG_TIP.format(side="target", effect="pushes the edit harder toward the target prompt "
                                         "(stronger, less faithful edits)"), 1.0, name="target_cfg", step=0.05),
    ]


def _sampler_inputs():
    return [
        io.Int.Input("start_step", default=core.DEMO_START_INDEX, min=0, max=10000, tooltip=START_TIP),
        io.Float.Input("start_sigma", default=0.0, min=0.0, max=1000.0, step=0.01, tooltip=START_SIGMA_TIP),
        io.Boolean.Input("resample", default=False, tooltip=RESAMPLE_TIP),
    ]


def _integrator_input():
    # optional: saved API workflows from before this input still validate (execute's default is the authors')
    return io.Combo.Input("integrator", options=list(INTEGRATORS), default=INTEGRATOR_DEFAULT, optional=True,
                          tooltip=INTEGRATOR_TIP)


class PixelsSyncSDEGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsSyncSDEGuider",
            display_name="PIXELS Sync-SDE Guider",
            category=CATEGORY,
            description="Source and target conditioning for sync-SDE editing, with separate CFG. Both predictions run in "
                        "one batched model call per step. Use with PIXELS Sync-SDE Sampler in SamplerCustomAdvanced.",
            inputs=[io.Model.Input("model", tooltip="Diffusion model: flow models (SD3, Flux) or SD1.x/SD2/SDXL.")]
            + _cond_inputs(),
            outputs=[io.Guider.Output()],
        )

    @classmethod
    def execute(cls, model, source_positive, source_negative, target_positive, target_negative, source_cfg,
                target_cfg) -> io.NodeOutput:
        return io.NodeOutput(make_guider(model, source_positive, source_negative, target_positive, target_negative,
                                         source_cfg, target_cfg))


class PixelsSyncSDESampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsSyncSDESampler",
            display_name="PIXELS Sync-SDE Sampler",
            category=CATEGORY,
            description="Coupled-SDE (sync-SDE) editing sampler for SamplerCustomAdvanced: one shared Brownian path drives "
                        "the source and the edit, so only what the prompt change asks for changes. Needs PIXELS Sync-SDE "
                        "Guider, the source latent (VAE Encode) as latent_image, and a full schedule ending at 0 (e.g. "
                        "BasicScheduler, 28 steps, denoise 1). The path's seed is the noise node's seed (RandomNoise). "
                        + MASK_NOTE,
            inputs=_sampler_inputs() + [_integrator_input()],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, start_step, start_sigma, resample, integrator=INTEGRATOR_DEFAULT) -> io.NodeOutput:
        return io.NodeOutput(make_sampler(start_step, start_sigma, resample, integrator))


class PixelsSyncSDEEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsSyncSDEEdit",
            display_name="PIXELS Sync-SDE Edit",
            category=CATEGORY,
            description="All-in-one sync-SDE edit: source latent + source and target prompts in, edited latent out "
                        "(with progress and previews). Same maths as Guider + Sampler in SamplerCustomAdvanced. "
                        + MASK_NOTE,
            inputs=[io.Model.Input("model", tooltip="Diffusion model: flow models (SD3, Flux) or SD1.x/SD2/SDXL.")]
            + _cond_inputs() + [
                io.Latent.Input("latent", tooltip="The source latent: VAE Encode of the image to edit. A noise mask "
                                "(Set Latent Noise Mask; 1 = may change) confines the edit to the mask; a grey level "
                                "means a proportional edit."),
                session.seed_input("Seed of the shared Brownian path: same seed, same edit. The authors note that "
                                   "results vary across runs; try a few seeds."),
                session.steps_input("Steps of the full schedule (the demo: 28). More steps integrate the SDE more "
                                    "finely (slower).", core.DEMO_STEPS),
                session.scheduler_input("Sigma schedule of the full run (simple follows the model's own shift: the "
                                        "authors' Flux schedule on flow models).", default="simple"),
            ] + _sampler_inputs() + [_integrator_input()],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def validate_inputs(cls, steps=None, start_step=None):
        return session.validate(cls, lambda steps, start_step: core.resolve_start(
            torch.linspace(10.0, 0.0, steps + 1), start_step), steps=steps, start_step=start_step)

    @classmethod
    def execute(cls, model, source_positive, source_negative, target_positive, target_negative, source_cfg, target_cfg,
                latent, seed, steps, scheduler, start_step, start_sigma, resample,
                integrator=INTEGRATOR_DEFAULT) -> io.NodeOutput:
        src = check_latent(model, comfy.sample.fix_empty_latent_channels(model, latent["samples"]), "latent")
        guider = make_guider(model, source_positive, source_negative, target_positive, target_negative,
                             source_cfg, target_cfg)
        sampler = make_sampler(start_step, start_sigma, resample, integrator, latent_name="latent")
        out = latent.copy()
        out.pop("noise_mask", None)
        out["samples"] = session.sample(guider, torch.zeros_like(src), src, sampler,
                                        session.schedule(model, scheduler, steps), seed=seed,
                                        callback=session.preview(model, steps), denoise_mask=latent.get("noise_mask"))
        return io.NodeOutput(out)


NODES = [PixelsSyncSDEGuider, PixelsSyncSDESampler, PixelsSyncSDEEdit]
