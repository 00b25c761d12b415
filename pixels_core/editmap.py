"""Edit-map operations for PIXELS: turn masks, depth and ramps into grey-level edit maps. The paper (Shristi Das
Biswas, Matthew Shreve, Xuelu Li, Prateek Singhal, Kaushik Roy, "PIXELS: Progressive Image Xemplar-based Editing with
Latent Surgery") makes its maps by "growing and blurring, simple histogram transformations on binary masks ... depth
maps".

Every op is a pure torch function on maps shaped ``(B, H, W)`` (a ComfyUI ``MASK``) or ``(H, W)``; it keeps the
shape, dtype and device of its input and returns values in [0, 1]. Half-precision maps are computed in float32 and
cast back. The pack's polarity (the paper's Algorithm 1): 1 = keep the source, 0 = edit fully, grey = released
part-way (darker = earlier). The ops themselves are polarity-free; :func:`from_depth` returns paper polarity.
Reference behaviour (tested): grow/shrink = ``scipy.ndimage.grey_dilation``/``grey_erosion`` with the same footprint,
blur = ``scipy.ndimage.gaussian_filter(mode="reflect", truncate=4)``, distances = ``distance_transform_edt``.
"""
from __future__ import annotations

import math

import torch

from . import masks as _masks
from . import pixels as _px

SHAPES = ("disk", "square")
COMBINE_MODES = ("min", "max", "multiply", "screen")
FALLOFF_SIDES = ("outside", "inside", "centered")
FALLOFF_CURVES = ("linear", "smooth", "cosine")
RAMP_KINDS = ("linear", "radial")


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------

def _check(m, name: str = "map", finite: bool = True):
    """Validate a map and return ``(maps as (B, H, W) in a working float dtype, restore)``.

    ``restore(y)`` clamps to [0, 1], casts back to the input dtype and shape. Raises ``ValueError`` for
    non-tensors, wrong rank, empty maps and NaN/infinite values.
    """
    if not torch.is_tensor(m):
        raise ValueError(f"{name}: expected a torch tensor (a ComfyUI MASK), got {type(m).__name__}")
    if m.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a map shaped (H, W) or (B, H, W) (a ComfyUI MASK), got {tuple(m.shape)}; "
                         "convert images with ImageToMask or PIXELS Map From Depth")
    if m.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(m.shape)}): give a map with at least one pixel")
    dtype = m.dtype
    out_dtype = dtype if dtype.is_floating_point else torch.float32
    work = torch.float32 if dtype in (torch.float16, torch.bfloat16) or not dtype.is_floating_point else dtype
    x = m.to(work)
    # a finite sum proves every value finite (NaN and inf never add up to a finite number): one cheap reduction;
    # only a sum that is not finite (a bad value, or an overflow of huge ones) needs the elementwise check
    if finite and not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values: rebuild it (every value must be finite, maps in [0, 1])")
    squeeze = m.ndim == 2
    if squeeze:
        x = x[None]

    def restore(y):
        y = y.clamp(0.0, 1.0).to(out_dtype)
        return y[0] if squeeze else y

    return x, restore


def _check_range(name, value, lo=None, hi=None, lo_open=False):
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value}")
    return v

# ----------------------------------------------------------------------------------------------
# Rules between parameters (the nodes check them when a prompt is queued, the ops again when they run)
# ----------------------------------------------------------------------------------------------

def check_levels(black, white, gamma=1.0, out_black=0.0, out_white=1.0):
    """Levels parameters as floats, or a ValueError: the white point must lie above the black point."""
    black, white = _check_range("black", black), _check_range("white", white)
    gamma = _check_range("gamma", gamma, lo=0.0, lo_open=True)
    out_black = _check_range("out_black", out_black, 0.0, 1.0)
    out_white = _check_range("out_white", out_white, 0.0, 1.0)
    if not white > black:
        raise ValueError(f"levels: white point ({white}) must be above the black point ({black})")
    return black, white, gamma, out_black, out_white


def check_stretch(low, high):
    """Stretch percentiles as floats, or a ValueError: the high percentile must lie above the low one."""
    low = _check_range("low percentile", low, 0.0, 100.0)
    high = _check_range("high percentile", high, 0.0, 100.0)
    if not high > low:
        raise ValueError(f"stretch: high percentile ({high}) must be above the low percentile ({low})")
    return low, high


def check_depth_range(start, end):
    """Depth range as floats, or a ValueError: range_end must lie above range_start."""
    start = _check_range("range_start", start, 0.0, 1.0)
    end = _check_range("range_end", end, 0.0, 1.0)
    if not end > start:
        raise ValueError(f"range_end ({end}) must be above range_start ({start})")
    return start, end


def check_ramp(start, end):
    """Ramp start and end as floats, or a ValueError: they must differ (end < start reverses the ramp)."""
    start, end = _check_range("start", start), _check_range("end", end)
    if start == end:
        raise ValueError(f"ramp start and end are both {start}: give a ramp some length")
    return start, end



# ----------------------------------------------------------------------------------------------
# Grow / shrink (grey dilation / erosion)
# ----------------------------------------------------------------------------------------------

