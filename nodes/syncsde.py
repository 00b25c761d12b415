"""sync-SDE coupled editing nodes ("Semantic Editing with Coupled Stochastic Differential Equations", Jianxin Zhang and
Clayton Scott, arXiv:2509.24223; design.md §3.4): thin wrappers over pixels_core.syncsde.

PIXELS Sync-SDE Guider: source and target conditioning (positive/negative each) with separate CFG; source and
target predictions come from ONE ``calc_cond_batch`` call per step (the two states are stacked along the batch,
the conds are paired row-wise), falling back to two host CFG calls only for conds that cannot be batched
(different areas/masks/ControlNets/hooks on the two sides).
PIXELS Sync-SDE Sampler: the coupled sampler for SamplerCustomAdvanced. PIXELS Sync-SDE Edit: all-in-one.
"""
from __future__ import annotations

import logging
import math

import torch
from comfy_api.latest import io

import comfy.conds
import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import node_helpers

from ..pixels_core import syncsde as core
from ..pixels_core.masks import check_values
from ._common import check_latent

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


# ----------------------------------------------------------------------------------------------
# Pairing ComfyUI conds row-wise so source and target run in one batched model call
# ----------------------------------------------------------------------------------------------

_AREA_KEYS = ("timestep_start", "timestep_end", "area", "strength", "mask", "mask_strength", "hooks", "control",
              "gligen", "default")


