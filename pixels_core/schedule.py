"""The one check of a sigma schedule shared by every method (k-diffusion form: 1-D, descending, noisy to clean)."""
from __future__ import annotations

import torch


def check_sigmas(sigmas, name: str = "sigmas", *, method: str = "", repeats: bool = False,
                 ends_at_zero: bool = False, flow: bool = False) -> torch.Tensor:
    """``sigmas`` as a tensor when it is a usable schedule, else a ``ValueError`` naming ``name`` (and ``method``).

    A usable schedule is 1-D with at least one step (two values), finite, non-negative and strictly descending
    (``repeats=True`` allows equal neighbours, positive before a final 0). ``ends_at_zero`` requires the last
    sigma to be 0 (a method that outputs the clean latent); ``flow`` requires sigmas in [0, 1] (rectified flow).
    """
    who = f"{method} " if method else ""
    if not torch.is_tensor(sigmas):
        try:
            sigmas = torch.as_tensor(sigmas)
        except Exception:
            raise ValueError(f"{name}: {who}needs a SIGMAS schedule (e.g. from BasicScheduler), "
                             f"got {type(sigmas).__name__}") from None
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"{name}: {who}needs a 1-D sigma schedule with at least one step (two values, e.g. from "
                         f"BasicScheduler), got shape {tuple(sigmas.shape)}")
    s = sigmas.detach().double().cpu()
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name}: the schedule contains NaN or inf")
    if bool((s < 0).any()):
        raise ValueError(f"{name}: every sigma must be >= 0, got {float(s.min()):.4g}")
    if ends_at_zero and float(s[-1]) != 0.0:
        raise ValueError(f"{name}: the schedule ends at sigma {float(s[-1]):.4g}, not 0. {who}outputs the clean "
                         "latent and needs the full schedule down to 0: use a scheduler with denoise 1 and no "
                         "SplitSigmas high part")
    if repeats:
        if bool((s[:-1] <= 0).any()) or bool((s[1:] > s[:-1]).any()):
            raise ValueError(f"{name}: the schedule must decrease (repeats allowed) and be positive before its final 0")
    elif not bool((s[1:] < s[:-1]).all()):
        raise ValueError(f"{name}: the schedule must be strictly descending (noisy to clean)")
    if flow and float(s[0]) > 1.0 + 1e-6:
        raise ValueError(f"{name}: a flow (CONST) model needs sigmas in [0, 1], got {float(s[0]):.4g} first")
    return sigmas