def _lowest(dtype):
    """The identity of ``max`` for ``dtype``: -inf for floats, the smallest value for integers (the uint8 path)."""
    return float("-inf") if dtype.is_floating_point else torch.iinfo(dtype).min


def _running_max(x: torch.Tensor, w: int, dim: int = -1) -> torch.Tensor:
    """Max over the window ``[i - w, i + w]`` along ``dim`` (-1 or -2), out-of-range ignored.

    Doubling: windows of 1, 2, 4, ... samples by one ``maximum`` of two shifted views each, then one more for the
    remainder: ``ceil(log2(2w + 1))`` passes, exact (a max is exact in any order)."""
    if w <= 0:
        return x
    n = x.shape[dim]
    pad = list(x.shape)
    pad[dim] = n + 2 * w
    m = x.new_full(pad, _lowest(x.dtype))
    m.narrow(dim, w, n).copy_(x)
    s, k = 1, 2 * w + 1
    while 2 * s <= k:
        L = m.shape[dim]
        m = torch.maximum(m.narrow(dim, 0, L - s), m.narrow(dim, s, L - s))
        s *= 2
    rem = k - s
    if rem:
        L = m.shape[dim]
        m = torch.maximum(m.narrow(dim, 0, L - rem), m.narrow(dim, rem, L - rem))
    return m


def _widen(R: torch.Tensor) -> torch.Tensor:
    """One more pixel of running max along the last dim: ``max(R[i-1], R[i], R[i+1])``."""
    if R.shape[-1] < 2:
        return R
    m = torch.maximum(R[..., :-1], R[..., 1:])
    out = torch.empty_like(R)
    torch.maximum(m[..., :-1], m[..., 1:], out=out[..., 1:-1])
    out[..., :1] = m[..., :1]
    out[..., -1:] = m[..., -1:]
    return out


def _dilate_block(x: torch.Tensor, r: int, shape: str) -> torch.Tensor:
    """:func:`_dilate` of one block of rows (outside rows ignored)."""
    H = x.shape[-2]
    if shape == "square":
        return _running_max(_running_max(x, r, -1), r, -2)
    out = x.new_full(x.shape, _lowest(x.dtype))
    R, cur = x, 0
    for dy in range(r, -1, -1):
        w = math.isqrt(r * r - dy * dy)
        if w - cur > 4:
            R, cur = _running_max(x, w), w
        while cur < w:
            R, cur = _widen(R), cur + 1
        if dy >= H:
            continue
        if dy == 0:
            torch.maximum(out, R, out=out)
        else:
            o = out[..., :H - dy, :]
            torch.maximum(o, R[..., dy:, :], out=o)
            o = out[..., dy:, :]
            torch.maximum(o, R[..., :H - dy, :], out=o)
    return out


# rows per block of _dilate and of the distance transform's row pass: about this many pixels (a block and its few
# work buffers stay in the CPU's L2 cache; whole-map passes are memory-bound)
_BLOCK_PIXELS = 1 << 17


