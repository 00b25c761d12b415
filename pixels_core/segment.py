"""Segmentation to edit map: a grey level per segment, for PIXELS (Shristi Das Biswas et al., "PIXELS: Progressive
Image Xemplar-based Editing with Latent Surgery": edit maps are grey-level maps whose level sets when a pixel is
released; a segmentation gives one release time per region).

Segments come from a label image (one colour per segment, or integer labels as a grey image, read at 8-bit
precision: ``round(255 v)`` per channel) or from a batch of masks (mask ``k`` = segment ``k``, as SAM / SEGS-to-mask
nodes output them). Each segment ``k`` gets ``levels[k]``; pixels in no segment (masks only) get ``default``.

Soft edges: ``edge_width`` > 0 blurs the hard level map ``L = sum_k level_k I_k`` with a Gaussian of
``sigma = edge_width / 4`` (:func:`pixels_core.editmap.blur`, i.e. ``scipy.ndimage.gaussian_filter(mode="reflect",
truncate=4)``). This *is* the normalised, level-weighted blur of every segment's indicator
``sum_k level_k G*I_k / sum_k G*I_k``: the indicators (the "no segment" region included) sum to 1 and the blur is
linear with a normalised kernel, so the denominator is 1. Across a straight boundary between levels a and b the map
is ``a + (b - a) Phi(d / sigma)``: smooth, monotone, 95 % of the change inside ``edge_width`` px centred on the
boundary. The kernel radius is ``int(edge_width + 0.5)``; pixels whose square window of that radius holds one level
keep it exactly (not merely to rounding). A Gaussian rather than a distance ramp because it treats junctions of three
or more segments without special cases. A segment narrower than ``edge_width`` does not reach its own level.
"""
from __future__ import annotations

import math

import torch

from . import editmap as _em

ORDERS = ("first appearance", "label value")
MAX_COLOURS = 256
BOUNDARY_RGB = (1.0, 0.0, 0.0)


def parse_levels(text, name: str = "levels") -> list[float]:
    """``"0, 0.5, 1"`` -> ``[0.0, 0.5, 1.0]``: comma-separated grey values in [0, 1] (blanks around commas ignored)."""
    if isinstance(text, (list, tuple)):
        parts = [str(v) for v in text]
    else:
        s = str(text).strip()
        parts = [] if not s else [p.strip() for p in s.split(",")]
    out = []
    for i, p in enumerate(parts):
        try:
            v = float(p)
        except ValueError:
            raise ValueError(f"{name}: entry {i + 1} ({p!r}) is not a number; give grey values in [0, 1] separated by "
                             "commas, e.g. 0, 0.5, 1") from None
        if not math.isfinite(v) or not 0.0 <= v <= 1.0:
            raise ValueError(f"{name}: entry {i + 1} is {p}, outside [0, 1] (0 = take the exemplar, 1 = keep the source)")
        out.append(v)
    return out


def _finite(t: torch.Tensor, name: str) -> torch.Tensor:
    x = t if t.dtype.is_floating_point else t.float()
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values: rebuild it")
    return x


