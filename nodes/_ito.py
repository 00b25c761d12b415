"""ITO host helpers: tooltips, the inputs the ITO nodes share, and the source latent / edit mask at latent size.

The paper: "Optimisation-based multi-modal semantic image editing" (anonymous authors, under double-blind review);
the maths is in ``pixels_core.ito``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from comfy_api.latest import io

import comfy.sample

from ..pixels_core import ito as core
from . import _session as session
from ._common import check_latent

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

INVERSION_CFG_TIP = ("CFG used while DDIM-inverting the source (with the source conditioning) and the guidance image "
                     "(with the edit conditioning). 1.0 (no CFG) inverts most faithfully (DiffEdit's choice); raising "
                     "it follows the conditioning during inversion but reconstructs less exactly.")


def source_latent(model, latent: dict, name: str = "latent") -> torch.Tensor:
    if not isinstance(latent, dict) or "samples" not in latent:
        raise ValueError(f"{name}: connect a LATENT (e.g. VAE Encode of the source image)")
    samples = latent["samples"]
    if samples.ndim != 4 and not (samples.ndim == 5 and samples.shape[2] == 1):
        raise ValueError(f"{name}: ITO works on image latents (B, C, H, W), or a video VAE's one-frame latent "
                         f"(B, C, 1, H, W) as Qwen-Image's; got shape {tuple(samples.shape)}")
    return check_latent(model, comfy.sample.fix_empty_latent_channels(model, samples), name)


class _OneFrameModel:
    """``model_k`` for ITO's image maths when the model's latents are one-frame clips: takes ``(B, C, h, w)`` and
    gives the model ``(B, C, 1, h, w)``; every other attribute is ``model_k``'s."""

    def __init__(self, model_k):
        self.model_k = model_k

    def __call__(self, x, sigma, **kwargs):
        return self.model_k(x.unsqueeze(2), sigma, **kwargs).squeeze(2)

    def __getattr__(self, name):
        return getattr(self.model_k, name)


def one_frame(fn):
    """``fn`` for ``session.run`` on image latents of families whose VAE is a video VAE (Qwen-Image: VAEEncode of an
    image is a clip of one frame, ``(B, C, 1, h, w)``): ITO's maths sees ``(B, C, h, w)``, the model its own shape."""
    def wrapped(model_k, x0, noise, sigmas, extra_args, kind):
        if x0.ndim != 5 or x0.shape[2] != 1:
            return fn(model_k, x0, noise, sigmas, extra_args, kind)
        return fn(_OneFrameModel(model_k), x0.squeeze(2), noise.squeeze(2), sigmas, extra_args, kind).unsqueeze(2)
    return wrapped


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


def cond_inputs(source=True):
    ins = []
    if source:
        ins += [io.Conditioning.Input("source_positive", tooltip=TIPS["source_positive"]),
                io.Conditioning.Input("source_negative", tooltip=TIPS["source_negative"])]
    return ins + [io.Conditioning.Input("edit_positive", tooltip=TIPS["edit_positive"]),
                  io.Conditioning.Input("edit_negative", tooltip=TIPS["edit_negative"])]


def seed_input():
    return session.seed_input(TIPS["seed"])


def schedule_inputs():
    return [session.steps_input(TIPS["steps"], D["steps"], max=1000), session.cfg_input(TIPS["cfg"], 7.5),
            session.scheduler_input(TIPS["scheduler"])]


def opt_inputs():
    return [io.Int.Input("t_u", default=D["t_u"], min=0, max=1000, tooltip=TIPS["t_u"]),
            io.Int.Input("k", default=D["k"], min=1, max=100, tooltip=TIPS["k"]),
            io.Float.Input("lr", default=D["lr"], min=0.0001, max=10.0, step=0.001, round=0.0001, tooltip=TIPS["lr"])]


def mask_inputs():
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


def check_widgets(t_u, k, lr, steps, encode_ratio=1.0, lam=1.0):
    """The rules between the ITO widgets (t_u within the decoding steps that encode_ratio leaves, ...), for
    ``validate_inputs``: a connected guidance image is assumed (it is known only at run time)."""
    run = len(core.encode_steps(torch.linspace(1.0, 0.0, int(steps) + 1), encode_ratio)) - 1
    core.check_params(lam, t_u, k, lr, run, True)


def guider(model, cfg, edit_positive, edit_negative, source_positive=None, source_negative=None):
    """The session's guider: the ``edit`` branch (main, CFG ``cfg``) and, when given, the ``source`` branch."""
    g = session.BranchGuider(model)
    branches = {"edit": (edit_positive, edit_negative, None)}
    if source_positive is not None:
        branches["source"] = (source_positive, source_negative, None)
    g.set_branches("edit", branches, cfg)
    return g


def edit_args(extra_args, cfg=None):
    return session.branch_args(extra_args, "edit", cfg)


def source_args(extra_args, cfg=None):
    return session.branch_args(extra_args, "source", cfg)