def _dilate(x: torch.Tensor, r: int, shape: str) -> torch.Tensor:
    """Grey dilation of (B, H, W) by a square ``(2r+1)^2`` or a disk ``dx^2 + dy^2 <= r^2`` footprint.

    The disk is a stack of horizontal runs: the row at vertical offset ``dy`` is a running max of half-width
    ``isqrt(r^2 - dy^2)``. Offsets are visited from ``|dy| = r`` inwards, so the run only ever widens. The square is
    a running max along rows then along columns. Maps are processed in blocks of rows (with ``r`` rows of context
    above and below) so that the work stays in cache; the result is the same.
    """
    B, H, W = x.shape
    rows = max(2 * r, _BLOCK_PIXELS // max(1, B * W), 1)
    if H <= rows + 2 * r:
        return _dilate_block(x, r, shape)
    out = torch.empty_like(x)
    for i0 in range(0, H, rows):
        i1 = min(H, i0 + rows)
        a, b = max(0, i0 - r), min(H, i1 + r)
        out[:, i0:i1] = _dilate_block(x[:, a:b], r, shape)[:, i0 - a:i1 - a]
    return out


def _as_binary(x: torch.Tensor):
    """``x`` as uint8 when every value is exactly 0 or 1 (a mask), else None. A grey map is usually rejected on its
    first few thousand pixels; only a map that passes that sample is checked in full."""
    flat = x.reshape(-1)
    for part in (flat[:4096], flat):
        u = part.to(torch.uint8)  # (0 and 1 convert exactly; anything else does not round-trip)
        if not torch.equal(u.to(x.dtype), part):
            return None
    return u.reshape(x.shape)


def grow(m: torch.Tensor, pixels: int, shape: str = "disk") -> torch.Tensor:
    """Grow (``pixels`` > 0, grey dilation) or shrink (``pixels`` < 0, grey erosion) a map by ``|pixels|``.

    Footprint: ``disk`` = all offsets with ``dx^2 + dy^2 <= r^2`` (round growth), ``square`` = ``(2r+1) x (2r+1)``.
    Equals ``scipy.ndimage.grey_dilation``/``grey_erosion(footprint=...)`` (its default reflect border gives the same
    result as ignoring outside pixels for these symmetric footprints). White grows on dilation. A map whose values
    are all exactly 0 or 1 (a mask) is dilated as uint8 on the CPU: the same max operations, a quarter of the memory.
    """
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    if int(pixels) != pixels:
        raise ValueError(f"pixels must be a whole number, got {pixels}")
    x, restore = _check(m, "map")
    r = abs(int(pixels))
    if r == 0:
        return restore(x)
    u = _as_binary(x) if x.device.type == "cpu" else None
    if u is not None:  # a 0/1 mask: the same max ops on bytes (4x less memory traffic), exact
        y = _dilate(u, r, shape) if pixels > 0 else 1 - _dilate(1 - u, r, shape)
        return restore(y.to(x.dtype))
    y = _dilate(x, r, shape) if pixels > 0 else -_dilate(-x, r, shape)
    return restore(y)


# ----------------------------------------------------------------------------------------------
# Gaussian blur
# ----------------------------------------------------------------------------------------------

def gaussian_kernel(sigma: float, truncate: float = 4.0, dtype=torch.float64) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``int(truncate * sigma + 0.5)`` (scipy.ndimage's kernel)."""
    r = int(truncate * float(sigma) + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / float(sigma)) ** 2)
    return (k / k.sum()).to(dtype)


def _reflect_index(n: int, lo: int, hi: int, device) -> torch.Tensor:
    """Indices ``lo .. hi-1`` folded into ``[0, n)`` with scipy's 'reflect' rule (d c b a | a b c d | d c b a)."""
    j = torch.remainder(torch.arange(lo, hi, device=device), 2 * n)
    return torch.where(j >= n, 2 * n - 1 - j, j)


# above this radius the FFT path is cheaper than the banded matmul (measured on CPU, see benchmarks/bench_editmap.py)
FFT_RADIUS = 128
# smallest output block of the banded matmul (a multiple of 8)
_BAND_MIN = 64
# smallest window step of the row pass of the blocked CPU blur (measured: 32 beats 16 and 64 at sigma 2)
_ROW_BAND_MIN = 32


def _reflect_pad(x: torch.Tensor, dim: int, left: int, right: int) -> torch.Tensor:
    """Pad ``x`` along ``dim`` with scipy's 'reflect' rule; a fresh contiguous tensor."""
    n = x.shape[dim]
    if left > n or right > n:  # wider than the map: fold the indices (rare, small maps or huge sigma)
        return x.index_select(dim, _reflect_index(n, -left, n + right, x.device)).contiguous()
    shape = list(x.shape)
    shape[dim] = n + left + right
    out = x.new_empty(shape)
    out.narrow(dim, left, n).copy_(x)
    if left:
        out.narrow(dim, 0, left).copy_(x.narrow(dim, 0, left).flip(dim))
    if right:
        out.narrow(dim, left + n, right).copy_(x.narrow(dim, n - right, right).flip(dim))
    return out


def _blur_axis(x: torch.Tensor, k: torch.Tensor, dim: int) -> torch.Tensor:
    """Correlate (B, H, W) ``x`` along ``dim`` (-1 or -2) with the odd symmetric kernel ``k``, reflect borders.

    Banded-matrix form: the padded axis is cut into overlapping windows of ``b + 2r`` samples (a strided view) and
    every window is multiplied by one ``(b + 2r, b)`` Toeplitz block: one batched GEMM, no transposes.
    Radii above :data:`FFT_RADIUS` use an FFT of the padded axis instead.
    """
    n = x.shape[dim]
    r = (k.numel() - 1) // 2
    k = k.to(x.device)
    if r > FFT_RADIUS:
        L = n + 2 * r
        L += L % 2
        xp = _reflect_pad(x, dim, r, L - n - r)
        kk = torch.zeros(L, dtype=torch.float64, device=x.device)
        kk[:r + 1] = k[r:]
        kk[L - r:] = k[:r]
        kf = torch.fft.rfft(kk).to(torch.complex64 if x.dtype == torch.float32 else torch.complex128)
        kf = kf if dim == -1 else kf[:, None]
        y = torch.fft.irfft(torch.fft.rfft(xp, dim=dim) * kf, n=L, dim=dim)
        return y.narrow(dim, r, n)
    b = min(max(_BAND_MIN, 2 * r), -(-n // 8) * 8)
    nb = -(-n // b)
    xp = _reflect_pad(x, dim, r, nb * b + r - n)
    d = torch.arange(b + 2 * r, device=x.device)[:, None] - torch.arange(b, device=x.device)[None]
    K = torch.where((d >= 0) & (d <= 2 * r), k[d.clamp(0, 2 * r)], k.new_zeros(())).to(x.dtype)
    if dim == -1:
        win = xp.unfold(-1, b + 2 * r, b).permute(0, 2, 1, 3)  # (B, nb, H, b + 2r): a batch of nb GEMMs
        # (one tall GEMM over all windows stalled for seconds with 2 threads on a loaded machine; this form did not)
        return (win @ K).permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[1], nb * b)[..., :n]
    B, Lp, W = xp.shape
    win = xp.as_strided((B, nb, b + 2 * r, W), (Lp * W, b * W, W, 1))  # row windows, rows contiguous
    return (K.t() @ win).reshape(B, nb * b, W)[:, :n]


def blur(m: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian blur / feather of standard deviation ``sigma`` pixels, separable, reflect borders.

    Same kernel and borders as ``scipy.ndimage.gaussian_filter(m, sigma, mode="reflect", truncate=4.0)`` on each
    map of the batch (radius ``int(4 sigma + 0.5)``; borders mirror the map, edge pixel repeated). ``sigma = 0``
    returns the map unchanged.
    """
    sigma = _check_range("sigma", sigma, lo=0.0)
    truncate = _check_range("truncate", truncate, lo=0.0, lo_open=True)
    x, restore = _check(m, "map")
    if sigma == 0.0 or int(truncate * sigma + 0.5) == 0:
        return restore(x)
    k = gaussian_kernel(sigma, truncate)
    return restore(_blur2d(x, k))


def _blur2d(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Both passes of :func:`blur`. On the CPU, for maps much taller than the kernel, in blocks of ``b`` output rows:
    the rows of a block and their ``r`` reflected neighbours are blurred along the rows, then the block's ``b``
    output rows are one ``(b, b + 2r)`` banded matmul down the columns (the work stays in cache; the same products
    as the unblocked passes, summed by the GEMM in its own order). Each padded row is blurred along the rows once:
    the ``2r`` rows a block shares with the next one are kept, not recomputed (at sigma 8 that halves the row pass),
    and the new rows' windows of ``c + 2r`` columns are one GEMM with a ``(c + 2r, c)`` band (``c`` = 32 at small
    sigma: fewer multiplications by zero than the 64-wide band of :func:`_blur_axis`)."""
    B, H, W = x.shape
    r = (k.numel() - 1) // 2
    b = min(max(_BAND_MIN, 2 * r), -(-H // 8) * 8)
    if x.device.type != "cpu" or r > FFT_RADIUS or H < 4 * b or H < 2 * r + 2:
        return _blur_axis(_blur_axis(x, k, -1), k, -2)
    xp = _reflect_pad(x, -2, r, r)
    d = torch.arange(b + 2 * r)[:, None] - torch.arange(b)[None]
    Kt = torch.where((d >= 0) & (d <= 2 * r), k[d.clamp(0, 2 * r)], k.new_zeros(())).to(x.dtype).t().contiguous()
    # the row pass: the map padded along the rows too, cut into windows of c + 2r samples every c (a multiple of 8)
    c = min(-(-max(_ROW_BAND_MIN, 2 * r) // 8) * 8, -(-W // 8) * 8)
    nc = -(-W // c)
    xp = _reflect_pad(xp, -1, r, nc * c + r - W)
    dc = torch.arange(c + 2 * r)[:, None] - torch.arange(c)[None]
    Kc = torch.where((dc >= 0) & (dc <= 2 * r), k[dc.clamp(0, 2 * r)], k.new_zeros(())).to(x.dtype)
    out = torch.empty_like(x)
    rows = x.new_empty(B, b + 2 * r, W)  # row-blurred padded rows i0 .. i0 + h + 2r of the current block
    for i0 in range(0, H, b):
        h = min(b, H - i0)
        lo = 0
        if i0:  # the previous block's last 2r rows are this block's first 2r: keep them, blur only the new rows
            rows[:, :2 * r].copy_(rows[:, b:b + 2 * r])  # (b >= 2r: the two ranges do not overlap)
            lo = 2 * r
        win = xp[:, i0 + lo:i0 + h + 2 * r].unfold(-1, c + 2 * r, c)  # (B, n, nc, c + 2r)
        n = win.shape[1]  # one GEMM of all windows of the new rows (a small block: in cache)
        rows[:, lo:h + 2 * r] = (win.reshape(-1, c + 2 * r) @ Kc).view(B, n, nc * c)[..., :W]
        torch.matmul(Kt[:h, :h + 2 * r], rows[:, :h + 2 * r], out=out[:, i0:i0 + h])
    return out


# ----------------------------------------------------------------------------------------------
# Tone: levels, equalise, stretch, invert, quantise
# ----------------------------------------------------------------------------------------------

def levels(m: torch.Tensor, black: float = 0.0, white: float = 1.0, gamma: float = 1.0,
           out_black: float = 0.0, out_white: float = 1.0) -> torch.Tensor:
    """Levels: ``t = clamp((m - black) / (white - black), 0, 1) ** (1 / gamma)``, then ``out_black + t (out_white - out_black)``.

    As in image editors, ``gamma`` > 1 brightens the mid-greys (in paper polarity: those pixels are released later,
    keeping more of the source), < 1 darkens them. ``out_white < out_black`` inverts.
    """
    black, white, gamma, out_black, out_white = check_levels(black, white, gamma, out_black, out_white)
    x, restore = _check(m, "map")
    t = ((x - black) / (white - black)).clamp(0.0, 1.0)
    if gamma != 1.0:
        t = t ** (1.0 / gamma)
    return restore(out_black + t * (out_white - out_black))


def equalize(m: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Histogram equalisation of each map: ``(cdf(bin(v)) - cdf_min) / (N - cdf_min)``, ``bin(v) = floor(v * bins)``.

    ``cdf_min`` is the count in the darkest occupied bin, so the darkest value maps to 0 and the brightest to 1.
    A constant map is returned unchanged. Values are clamped to [0, 1] first.
    """
    if int(bins) != bins or bins < 2:
        raise ValueError(f"bins must be a whole number >= 2, got {bins}")
    bins = int(bins)
    x, restore = _check(m, "map")
    B = x.shape[0]
    flat = x.clamp(0, 1).reshape(B, -1)
    idx = (flat * bins).floor().long().clamp(0, bins - 1)
    hist = torch.zeros(B, bins, dtype=torch.float64, device=x.device)
    hist.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    cdf = hist.cumsum(1)
    first = (hist > 0).to(torch.int64).argmax(1, keepdim=True)
    cmin = cdf.gather(1, first)
    n = float(flat.shape[1])
    denom = n - cmin
    out = (cdf.gather(1, idx) - cmin) / denom.clamp(min=1.0)
    out = torch.where(denom > 0, out, flat.double())
    return restore(out.to(x.dtype).reshape(x.shape))


def percentile(m: torch.Tensor, q: float) -> torch.Tensor:
    """Per-map percentile ``q`` in [0, 100] with numpy's default linear interpolation; returns shape (B,)."""
    x, _ = _check(m, "map")
    flat, _ = x.reshape(x.shape[0], -1).sort(dim=1)
    pos = float(q) / 100.0 * (flat.shape[1] - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, flat.shape[1] - 1)
    frac = pos - lo
    return flat[:, lo] * (1 - frac) + flat[:, hi] * frac


def stretch(m: torch.Tensor, low: float = 1.0, high: float = 99.0) -> torch.Tensor:
    """Contrast stretch of each map: its ``low``-th percentile goes to 0 and its ``high``-th to 1 (linear, clamped).

    Percentiles as ``numpy.percentile`` (linear). A map whose two percentiles coincide (flat) is returned unchanged.
    """
    low, high = check_stretch(low, high)
    x, restore = _check(m, "map")
    lo = percentile(x, low)[:, None, None]
    hi = percentile(x, high)[:, None, None]
    span = hi - lo
    y = torch.where(span > 0, (x - lo) / torch.where(span > 0, span, torch.ones_like(span)), x)
    return restore(y)


def invert(m: torch.Tensor) -> torch.Tensor:
    """``1 - m``: swaps keep and edit."""
    x, restore = _check(m, "map")
    return restore(1.0 - x.clamp(0, 1))


def quantize(m: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Round each value to the nearest of ``levels`` evenly spaced greys ``0, 1/(N-1), ..., 1``.

    With N levels the progressive sampler releases the map in at most N groups (hard-edged regions)."""
    if int(levels) != levels or levels < 2:
        raise ValueError(f"levels must be a whole number >= 2, got {levels}")
    x, restore = _check(m, "map")
    n = int(levels) - 1
    return restore(torch.round(x.clamp(0, 1) * n) / n)


# ----------------------------------------------------------------------------------------------
# Depth, ramps
# ----------------------------------------------------------------------------------------------

def normalize(m: torch.Tensor, name: str = "map") -> torch.Tensor:
    """Min-max normalise each map of the batch to [0, 1]; a flat map is a ``ValueError``."""
    x, restore = _check(m, name)
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    if bool((hi <= lo).any()):
        raise ValueError(f"{name} is flat (every pixel has the same value), so it cannot be normalised: "
                         "give a real depth map (e.g. from a depth estimator)")
    return restore((x - lo) / (hi - lo))


def from_depth(depth: torch.Tensor, edit: str = "far", white_is: str = "near", start: float = 0.0,
               end: float = 1.0) -> torch.Tensor:
    """Depth map -> edit map in paper polarity (1 = keep, 0 = edit), e.g. change the background, keep the subject.

    The depth is min-max normalised per map. ``white_is`` says what bright depth means (``near`` for MiDaS /
    Depth Anything / ZoeDepth previews). ``e`` = normalised distance toward the ``edit`` side (0 on the kept side,
    1 on the edited side); the map is ``1 - clamp((e - start) / (end - start))``: pixels with ``e <= start`` are kept,
    ``e >= end`` edited from the first step, a grey ramp between.
    """
    if edit not in ("near", "far"):
        raise ValueError(f"edit must be 'near' or 'far', got {edit!r}")
    if white_is not in ("near", "far"):
        raise ValueError(f"white_is must be 'near' or 'far', got {white_is!r}")
    start, end = check_depth_range(start, end)
    x, restore = _check(depth, "depth")
    d = normalize(x, "depth")
    near = d if white_is == "near" else 1.0 - d
    e = near if edit == "near" else 1.0 - near
    return restore(1.0 - ((e - start) / (end - start)).clamp(0, 1))


def _pixel_grid(h, w, device, dtype):
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5)[:, None]
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5)[None, :]
    return ys, xs


def ramp(h: int, w: int, kind: str = "linear", angle: float = 0.0, start: float = 0.0, end: float = 1.0,
         center_x: float = 0.5, center_y: float = 0.5, batch: int = 1, device=None,
         dtype=torch.float32) -> torch.Tensor:
    """Gradient ramp shaped (batch, h, w), for gradual spatial edits (the paper's forest-to-beach).

    ``linear``: position ``p`` in [0, 1] of each pixel centre along the direction ``angle`` (degrees,
    counter-clockwise on screen; 0 = left to right, 90 = bottom to top), measured between the image corners.
    ``radial``: ``p`` = distance from (``center_x * w``, ``center_y * h``) in units of half the shorter side.
    Value ``clamp((p - start) / (end - start))``: 0 up to ``start``, 1 from ``end`` on (``end < start`` reverses).
    """
    if kind not in RAMP_KINDS:
        raise ValueError(f"kind must be one of {RAMP_KINDS}, got {kind!r}")
    for name, v in (("width", w), ("height", h), ("batch", batch)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {v}")
    angle = _check_range("angle", angle)
    start, end = check_ramp(start, end)
    work = torch.float64
    ys, xs = _pixel_grid(int(h), int(w), device, work)
    if kind == "linear":
        a = math.radians(angle)
        ux, uy = math.cos(a), -math.sin(a)  # screen y points down
        proj = xs * ux + ys * uy
        corners = [cx * ux + cy * uy for cx in (0.0, float(w)) for cy in (0.0, float(h))]
        lo, hi = min(corners), max(corners)
        p = (proj - lo) / (hi - lo)
    else:
        cx, cy = _check_range("center_x", center_x) * w, _check_range("center_y", center_y) * h
        p = torch.sqrt((xs - cx) ** 2 + (ys - cy) ** 2) / (0.5 * min(h, w))
    v = ((p - start) / (end - start)).clamp(0, 1)
    return v.to(dtype).expand(int(batch), int(h), int(w)).clone()


# ----------------------------------------------------------------------------------------------
# Distance transform and falloff
# ----------------------------------------------------------------------------------------------

def _scan_columns(device) -> bool:
    """Whether :func:`distance_transform` scans the rows one at a time (CPU) or uses cumulative max/min (GPU)."""
    return device.type == "cpu"


def _column_distance(f: torch.Tensor, dtype) -> torch.Tensor:
    """Distance down each column of (B, H, W) ``f`` to the nearest True pixel (``inf`` where a column has none):
    one scan down and one up, a row at a time (in place, CPU: cheaper than cumulative max/min over the map)."""
    B, H, W = f.shape
    a = torch.empty(B, H, W, dtype=dtype, device=f.device)
    prev = torch.full((B, W), float("inf"), dtype=dtype, device=f.device)
    for i in range(H):
        row = a[:, i]
        torch.add(prev, 1.0, out=row)
        row.masked_fill_(f[:, i], 0.0)
        prev = row
    c = torch.full((B, W), float("inf"), dtype=dtype, device=f.device)
    for i in range(H - 1, -1, -1):
        c.add_(1.0).masked_fill_(f[:, i], 0.0)
        row = a[:, i]
        torch.minimum(row, c, out=row)
    return a


# above this cap (or uncapped) the row pass is the lower envelope of parabolas over all rows at once, not the scan
_ENVELOPE_CAP = 48.0


def _row_envelope(g2: torch.Tensor) -> torch.Tensor:
    """``min_j' g2[j'] + (j - j')^2`` along the rows of (R, W) ``g2`` (each row with a finite value): the lower
    envelope of parabolas (Felzenszwalb and Huttenlocher 2012, "Distance transforms of sampled functions", Alg. 1),
    built for all rows at once column by column, then read with one sorted search. float64 inside, exact on integers."""
    R, W = g2.shape
    dev = g2.device
    F = g2.double().t().contiguous()  # (W, R): column q is F[q]
    ar = torch.arange(R, device=dev)
    v = torch.zeros(W, R, dtype=torch.long, device=dev)  # v[k, row]: position of the envelope's k-th parabola
    z = torch.full((W + 1, R), float("inf"), dtype=torch.float64, device=dev)  # z[k, row]: where it starts
    k = torch.full((R,), -1, dtype=torch.long, device=dev)
    ninf = torch.tensor(float("-inf"), dtype=torch.float64, device=dev)
    for q in range(W):
        fq = F[q]
        act = torch.isfinite(fq)
        hq = fq + float(q * q)
        while True:
            kk = k.clamp(min=0)
            vk = v[kk, ar]
            s = (hq - (F[vk, ar] + (vk * vk).double())) / (2.0 * (q - vk)).double()
            pop = act & (k >= 0) & (s <= z[kk, ar])
            if not bool(pop.any()):
                break
            k = k - pop.long()
        s = torch.where(k >= 0, s, ninf)
        nk = k + 1
        idx = act.nonzero()[:, 0]
        v[nk[idx], idx] = q
        z[nk[idx], idx] = s[idx]
        k = torch.where(act, nk, k)
    zt = z.t()  # (R, W + 1)
    zt = torch.where(torch.arange(W + 1, device=dev)[None] <= k[:, None], zt, torch.full_like(zt, float("inf")))
    qs = torch.arange(W, device=dev, dtype=torch.float64).expand(R, W).contiguous()
    j = (torch.searchsorted(zt.contiguous(), qs, right=True) - 1).clamp(0, W - 1)
    vj = v.t().gather(1, j)
    out = (qs - vj.double()) ** 2 + F.t().gather(1, vj)
    return out.to(g2.dtype)


def _row_pass(g2: torch.Tensor, cap2: float) -> torch.Tensor:
    """``min_j' g2[j'] + (j - j')^2`` along the rows of one block (R, W), scanning offsets ``d`` only while
    ``d^2`` can still lower a pixel of the block (and stays within ``cap2``). Every row needs a finite value."""
    W = g2.shape[-1]
    d2 = g2.clone()
    if float(g2.min()) >= cap2:
        return d2  # every pixel is at or beyond the cap already, and stays so
    t = torch.empty_like(g2)
    top = float(d2.max())
    for d in range(1, W):
        dd = float(d * d)
        if dd > cap2 or dd >= top:
            break  # no farther offset can lower any pixel (or matter below the cap)
        a, b = d2[:, d:], t[:, :W - d]
        torch.add(g2[:, :-d], dd, out=b)
        torch.minimum(a, b, out=a)
        a = d2[:, :-d]
        torch.add(g2[:, d:], dd, out=b)
        torch.minimum(a, b, out=a)
        if d % 8 == 0:
            top = float(d2.max())
    return d2


def distance_transform(mask: torch.Tensor, max_distance: float | None = None) -> torch.Tensor:
    """Exact Euclidean distance of every pixel to the nearest pixel where ``mask`` is False (float64, (B, H, W)).

    Same as ``scipy.ndimage.distance_transform_edt(mask)`` per map (pixels outside the mask are 0). Maps without
    any False pixel get ``inf``. With ``max_distance`` the result is ``min(distance, max_distance)`` (cheaper).
    Separable: exact 1-D distances down the columns (one scan down and one up), then ``min_j' g(j')^2 + (j - j')^2``
    along rows, in cache-sized blocks of rows, scanning offsets only while they can still improve a pixel of the
    block (blocks already beyond the cap are skipped). The row scan costs O(W x largest distance): cheap under a cap
    (falloff), slow for uncapped distances across large empty areas.
    """
    return _distance(mask, max_distance, torch.float64)


def _distance(mask: torch.Tensor, max_distance, dtype) -> torch.Tensor:
    """:func:`distance_transform` returned in ``dtype`` (falloff: its map's dtype, no float64 round trip on a float32
    map). The squared distances are exact integers either way; only the square root is rounded, once, in ``dtype``."""
    if mask.ndim != 3:
        raise ValueError(f"distance_transform: expected (B, H, W), got {tuple(mask.shape)}")
    f = ~mask.bool()  # feature pixels (distance 0)
    B, H, W = f.shape
    dev = f.device
    cap2 = float("inf") if max_distance is None else float(max_distance) ** 2
    # squared distances are integers: float32 is exact below 2**24 (values above a cap only need to stay above it)
    work = torch.float32 if min(cap2, float(H * H + W * W)) < 2.0 ** 24 else torch.float64
    if _scan_columns(dev):
        g = _column_distance(f, work)
    else:  # one cumulative max/min per direction: fewer kernel launches than a scan over rows
        big = float(H + W + 1)
        i = torch.arange(H, device=dev, dtype=work)[None, :, None].expand(B, H, W)
        up = torch.where(f, i, torch.full_like(i, -big)).cummax(1).values  # last feature at or above
        down = torch.where(f, i, torch.full_like(i, 2 * big)).flip(1).cummin(1).values.flip(1)  # first at or below
        g = torch.minimum(i - up, down - i)
        g = torch.where(g >= big, torch.full_like(g, float("inf")), g)
    g2 = g.mul_(g)
    d2 = torch.full_like(g2, float("inf"))
    has = f.reshape(B, -1).any(1).tolist()  # a map with a feature pixel has a finite g2 in every row
    rows = max(1, _BLOCK_PIXELS // W) if dev.type == "cpu" else H
    if not cap2 <= _ENVELOPE_CAP ** 2:  # far distances: the envelope, all rows of the maps with a feature at once
        sel = [b for b in range(B) if has[b]]
        if sel:
            d2[sel] = _row_envelope(g2[sel].reshape(-1, W)).reshape(len(sel), H, W)
        has = [False] * B
    for b in range(B):
        if not has[b]:
            continue
        for i0 in range(0, H, rows):
            d2[b, i0:i0 + rows] = _row_pass(g2[b, i0:i0 + rows], cap2)
    dist = torch.sqrt(d2.reshape(B, H, W).to(dtype))  # (the square root of an exact integer, correctly rounded)
    if max_distance is not None:
        dist = dist.clamp_(max=float(max_distance))
    return dist


def _shape_curve(t: torch.Tensor, curve: str) -> torch.Tensor:
    if curve == "linear":
        return t
    if curve == "smooth":
        return t * t * (3 - 2 * t)
    if curve == "cosine":
        return 0.5 - 0.5 * torch.cos(math.pi * t)
    raise ValueError(f"curve must be one of {FALLOFF_CURVES}, got {curve!r}")


def falloff(mask: torch.Tensor, width: float, side: str = "outside", curve: str = "linear",
            threshold: float = 0.5) -> torch.Tensor:
    """Soft edge of ``width`` pixels around a binary mask (``mask >= threshold``), by exact Euclidean distance.

    Value 1 in the mask, 0 far from it. ``outside``: ``1 - d_out / width`` outside the mask (d_out = distance to the
    nearest mask pixel, so the mask keeps its size and the edge grows out); ``inside``: ``d_in / width`` inside it
    (d_in = distance to the nearest non-mask pixel) and 0 outside; ``centered``: the ramp straddles the mask border,
    signed distance ``s = d_out - 1/2`` outside, ``1/2 - d_in`` inside, value ``1/2 - s / width``. ``curve`` shapes
    the ramp (linear, smoothstep, cosine). Width 0 gives the binary mask.
    """
    width = _check_range("width", width, lo=0.0)
    threshold = _check_range("threshold", threshold, 0.0, 1.0)
    if side not in FALLOFF_SIDES:
        raise ValueError(f"side must be one of {FALLOFF_SIDES}, got {side!r}")
    if curve not in FALLOFF_CURVES:
        raise ValueError(f"curve must be one of {FALLOFF_CURVES}, got {curve!r}")
    x, restore = _check(mask, "mask")
    inside = x >= threshold
    if width == 0.0:
        return restore(inside.to(x.dtype))
    cap = width + 1.0
    dt = x.dtype
    if side == "outside":
        t = 1.0 - _distance(~inside, cap, dt) / width
    elif side == "inside":
        t = _distance(inside, cap, dt) / width
    else:
        s = torch.where(inside, 0.5 - _distance(inside, cap, dt), _distance(~inside, cap, dt) - 0.5)
        t = 0.5 - s / width
    v = _shape_curve(t.clamp(0, 1), curve)
    return restore(v.to(x.dtype))


# ----------------------------------------------------------------------------------------------
# Combine, resize, preview
# ----------------------------------------------------------------------------------------------

def resize(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Bring a map to ``h x w`` the way the sampler does (the pack's rule, :func:`pixels_core.masks.fit`)."""
    x, restore = _check(m, "map")
    return restore(_masks.fit(x[:, None], int(h), int(w), name="map")[:, 0])


def combine(a: torch.Tensor, b: torch.Tensor, mode: str = "min", amount: float = 1.0) -> torch.Tensor:
    """Combine two maps: ``min``, ``max``, ``multiply`` (a b) or ``screen`` (1 - (1 - a)(1 - b)).

    ``amount`` blends from ``a`` (0) to the combination (1). A batch of 1 broadcasts against a batch of B;
    ``b`` of another size is resized to ``a`` (see :func:`resize`). In paper polarity ``min`` releases a pixel
    as early as either map asks (union of edits), ``max`` as late (intersection).
    """
    if mode not in COMBINE_MODES:
        raise ValueError(f"mode must be one of {COMBINE_MODES}, got {mode!r}")
    amount = _check_range("amount", amount, 0.0, 1.0)
    xa, restore = _check(a, "map_a")
    xb, _ = _check(b, "map_b")
    xb = xb.to(xa.device, xa.dtype)
    if xa.shape[0] != xb.shape[0] and 1 not in (xa.shape[0], xb.shape[0]):
        raise ValueError(f"map_a has batch {xa.shape[0]} and map_b batch {xb.shape[0]}: give equal batches or one map")
    if xb.shape[-2:] != xa.shape[-2:]:
        xb = _masks.fit(xb[:, None], *xa.shape[-2:], name="map_b")[:, 0]
    xa, xb = xa.clamp(0, 1), xb.clamp(0, 1)
    if mode == "min":
        c = torch.minimum(xa, xb)
    elif mode == "max":
        c = torch.maximum(xa, xb)
    elif mode == "multiply":
        c = xa * xb
    else:
        c = 1.0 - (1.0 - xa) * (1.0 - xb)
    out = xa + amount * (c - xa) if amount != 1.0 else c
    if a.ndim == 2 and out.shape[0] > 1:
        return out.clamp(0, 1).to(a.dtype if a.dtype.is_floating_point else torch.float32)
    return restore(out)


def preview(m: torch.Tensor, h: int, w: int, steps: int, curve: str = "linear", gamma: float = 1.0):
    """The map as the progressive sampler sees it: resized to the latent grid ``h x w`` (as ``prepare_map``) and the
    release step of each latent pixel (``pixels.release_step``: ``steps`` = never released).

    Returns ``(map (B, h, w), release image (B, h, w) in [0, 1]: black = step 0, white = kept, steps (B, h, w) long)``.
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps}")
    small = resize(m, h, w)
    x = small if small.ndim == 3 else small[None]
    rel = _px.release_step(x.float(), int(steps), curve, gamma)
    img = _px.release_schedule_image(x.float(), int(steps), curve, gamma)
    return x.to(small.dtype), img, rel


def release_summary(steps_map: torch.Tensor, steps: int) -> str:
    """Text table: for each release step present, the share of latent pixels released there."""
    vals, counts = torch.unique(steps_map.reshape(-1), return_counts=True)
    total = float(steps_map.numel())
    lines = [f"{steps} steps; share of latent pixels by release step:"]
    for v, c in zip(vals.tolist(), counts.tolist()):
        label = "never (kept as source)" if v >= steps else f"step {v}"
        lines.append(f"  {label}: {100.0 * c / total:.1f} %")
    return "\n".join(lines)