def labels_from_image(image: torch.Tensor, order: str = "first appearance", max_colours: int = MAX_COLOURS,
                      name: str = "labels"):
    """Label image (B, H, W, C) -> ``(labels (B, H, W) long in 0..n-1, n)``, one segment per distinct colour.

    Colours are compared at 8-bit precision (``round(255 v)`` of the first three channels; a one-channel image is
    grey). One numbering for the whole batch, so a colour has the same level in every image. ``order``:
    ``first appearance`` = by the first pixel of each colour in raster order (image 0 row by row, then image 1, ...);
    ``label value`` = by the 8-bit value ``(R, G, B)`` ascending (for a grey integer-label image: label 0 first).
    More than ``max_colours`` distinct colours is refused: that is a photo or a smoothed picture, not a label image.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}")
    if not torch.is_tensor(image) or image.ndim != 4:
        raise ValueError(f"{name}: expected an IMAGE shaped (B, H, W, C), got "
                         f"{tuple(image.shape) if torch.is_tensor(image) else type(image).__name__}")
    if image.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(image.shape)})")
    x = _finite(image, name)
    c = x[..., :3] if x.shape[-1] >= 3 else x[..., :1].expand(*x.shape[:-1], 3)
    q = torch.round(c.double().clamp(0, 1) * 255).long()
    packed = (q[..., 0] * 65536 + q[..., 1] * 256 + q[..., 2]).reshape(-1)
    vals, inv = torch.unique(packed, sorted=True, return_inverse=True)
    n = vals.numel()
    if n > max_colours:
        raise ValueError(f"{name} has {n} distinct colours, more than {max_colours}: this looks like a photo or a "
                         "smoothed / JPEG-compressed picture, not a label image (one flat colour per segment, no "
                         "antialiasing). Give a label image, or a batch of masks on the masks input")
    if order == "first appearance":
        first = torch.full((n,), packed.numel(), dtype=torch.long, device=packed.device)
        first.scatter_reduce_(0, inv, torch.arange(packed.numel(), device=packed.device), reduce="amin")
        rank = torch.empty_like(first)
        rank[first.argsort()] = torch.arange(n, device=packed.device)
        inv = rank[inv]
    return inv.reshape(image.shape[:3]), n


def labels_from_masks(masks, threshold: float = 0.5, name: str = "masks"):
    """A batch of masks -> ``(labels (1, H, W) long, n)``: mask ``k`` (value >= ``threshold``) is segment ``k``,
    -1 = in no mask. Where masks overlap the later one wins (painted in order). ``masks``: a MASK (N, H, W) or (H, W),
    or a list of them (all the same size)."""
    threshold = _em._check_range("threshold", threshold, 0.0, 1.0)
    parts = list(masks) if isinstance(masks, (list, tuple)) else [masks]
    if not parts:
        raise ValueError(f"{name}: no masks given (an empty batch): connect at least one mask")
    flat = []
    for i, m in enumerate(parts):
        label = name if len(parts) == 1 else f"{name} {i + 1}"
        if not torch.is_tensor(m) or m.ndim not in (2, 3):
            raise ValueError(f"{label}: expected a MASK shaped (N, H, W) or (H, W), got "
                             f"{tuple(m.shape) if torch.is_tensor(m) else type(m).__name__}")
        m = m[None] if m.ndim == 2 else m
        if m.shape[0] == 0:
            raise ValueError(f"{label} is an empty batch (0 masks): the segmentation found nothing; connect at least one mask")
        if m.shape[-1] == 0 or m.shape[-2] == 0:
            raise ValueError(f"{label} is empty (shape {tuple(m.shape)})")
        if flat and m.shape[-2:] != flat[0].shape[-2:]:
            raise ValueError(f"{label} is {m.shape[-1]}x{m.shape[-2]} px but {name} 1 is "
                             f"{flat[0].shape[-1]}x{flat[0].shape[-2]} px: every mask of a segmentation must have the "
                             "same size (resize them first)")
        flat.append(_finite(m, label).to(flat[0].device if flat else m.device))
    stack = torch.cat(flat, 0)
    n = stack.shape[0]
    labels = torch.full(stack.shape[-2:], -1, dtype=torch.long, device=stack.device)
    for k in range(n):
        labels[stack[k] >= threshold] = k
    return labels[None], n


def level_map(labels: torch.Tensor, n: int, levels, default: float = 1.0, edge_width: float = 0.0) -> torch.Tensor:
    """Labels (B, H, W) (-1 = no segment) -> edit map (B, H, W) float32: ``levels[k]`` on segment ``k``, ``default``
    elsewhere, soft edges of ``edge_width`` px (module docstring). Fewer levels than segments is a ValueError naming
    both counts; extra levels are unused."""
    levels = parse_levels(levels)
    default = _em._check_range("default", default, 0.0, 1.0)
    edge_width = _em._check_range("edge_width", edge_width, lo=0.0)
    if len(levels) < n:
        raise ValueError(f"levels: {n} segments found but only {len(levels)} level(s) listed ({', '.join(map(str, levels)) or 'none'}): "
                         f"give one grey value per segment, comma-separated ({n} values)")
    lv = torch.tensor(levels[:n] + [default], dtype=torch.float64, device=labels.device)
    hard = lv[torch.where(labels < 0, torch.full_like(labels, n), labels)]
    if edge_width > 0:
        sigma = edge_width / 4.0
        r = int(4.0 * sigma + 0.5)
        soft = _em.blur(hard, sigma)
        flat = _em.grow(hard, -r, "square") == _em.grow(hard, r, "square")
        hard = torch.where(flat, hard, soft)
    return hard.clamp(0, 1).float()


def boundaries(labels: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: pixels with a 4-neighbour of another label (both sides of every boundary)."""
    b = torch.zeros_like(labels, dtype=torch.bool)
    dy = labels[:, 1:] != labels[:, :-1]
    dx = labels[:, :, 1:] != labels[:, :, :-1]
    b[:, 1:] |= dy
    b[:, :-1] |= dy
    b[:, :, 1:] |= dx
    b[:, :, :-1] |= dx
    return b


def preview(labels: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """IMAGE (B, H, W, 3): the map as grey (the level of each segment), segment boundaries drawn in red."""
    img = m.float()[..., None].expand(*m.shape, 3).clone()
    img[boundaries(labels.expand(m.shape[0], -1, -1))] = torch.tensor(BOUNDARY_RGB, dtype=img.dtype, device=img.device)
    return img


def map_from_segments(labels_image=None, masks=None, levels="0", default: float = 1.0, edge_width: float = 0.0,
                      order: str = "first appearance", threshold: float = 0.5):
    """Edit map from a label image or a batch of masks (exactly one): ``(map (B, H, W), preview IMAGE, n segments)``.
    A label image of batch B gives B maps; a mask batch is one segmentation and gives one map."""
    if (labels_image is None) == (masks is None):
        raise ValueError("give exactly one of labels (a label image) and masks (a batch of segment masks), "
                         f"{'neither' if labels_image is None else 'not both'} connected")
    parse_levels(levels)
    if labels_image is not None:
        labels, n = labels_from_image(labels_image, order)
    else:
        labels, n = labels_from_masks(masks, threshold)
    m = level_map(labels, n, levels, default, edge_width)
    return m, preview(labels, m), n
