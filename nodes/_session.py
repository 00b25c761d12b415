"""The host side every method shares: one ComfyUI sampling session, progress with previews and cancel, routing of
model calls to conditioning branches, and the inputs (with tooltips) that several nodes have.

A *branch* is one conditioning pair with its CFG scale: ITO has ``edit`` and ``source``, OIG ``target`` and
``source``, sync-SDE ``target`` and ``source``. :class:`BranchGuider` holds them all in one ComfyUI guider (so the
host prepares ControlNets, hooks and area conds for every branch as it does for KSampler), and a model call picks its
branch, and optionally its CFG scale, through ``extra_args["model_options"]`` (:func:`branch_args`).
"""
from __future__ import annotations

import torch
from comfy_api.latest import io

import comfy.model_management
import comfy.model_sampling
import comfy.samplers
import comfy.utils
import latent_preview

BRANCH = "pixels_branch"  # model_options key: the conditioning branch of a model call
CFG = "pixels_cfg"  # model_options key: the CFG scale of that call (e.g. inversion runs at its own scale)
SEED_MAX = 0xFFFFFFFFFFFFFFFF


def param_kind(model) -> str:
    """``"flow"`` for rectified-flow (CONST) models, else ``"eps"`` (ComfyUI's VE sigma form covers eps, v and EDM)."""
    return "flow" if isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.CONST) else "eps"


def branch_args(extra_args: dict, branch: str, cfg: float | None = None) -> dict:
    """A copy of ``extra_args`` whose model calls use the ``branch`` conditioning (and CFG ``cfg`` if given)."""
    options = dict(extra_args.get("model_options") or {})
    options[BRANCH] = branch
    if cfg is not None:
        options[CFG] = float(cfg)
    return {**extra_args, "model_options": options}


class BranchGuider(comfy.samplers.CFGGuider):
    """A CFG guider holding named conditioning branches. The main branch uses the host's ``positive``/``negative``
    keys (so any ordinary sampler sees a plain CFG guider on it); the others are stored as ``<name>_positive`` and
    ``<name>_negative`` and marked with their prompt type, so models that treat negatives specially still do."""

    main = "target"

    def set_branches(self, main: str, branches: dict, cfg: float) -> None:
        """``branches``: ``{name: (positive, negative or None, cfg or None)}``; the main branch's CFG is ``cfg``."""
        self.main = main
        self.branch_cfg, conds = {}, {}
        for name, (positive, negative, scale) in branches.items():
            self.branch_cfg[name] = scale
            pos_key, neg_key = self.keys(name)
            conds[pos_key] = positive
            if negative is not None:
                conds[neg_key] = negative
        self.inner_set_conds(conds)
        for name in branches:
            if name != main:
                for kind, key in zip(("positive", "negative"), self.keys(name)):
                    for c in self.original_conds.get(key, []):
                        c.setdefault("prompt_type", kind)
        self.set_cfg(cfg)

    def keys(self, name: str) -> tuple[str, str]:
        return ("positive", "negative") if name == self.main else (f"{name}_positive", f"{name}_negative")

    def branch(self, name: str) -> tuple:
        """``(positive, negative)`` processed conds of branch ``name`` (negative may be None)."""
        pos_key, neg_key = self.keys(name)
        return self.conds.get(pos_key), self.conds.get(neg_key)

    def cfg_of(self, name: str, model_options: dict | None = None) -> float:
        if model_options and CFG in model_options:
            return float(model_options[CFG])
        scale = self.branch_cfg.get(name) if name != self.main else None
        return float(self.cfg if scale is None else scale)

    def predict_branch(self, name: str, x, timestep, model_options={}, seed=None):
        """The CFG prediction of branch ``name`` at ``x`` (the host's own ``sampling_function``)."""
        pos, neg = self.branch(name)
        return comfy.samplers.sampling_function(self.inner_model, x, timestep, neg, pos,
                                                self.cfg_of(name, model_options), model_options=model_options,
                                                seed=seed)

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        return self.predict_branch(model_options.get(BRANCH, self.main), x, timestep, model_options, seed)


# ----------------------------------------------------------------------------------------------
# The session, progress and cancel
# ----------------------------------------------------------------------------------------------

