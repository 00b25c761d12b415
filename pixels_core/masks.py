"""One map and mask contract for every method of the pack: shapes, value range, NaN, batch, and one resize rule.

A *map* or *mask* is a single-channel tensor with values in [0, 1]: ``(H, W)``, ``(B, H, W)`` (a ComfyUI ``MASK``)
or ``(B, 1, H, W)``. What 0 and 1 mean is the method's business (PIXELS: 1 keeps the source; ITO and noise masks:
1 = may change); this module only checks and places them.

The resize rule, the same wherever a map, mask or exemplar image meets a latent or another image (:func:`fit`):
centre-crop to the target's aspect ratio (a log line names the input when that crops anything), then bilinear
resampling, antialiased when shrinking so that a binary mask becomes its coverage fraction instead of aliasing.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

log = logging.getLogger("pixels")

# Aspect ratios closer than this are treated as equal (no crop, no log line): rounding of image sizes.
ASPECT_TOLERANCE = 1e-3


def check_values(m: torch.Tensor, name: str) -> torch.Tensor:
    """Raise a clear ``ValueError`` unless ``m`` is non-empty, finite and within [0, 1]; returns ``m``."""
    if not torch.is_tensor(m):
        raise ValueError(f"{name}: expected a mask tensor, got {type(m).__name__}")
    if m.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(m.shape)}): give a mask with at least one pixel")
    x = m if m.dtype.is_floating_point else m.float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values: rebuild it (every value must be in [0, 1])")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{name} has values outside [0, 1] (min {lo:.3g}, max {hi:.3g}): normalise it first")
    return m


def as_mask(m, name: str, batch: int | None = None) -> torch.Tensor:
    """Validate a map or mask and return it as float32 ``(B, 1, H, W)`` clamped to [0, 1].

    ``batch``: the batch it must serve; a mask of batch 1 is shared, any other batch must equal it.
    """
    if not torch.is_tensor(m):
        raise ValueError(f"{name}: expected a mask tensor (a ComfyUI MASK), got {type(m).__name__}")
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    elif m.ndim != 4 or m.shape[1] != 1:
        raise ValueError(f"{name}: expected a single-channel mask shaped (H, W), (B, H, W) or (B, 1, H, W), "
                         f"got {tuple(m.shape)}")
    check_values(m, name)
    if batch is not None and m.shape[0] not in (1, batch):
        raise ValueError(f"{name} has batch {m.shape[0]} but the image has batch {batch}: give one mask or one per image")
    return m.float().clamp(0.0, 1.0)


def fit(t: torch.Tensor, h: int, w: int, name: str | None = None) -> torch.Tensor:
    """The pack's one resize rule: centre-crop ``t`` (N, C, H, W) to the aspect ratio of ``h x w``, then resize
    bilinearly (antialiased when shrinking). When a crop happens and ``name`` is given, a log line says so."""
    H, W = t.shape[-2:]
    if (H, W) == (h, w):
        return t
    target = w / h
    if abs(W / H - target) > ASPECT_TOLERANCE * target:
        if W / H > target:  # too wide: crop the width
            nw = max(1, round(H * target))
            x0 = (W - nw) // 2
            t = t[..., :, x0:x0 + nw]
        else:
            nh = max(1, round(W / target))
            y0 = (H - nh) // 2
            t = t[..., y0:y0 + nh, :]
        if name:
            log.warning("PIXELS: %s is %dx%d, another aspect ratio than the %dx%d it must fit: its centre %dx%d is "
                        "used (centre crop, then resize)", name, W, H, w, h, t.shape[-1], t.shape[-2])
        if tuple(t.shape[-2:]) == (h, w):
            return t
    shrink = t.shape[-2] > h or t.shape[-1] > w
    work = t if t.dtype in (torch.float32, torch.float64) else t.float()
    out = F.interpolate(work, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
    return out.to(t.dtype)


def to_grid(m, batch: int, h: int, w: int, name: str) -> torch.Tensor:
    """:func:`as_mask` then :func:`fit` to the ``h x w`` latent grid: ``(B or 1, 1, h, w)`` in [0, 1]."""
    return fit(as_mask(m, name, batch), h, w, name).clamp(0.0, 1.0)


def to_frames(m: torch.Tensor, frames: int, name: str) -> torch.Tensor:
    """Maps ``(M, 1, h, w)`` on the latent grid -> ``(1, 1, frames, h, w)`` for a video latent ``(B, C, frames, h, w)``.

    ``M = 1``: one map for every frame. ``M = frames``: one map per latent frame. ``M = 1 + s (frames - 1)`` for a
    whole stride ``s > 1``: one map per image frame of a clip whose VAE compresses time by ``s`` the way Wan's does
    (the first image frame alone makes latent frame 0, then each run of ``s`` image frames one latent frame): each
    latent frame gets the mean of its image frames' maps (the coverage rule :func:`fit` uses in space).
    """
    M = m.shape[0]
    s = (M - 1) // (frames - 1) if frames > 1 else 0
    if M == 1:
        out = m.expand(frames, *m.shape[1:])
    elif M == frames:
        out = m
    elif s > 1 and 1 + s * (frames - 1) == M:
        groups = [m[:1]] + [m[1 + s * j:1 + s * (j + 1)] for j in range(frames - 1)]
        out = torch.cat([g.mean(0, keepdim=True) for g in groups])
    else:
        raise ValueError(f"{name} has {M} maps but the video latent has {frames} frames: give one map for the whole "
                         f"clip, one per latent frame ({frames}) or one per image frame of the clip (e.g. "
                         f"{1 + 4 * (frames - 1)} for a VAE that packs 4 frames into one, as Wan's does)")
    return out.permute(1, 0, 2, 3)[None]  # (frames, 1, h, w) -> (1, 1, frames, h, w)
