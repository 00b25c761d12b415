"""Exemplar placement for PIXELS (Shristi Das Biswas et al., "PIXELS: Progressive Image Xemplar-based Editing with
Latent Surgery", Algorithm 1 takes an exemplar the size of the source and a map saying where it goes): put a
(cut-out) exemplar into the source frame at a position, scale and rotation, and make the matching edit map.

Geometry, in pixel units with pixel centres at ``i + 0.5``: output pixel ``p`` samples the exemplar at
``q = c_e + R(-rotation) (p - c) / s``, where ``c = (x W, y H)`` is the placement centre in the source, ``c_e`` the
exemplar's centre and ``s`` output pixels per exemplar pixel. Positive rotation is counter-clockwise on screen
(``rotation = 90`` equals ``torch.rot90(image, 1, (H, W))`` for a centred square). Sampling is bilinear with the
conventions of ``torch.nn.functional.grid_sample(mode="bilinear", align_corners=False, padding_mode="border")``
(computed in float64 by gather so that samples on pixel centres return the pixel bit for bit). When ``s < 1`` the
exemplar (and its mask) are first resized to ``round(s W_e) x round(s H_e)`` by antialiased bilinear interpolation
(``F.interpolate(antialias=True)``, a triangle filter as wide as the reduction), so shrinking does not alias.

Coverage (alpha) = the exemplar rectangle's coverage of each output pixel times the sampled cut-out mask. The
rectangle's coverage is the 1-D box overlap of the output pixel with the rectangle along each of the exemplar's
axes (measured in output pixels): exact pixel coverage when the rotation is a multiple of 90 degrees, the usual 1-px
edge antialiasing otherwise. The composite is ``source (1 - alpha) + exemplar alpha``; the edit map (paper polarity:
1 keeps the source, 0 takes the exemplar) is ``1 - max(alpha, ramp)``, ``ramp`` falling linearly from 1 at the
cut-out (``alpha >= 0.5``) to 0 at ``feather`` px from it (exact Euclidean distance,
:func:`pixels_core.editmap.falloff` ``side="outside"``): the cut-out keeps its size and the soft edge grows out of it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import editmap as _em
from . import masks as _masks

SCALE_MODES = ("source shorter side", "exemplar pixels")
MASK_MEANINGS = ("white = exemplar (cut-out)", "white = transparent (LoadImage mask)")


def _image(t, name: str) -> torch.Tensor:
    if not torch.is_tensor(t) or t.ndim != 4 or t.shape[-1] < 1:
        raise ValueError(f"{name}: expected an IMAGE shaped (B, H, W, C), got "
                         f"{tuple(t.shape) if torch.is_tensor(t) else type(t).__name__}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if not bool(torch.isfinite(t.float()).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def scale_factor(scale: float, mode: str, src_hw, ex_hw) -> float:
    """Output pixels per exemplar pixel. ``source shorter side``: the exemplar's longer side becomes ``scale`` times
    the source's shorter side (1 = as large as fits); ``exemplar pixels``: a plain factor (1 = the exemplar's own size)."""
    scale = _em._check_range("scale", scale, lo=0.0, lo_open=True)
    if mode not in SCALE_MODES:
        raise ValueError(f"scale_by must be one of {list(SCALE_MODES)}, got {mode!r}")
    if mode == "exemplar pixels":
        return scale
    return scale * min(src_hw) / max(ex_hw)


def _rot(deg: float):
    """cos, sin of ``deg`` degrees, exact for multiples of 90."""
    if float(deg) % 90.0 == 0.0:
        k = int(round(float(deg) / 90.0)) % 4
        return (1.0, 0.0, -1.0, 0.0)[k], (0.0, 1.0, 0.0, -1.0)[k]
    a = math.radians(float(deg))
    return math.cos(a), math.sin(a)


def bilinear(img: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
    """Sample ``img`` (B, C, h, w) at pixel coordinates ``qx, qy`` (B, H, W) (centres at ``i + 0.5``), bilinear with
    border clamping: ``grid_sample(mode="bilinear", padding_mode="border", align_corners=False)``. Returns (B, C, H, W)."""
    B, C, h, w = img.shape
    ix = (qx - 0.5).clamp(0, w - 1)
    iy = (qy - 0.5).clamp(0, h - 1)
    x0 = ix.floor().clamp(max=max(w - 2, 0))
    y0 = iy.floor().clamp(max=max(h - 2, 0))
    fx, fy = ix - x0, iy - y0
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    flat = img.reshape(B, C, h * w)

    def at(yy, xx):
        idx = (yy * w + xx).reshape(B, 1, -1).expand(B, C, -1)
        return flat.gather(2, idx).reshape(B, C, *qx.shape[1:])

    fx, fy = fx[:, None], fy[:, None]
    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bot = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bot * fy


def _overlap(u: torch.Tensor, length: float) -> torch.Tensor:
    """Overlap of the 1-px box centred at ``u`` with the interval [0, length]."""
    return (torch.minimum(u + 0.5, torch.full_like(u, length)) - torch.clamp(u - 0.5, min=0.0)).clamp(0.0, 1.0)


def _batch(sizes: dict) -> int:
    big = {b for b in sizes.values() if b != 1}
    if len(big) > 1:
        raise ValueError("batches do not match: " + ", ".join(f"{k} {v}" for k, v in sizes.items())
                         + "; give one item or the same batch for each")
    return big.pop() if big else 1


def place(exemplar: torch.Tensor, source: torch.Tensor, mask: torch.Tensor | None = None, x: float = 0.5,
          y: float = 0.5, scale: float = 1.0, rotation: float = 0.0, feather: float = 0.0,
          scale_by: str = "source shorter side", mask_meaning: str = MASK_MEANINGS[0]):
    """Place ``exemplar`` (IMAGE (Be, He, We, C); a 4th channel is alpha) into the frame of ``source`` (IMAGE
    (Bs, H, W, C)). ``mask`` (MASK (Bm, h, w), fitted to the exemplar's size): the cut-out, read as ``mask_meaning``.
    Batches of 1 are shared, others must match. Returns ``(composite IMAGE (B, H, W, 3), edit map MASK (B, H, W),
    alpha (B, H, W))``; see the module docstring for the maths. Refuses placements that cover no source pixel."""
    _image(exemplar, "exemplar")
    _image(source, "source")
    if mask_meaning not in MASK_MEANINGS:
        raise ValueError(f"mask_meaning must be one of {list(MASK_MEANINGS)}, got {mask_meaning!r}")
    x, y = _em._check_range("x", x), _em._check_range("y", y)
    rotation = _em._check_range("rotation", rotation)
    feather = _em._check_range("feather", feather, lo=0.0)
    Be, He, We = exemplar.shape[:3]
    Bs, H, W = source.shape[:3]
    s = scale_factor(scale, scale_by, (H, W), (He, We))
    sizes = {"exemplar": Be, "source": Bs}
    if mask is not None:
        m = _masks.as_mask(mask, "mask")  # (Bm, 1, h, w), checked: finite, in [0, 1]
        sizes["mask"] = m.shape[0]
    B = _batch(sizes)
    dev = source.device
    ex = exemplar.to(dev, torch.float64)
    rgb = ex[..., :3] if ex.shape[-1] >= 3 else ex[..., :1].expand(-1, -1, -1, 3)
    alpha_e = ex[..., 3] if ex.shape[-1] >= 4 else torch.ones_like(ex[..., 0])
    if mask is not None:
        m = _masks.fit(m.to(dev, torch.float64), He, We, name="mask")[:, 0]
        alpha_e = alpha_e * (1.0 - m if mask_meaning == MASK_MEANINGS[1] else m)
    planes = torch.cat([rgb.movedim(-1, 1).expand(B, -1, -1, -1), alpha_e.expand(B, -1, -1)[:, None]], 1)
    h2, w2 = He, We
    if s < 1.0:  # antialias: area-style reduction first, the affine then only corrects the rounding of the size
        h2, w2 = max(1, round(He * s)), max(1, round(We * s))
        if (h2, w2) != (He, We):
            planes = F.interpolate(planes, size=(h2, w2), mode="bilinear", align_corners=False, antialias=True)
    cos, sin = _rot(rotation)
    py = torch.arange(H, device=dev, dtype=torch.float64)[:, None] + 0.5 - y * H
    px = torch.arange(W, device=dev, dtype=torch.float64)[None, :] + 0.5 - x * W
    ux = (cos * px - sin * py) / s  # offset from the exemplar's centre, in exemplar pixels
    uy = (sin * px + cos * py) / s
    qx, qy = ux + We / 2.0, uy + He / 2.0
    sx, sy = w2 / We, h2 / He
    sampled = bilinear(planes, (qx * sx)[None].expand(B, -1, -1), (qy * sy)[None].expand(B, -1, -1))
    cover = _overlap(qx * s, We * s) * _overlap(qy * s, He * s)
    alpha = (sampled[:, 3] * cover).clamp(0.0, 1.0)
    src = source.to(dev, torch.float64)
    src = src[..., :3] if src.shape[-1] >= 3 else src[..., :1].expand(-1, -1, -1, 3)
    src = src.expand(B, -1, -1, -1)
    a = alpha[..., None]
    comp = src * (1.0 - a) + sampled[:, :3].movedim(1, -1) * a
    empty = [i for i in range(B) if not bool((alpha > 0).any(dim=(-2, -1))[i])]
    if empty:
        raise ValueError(f"the placed exemplar covers no pixel of the source (batch item(s) {empty}): x={x}, y={y}, "
                         f"scale={scale}, rotation={rotation} put it outside the {W}x{H} frame, or its mask is empty")
    keep = alpha
    if feather > 0:
        keep = torch.maximum(alpha, _em.falloff(alpha, feather, "outside", "linear", 0.5))
    edit_map = 1.0 - keep
    return comp.to(source.dtype if source.dtype.is_floating_point else torch.float32), \
        edit_map.float(), alpha.float()