class _PairCond:
    """A model cond whose batch of 2h rows is the source cond (h rows) followed by the target cond (h rows)."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def process_cond(self, batch_size, **kwargs):
        h = batch_size // 2
        pa = self.a.process_cond(batch_size=h, **kwargs)
        pb = self.b.process_cond(batch_size=h, **kwargs)
        return pa._copy_with(pa.concat([pb]))


def _same(u, v) -> bool:
    if u is v:
        return True
    if torch.is_tensor(u) or torch.is_tensor(v):
        return torch.is_tensor(u) and torch.is_tensor(v) and u.shape == v.shape and bool(torch.equal(u, v))
    if isinstance(u, (list, tuple)) and isinstance(v, (list, tuple)):
        return len(u) == len(v) and all(_same(x, y) for x, y in zip(u, v))
    if isinstance(u, dict) and isinstance(v, dict):
        return u.keys() == v.keys() and all(_same(u[k], v[k]) for k in u)
    try:
        return bool(u == v)
    except Exception:
        return False


def _pairable(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, comfy.conds.CONDConstant):
        return _same(a.cond, b.cond)
    if isinstance(a, comfy.conds.CONDList):
        return len(a.cond) == len(b.cond) and all(x.shape[1:] == y.shape[1:] for x, y in zip(a.cond, b.cond))
    if isinstance(a, comfy.conds.CONDCrossAttn):
        s1, s2 = a.cond.shape, b.cond.shape
        return (len(s1) == len(s2) == 3 and s1[2] == s2[2]
                and math.lcm(s1[1], s2[1]) // min(s1[1], s2[1]) <= 4)
    if type(a) in (comfy.conds.CONDRegular, comfy.conds.CONDNoiseShape):
        return a.cond.shape[1:] == b.cond.shape[1:]
    return False


def pair_conds(src, tgt):
    """Row-wise pairing of two processed cond lists (entry by entry), or None when they cannot be batched."""
    if src is None or tgt is None or len(src) != len(tgt) or len(src) == 0:
        return None
    out = []
    for a, b in zip(src, tgt):
        if any(k in a or k in b for k in ("hooks", "default", "gligen")):
            return None
        if not all(_same(a.get(k), b.get(k)) for k in _AREA_KEYS):
            return None
        ma, mb = a.get("model_conds", {}), b.get("model_conds", {})
        if ma.keys() != mb.keys() or not all(_pairable(ma[k], mb[k]) for k in ma):
            return None
        entry = dict(a)
        entry["model_conds"] = {k: _PairCond(ma[k], mb[k]) for k in ma}
        out.append(entry)
    return out


def _cond_batch(cond) -> int:
    t = cond[0][0] if cond and cond[0] else None
    return int(t.shape[0]) if torch.is_tensor(t) and t.ndim > 0 else 1


class SyncSDEGuider(comfy.samplers.CFGGuider):
    """GUIDER for the sync-SDE sampler: given the stacked states ``cat([X_src, X_tgt])`` it returns the source
    prediction (source conds, source CFG) and the target prediction (target conds, target CFG), stacked the same
    way. Given a plain batch (another sampler) it acts as a CFG guider on the target conditioning."""

    is_syncsde_guider = True

    def set_sync_conds(self, source_positive, source_negative, target_positive, target_negative):
        self.raw_conds = {"source_positive": source_positive, "source_negative": source_negative,
                          "target_positive": target_positive, "target_negative": target_negative}
        # the host encodes conds by their key: "negative" marks negatives (e.g. SDXL refiner aesthetic score)
        tneg = node_helpers.conditioning_set_values(target_negative, {"prompt_type": "negative"})
        self.inner_set_conds({"positive": source_positive, "negative": source_negative,
                              "target_positive": target_positive, "target_negative": tneg})
        self.identical = _same(source_positive, target_positive) and _same(source_negative, target_negative)
        self._paired_for = None

    def set_sync_cfg(self, source_cfg: float, target_cfg: float):
        self.source_cfg, self.target_cfg = float(source_cfg), float(target_cfg)
        self.cfg = self.target_cfg
        self.identical_cfg = math.isclose(self.source_cfg, self.target_cfg)

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
               seed=None):
        b = int(latent_image.shape[0])
        for name, cond in self.raw_conds.items():
            cb = _cond_batch(cond)
            if cb not in (1, b):
                raise ValueError(f"{name} has batch {cb} but the latent has batch {b}: give one prompt, or one "
                                 f"conditioning per latent image (batch {b})")
        self.latent_batch = b
        check_latent(self.model_patcher, latent_image, "latent_image")
        return super().sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)

    def _paired(self):
        if self._paired_for is not self.conds:
            self._paired_for = self.conds
            self.paired = (pair_conds(self.conds.get("positive"), self.conds.get("target_positive")),
                           pair_conds(self.conds.get("negative"), self.conds.get("target_negative")))
            if self.paired[0] is None or self.paired[1] is None:
                logging.info("PIXELS sync-SDE: source and target conds differ in area/mask/ControlNet/hooks; "
                             "running them as two CFG calls per step")
        return self.paired

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        c = self.conds
        b = getattr(self, "latent_batch", x.shape[0])
        if x.shape[0] != 2 * b:  # used by an ordinary sampler: plain CFG on the target prompt
            return comfy.samplers.sampling_function(self.inner_model, x, timestep, c.get("target_negative"),
                                                    c.get("target_positive"), self.target_cfg, model_options, seed)
        xs, xt, ts, tt = x[:b], x[b:], timestep[:b], timestep[b:]
        if self.identical and self.identical_cfg:  # D stays exactly 0: one half suffices
            out = comfy.samplers.sampling_function(self.inner_model, xs, ts, c.get("negative"), c.get("positive"),
                                                   self.source_cfg, model_options, seed)
            return torch.cat([out, out])
        pos, neg = self._paired()
        custom = any(k in model_options for k in ("sampler_calc_cond_batch_function", "sampler_pre_cfg_function",
                                                  "context_handler"))
        if pos is None or neg is None or custom:
            src = comfy.samplers.sampling_function(self.inner_model, xs, ts, c.get("negative"), c.get("positive"),
                                                   self.source_cfg, model_options, seed)
            tgt = comfy.samplers.sampling_function(self.inner_model, xt, tt, c.get("target_negative"),
                                                   c.get("target_positive"), self.target_cfg, model_options, seed)
            return torch.cat([src, tgt])
        use_neg = model_options.get("disable_cfg1_optimization", False) or not (
            math.isclose(self.source_cfg, 1.0) and math.isclose(self.target_cfg, 1.0))
        cp, cn = comfy.samplers.calc_cond_batch(self.inner_model, [pos, neg if use_neg else None], x, timestep,
                                                model_options)
        src = comfy.samplers.cfg_function(self.inner_model, cp[:b], cn[:b], self.source_cfg, xs, ts, model_options,
                                          cond=c.get("positive"), uncond=c.get("negative") if use_neg else None)
        tgt = comfy.samplers.cfg_function(self.inner_model, cp[b:], cn[b:], self.target_cfg, xt, tt, model_options,
                                          cond=c.get("target_positive"),
                                          uncond=c.get("target_negative") if use_neg else None)
        return torch.cat([src, tgt])


def make_guider(model, source_positive, source_negative, target_positive, target_negative, source_cfg, target_cfg):
    guider = SyncSDEGuider(model)
    guider.set_sync_conds(source_positive, source_negative, target_positive, target_negative)
    guider.set_sync_cfg(source_cfg, target_cfg)
    return guider


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
        ms = guider.inner_model.model_sampling
        kind = "flow" if isinstance(ms, comfy.model_sampling.CONST) else "eps"
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
        io.Float.Input("source_cfg", default=1.0, min=0.0, max=100.0, step=0.05, round=0.01,
                       tooltip=CFG_TIP.format(side="source", effect="makes the reference prediction follow the "
                                              "source prompt more strongly")),
        io.Float.Input("target_cfg", default=1.0, min=0.0, max=100.0, step=0.05, round=0.01,
                       tooltip=CFG_TIP.format(side="target", effect="pushes the edit harder toward the target prompt "
                                              "(stronger, less faithful edits)")),
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
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the shared Brownian path: same seed, same edit. The authors note that "
                                     "results vary across runs; try a few seeds."),
                io.Int.Input("steps", default=core.DEMO_STEPS, min=1, max=10000,
                             tooltip="Steps of the full schedule (the demo: 28). More steps integrate the SDE more "
                                     "finely (slower)."),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="simple",
                               tooltip="Sigma schedule of the full run (simple follows the model's own shift: the "
                                       "authors' Flux schedule on flow models)."),
            ] + _sampler_inputs() + [_integrator_input()],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, model, source_positive, source_negative, target_positive, target_negative, source_cfg, target_cfg,
                latent, seed, steps, scheduler, start_step, start_sigma, resample,
                integrator=INTEGRATOR_DEFAULT) -> io.NodeOutput:
        src = check_latent(model, comfy.sample.fix_empty_latent_channels(model, latent["samples"]), "latent")
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()
        guider = make_guider(model, source_positive, source_negative, target_positive, target_negative,
                             source_cfg, target_cfg)
        callback = latent_preview.prepare_callback(model, steps)
        sampler = make_sampler(start_step, start_sigma, resample, integrator, latent_name="latent")
        samples = guider.sample(torch.zeros_like(src), src, sampler, sigmas,
                                denoise_mask=latent.get("noise_mask"), callback=callback,
                                disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        out = latent.copy()
        out.pop("noise_mask", None)
        out["samples"] = samples.to(comfy.model_management.intermediate_device())
        return io.NodeOutput(out)


NODES = [PixelsSyncSDEGuider, PixelsSyncSDESampler, PixelsSyncSDEEdit]