def preview(model, total: int):
    """A host sampling callback ``(step, x0, x, total)``: progress bar, latent previews, and cancel (raises when the
    user interrupts, between any two model calls that report)."""
    show = latent_preview.prepare_callback(model, total)

    def callback(step, x0, x, total_steps):
        comfy.model_management.throw_exception_if_processing_interrupted()
        show(step, x0, x, total_steps)
    return callback


def progress(model, total: int):
    """The same for the core's k-diffusion callbacks (``{"i", "x", "denoised", ...}``), step ``i`` of ``total``."""
    show = preview(model, total)
    return lambda d: show(min(int(d["i"]), total - 1), d["denoised"], d["x"], total)


def schedule(model, scheduler: str, steps: int, denoise: float = 1.0) -> torch.Tensor:
    """The sigmas of the last ``steps`` steps of a ``steps / denoise`` schedule (as BasicScheduler), on the CPU."""
    total = max(steps, int(steps / denoise)) if denoise < 1.0 else steps
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, total)
    return sigmas.cpu().float()[-(steps + 1):]


def sample(guider, noise, latent, sampler, sigmas, *, seed, callback=None, denoise_mask=None) -> torch.Tensor:
    """SamplerCustomAdvanced's sampling call, for nodes that run a whole edit: the host's progress bar setting, the
    result on the intermediate device."""
    out = guider.sample(noise, latent, sampler, sigmas, denoise_mask=denoise_mask, callback=callback,
                        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    return out.to(comfy.model_management.intermediate_device())


def run(guider, latent: torch.Tensor, sigmas: torch.Tensor, seed: int, fn, noise: torch.Tensor | None = None):
    """Run ``fn(model_k, x0, noise, sigmas, extra_args, kind)`` inside one host sampling session of ``guider`` (the
    host loads the model, prepares every branch's conds and maps latents in and out) and return its latent in the
    user's latent space. ``x0``/``noise`` arrive on the model's device in model space; ``kind`` is ``"eps"`` or
    ``"flow"``."""
    kind = param_kind(guider.model_patcher)

    def method(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        return fn(model_k, model_k.latent_image, model_k.noise, sigmas, dict(extra_args or {}), kind)

    noise = torch.zeros_like(latent) if noise is None else noise
    out = guider.sample(noise, latent, comfy.samplers.KSAMPLER(method), sigmas, denoise_mask=None, callback=None,
                        disable_pbar=True, seed=seed)
    return out.to(comfy.model_management.intermediate_device())


# ----------------------------------------------------------------------------------------------
# Inputs several nodes share
# ----------------------------------------------------------------------------------------------

def seed_input(tooltip: str, name: str = "seed"):
    return io.Int.Input(name, default=0, min=0, max=SEED_MAX, control_after_generate=True, tooltip=tooltip)


def cfg_input(tooltip: str, default: float, name: str = "cfg", step: float = 0.1):
    return io.Float.Input(name, default=default, min=0.0, max=100.0, step=step, round=0.01, tooltip=tooltip)


def scheduler_input(tooltip: str, default: str = "normal"):
    return io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default=default, tooltip=tooltip)


def steps_input(tooltip: str, default: int, max: int = 10000):
    return io.Int.Input("steps", default=default, min=1, max=max, tooltip=tooltip)


def choice(name: str, value, options) -> None:
    """A clear error when a combo value (e.g. from an edited API workflow) is not one of ``options``."""
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")


def validate(cls, rule, **values) -> bool | str:
    """The body of a node's ``validate_inputs``: ``True``, or the message of ``rule(**values)``'s ValueError, so a
    bad combination of widgets is refused when the prompt is queued, before anything runs.

    ComfyUI skips its own min/max check for every input a node validates itself, so the schema's limits are checked
    here first. A value that is None (an input fed by a link, known only at run time) skips the rule; the node's
    ``execute`` checks it again then."""
    limits = {i.id: i for i in cls.define_schema().inputs}
    for name, value in values.items():
        inp = limits.get(name)
        if value is None or inp is None:
            continue
        lo, hi = getattr(inp, "min", None), getattr(inp, "max", None)
        if lo is not None and value < lo:
            return f"{name} is {value}, below its minimum {lo}"
        if hi is not None and value > hi:
            return f"{name} is {value}, above its maximum {hi}"
    if any(v is None for v in values.values()):
        return True
    try:
        rule(**values)
    except ValueError as e:
        return str(e)
    return True
