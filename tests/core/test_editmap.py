"""Edit-map operations (pixels_core.editmap): hand-computed cases, scipy.ndimage references, shape/dtype/range."""
import math

import pytest
import torch

from pixels_core import editmap as em
from pixels_core import masks
from pixels_core import pixels as px

import numpy as np

try:  # scipy is the reference implementation (test extra); without it only the hand-computed cases run
    import scipy.ndimage as nd
except ImportError:  # pragma: no cover
    nd = None
needs_scipy = pytest.mark.skipif(nd is None, reason="scipy not installed (pip install .[test]): reference comparisons skipped")


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def per_map(fn, x):
    return np.stack([fn(x[i].numpy()) for i in range(x.shape[0])])


def disk(r):
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx ** 2 + yy ** 2) <= r * r


# ---------------------------------------------------------------------------------------------- grow / shrink

def test_grow_hand_case():
    m = torch.zeros(1, 5, 5)
    m[0, 2, 2] = 1.0
    g = em.grow(m, 1, "disk")[0]
    exp = torch.zeros(5, 5)
    exp[2, 1:4] = 1
    exp[1:4, 2] = 1  # a plus: the radius-1 disk
    assert torch.equal(g, exp)
    sq = em.grow(m, 1, "square")[0]
    exp_sq = torch.zeros(5, 5)
    exp_sq[1:4, 1:4] = 1
    assert torch.equal(sq, exp_sq)
    assert torch.equal(em.grow(sq[None], -1, "square")[0], m[0])  # erosion undoes it here
    assert torch.equal(em.grow(m, 0), m)


@needs_scipy
@pytest.mark.parametrize("r", [1, 2, 3, 6, 13])
@pytest.mark.parametrize("shape", ["disk", "square"])
def test_grow_matches_scipy(r, shape):
    x = rand(2, 19, 27, seed=r)
    fp = disk(r) if shape == "disk" else np.ones((2 * r + 1, 2 * r + 1), bool)
    dil = per_map(lambda a: nd.grey_dilation(a, footprint=fp), x)
    ero = per_map(lambda a: nd.grey_erosion(a, footprint=fp), x)
    assert np.array_equal(em.grow(x, r, shape).numpy(), dil)
    assert np.array_equal(em.grow(x, -r, shape).numpy(), ero)


def test_grow_radius_larger_than_map():
    x = rand(1, 4, 6)
    assert torch.equal(em.grow(x, 50, "square"), torch.full_like(x, float(x.max())))
    # (scipy 1.17 returns garbage for footprints much larger than the map, so the reference is the global max)
    assert torch.equal(em.grow(x, 50, "disk"), torch.full_like(x, float(x.max())))
    assert torch.equal(em.grow(x, -50, "disk"), torch.full_like(x, float(x.min())))


# ---------------------------------------------------------------------------------------------- blur

@needs_scipy
def test_gaussian_kernel_is_scipys():
    k = em.gaussian_kernel(1.5)
    assert k.numel() == 2 * int(4 * 1.5 + 0.5) + 1
    assert math.isclose(float(k.sum()), 1.0, rel_tol=1e-12)
    w = np.zeros(31)
    w[15] = 1
    assert np.allclose(nd.gaussian_filter1d(w, 1.5, truncate=4.0)[15 - 6:15 + 7], k.numpy(), atol=1e-15)


def test_blur_hand_case_constant_and_impulse():
    c = torch.full((1, 7, 9), 0.3, dtype=torch.float64)
    assert torch.allclose(em.blur(c, 2.0), c, atol=1e-12)  # reflect borders keep a constant map constant
    imp = torch.zeros(1, 21, 21, dtype=torch.float64)
    imp[0, 10, 10] = 1.0
    k = em.gaussian_kernel(1.0)
    assert torch.allclose(em.blur(imp, 1.0)[0, 6:15, 6:15], torch.outer(k, k), atol=1e-15)


@needs_scipy
@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.3, 12.0])
@pytest.mark.parametrize("fft", [False, True])
def test_blur_matches_scipy(sigma, fft, monkeypatch):
    if fft:
        monkeypatch.setattr(em, "FFT_RADIUS", 0)
    for shape in [(2, 23, 31), (1, 5, 3), (1, 1, 9)]:
        x = rand(*shape, seed=shape[1])
        ref = per_map(lambda a: nd.gaussian_filter(a, sigma, mode="reflect", truncate=4.0), x)
        assert np.abs(em.blur(x, sigma).numpy() - ref).max() < 1e-10
    x32 = rand(1, 40, 33, dtype=torch.float32)
    ref = per_map(lambda a: nd.gaussian_filter(a.astype(np.float64), sigma, mode="reflect", truncate=4.0), x32)
    assert np.abs(em.blur(x32, sigma).numpy() - ref).max() < 1e-5


def test_blur_zero_sigma_is_identity():
    x = rand(1, 6, 6)
    assert torch.equal(em.blur(x, 0.0), x)


# ---------------------------------------------------------------------------------------------- tone

def test_levels_hand_case():
    m = torch.tensor([[0.0, 0.2, 0.5, 0.8, 1.0]])
    assert torch.allclose(em.levels(m, 0.2, 0.8), torch.tensor([[0.0, 0.0, 0.5, 1.0, 1.0]]))
    assert torch.allclose(em.levels(m, gamma=2.0), m.sqrt())
    assert torch.allclose(em.levels(m, out_black=1.0, out_white=0.0), 1 - m)
    assert torch.allclose(em.levels(m, out_black=0.2, out_white=0.6), 0.2 + 0.4 * m)


def test_equalize_hand_case():
    m = torch.tensor([[[0.0, 0.0, 0.5, 1.0]], [[0.1, 0.2, 0.2, 0.9]]])
    out = em.equalize(m, 256)
    assert torch.allclose(out[0, 0], torch.tensor([0.0, 0.0, 0.5, 1.0]))
    assert torch.allclose(out[1, 0], torch.tensor([0.0, 2 / 3, 2 / 3, 1.0]))
    c = torch.full((1, 3, 3), 0.4)
    assert torch.equal(em.equalize(c), c)


def test_equalize_flattens_histogram():
    x = rand(1, 64, 64) ** 2  # skewed to dark: 3/4 of the pixels below 0.56
    before = torch.histc(x.float(), bins=4, min=0, max=1)
    out = em.equalize(x, 1024)
    hist = torch.histc(out.float(), bins=4, min=0, max=1)
    assert float(before.min()) / float(before.max()) < 0.3
    assert float(hist.min()) / float(hist.max()) > 0.85


def test_percentile_and_stretch_match_numpy():
    x = rand(2, 13, 11)
    for q in (0, 1, 37.5, 99, 100):
        assert np.allclose(em.percentile(x, q).numpy(), [np.percentile(x[i].numpy(), q) for i in range(2)])
    lo = np.percentile(x[1].numpy(), 5)
    hi = np.percentile(x[1].numpy(), 90)
    ref = np.clip((x[1].numpy() - lo) / (hi - lo), 0, 1)
    assert np.allclose(em.stretch(x, 5, 90)[1].numpy(), ref)
    m = torch.tensor([[0.25, 0.5, 0.75]])
    assert torch.allclose(em.stretch(m, 0, 100), torch.tensor([[0.0, 0.5, 1.0]]))
    c = torch.full((1, 2, 2), 0.3)
    assert torch.equal(em.stretch(c), c)


def test_invert_and_quantize_hand_case():
    m = torch.tensor([[0.0, 0.1, 0.4, 0.5, 0.84, 1.0]])
    assert torch.allclose(em.invert(m), 1 - m)
    assert torch.allclose(em.quantize(m, 3), torch.tensor([[0.0, 0.0, 0.5, 0.5, 1.0, 1.0]]))
    assert torch.allclose(em.quantize(m, 2), torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 1.0]]))
    assert len(torch.unique(em.quantize(rand(1, 30, 30), 5))) <= 5


# ---------------------------------------------------------------------------------------------- depth, ramps

def test_from_depth_hand_case():
    d = torch.tensor([[[2.0, 4.0, 6.0]]])  # white (6) is near
    assert torch.allclose(em.from_depth(d, "far", "near"), torch.tensor([[[0.0, 0.5, 1.0]]]))  # far edited
    assert torch.allclose(em.from_depth(d, "near", "near"), torch.tensor([[[1.0, 0.5, 0.0]]]))
    assert torch.allclose(em.from_depth(d, "near", "far"), torch.tensor([[[0.0, 0.5, 1.0]]]))
    # range: editing starts at half way toward the edited side and is full from there on
    assert torch.allclose(em.from_depth(d, "far", "near", 0.5, 1.0), torch.tensor([[[0.0, 1.0, 1.0]]]))
    assert torch.allclose(em.from_depth(d, "far", "near", 0.0, 0.5), torch.tensor([[[0.0, 0.0, 1.0]]]))


def test_ramp_hand_cases():
    r = em.ramp(1, 4, "linear", angle=0)
    assert torch.allclose(r, torch.tensor([[[0.125, 0.375, 0.625, 0.875]]]))
    r180 = em.ramp(1, 4, "linear", angle=180)
    assert torch.allclose(r180, r.flip(-1))
    up = em.ramp(4, 1, "linear", angle=90)[0, :, 0]  # 90 degrees: 0 at the bottom, 1 at the top
    assert torch.allclose(up, torch.tensor([0.875, 0.625, 0.375, 0.125]))
    s = em.ramp(1, 4, "linear", angle=0, start=0.25, end=0.75)
    assert torch.allclose(s, torch.tensor([[[0.0, 0.25, 0.75, 1.0]]]))
    rad = em.ramp(2, 2, "radial")  # centres at distance sqrt(0.5) px from the middle, half-side 1 px
    assert torch.allclose(rad, torch.full((1, 2, 2), math.sqrt(0.5)))
    diag = em.ramp(8, 8, "linear", angle=45)
    assert torch.allclose(diag[0], diag[0].t().flip(0).flip(1))  # symmetric about the anti-diagonal
    assert em.ramp(3, 5, batch=2).shape == (2, 3, 5)


# ---------------------------------------------------------------------------------------------- distance, falloff

@needs_scipy
def test_distance_transform_matches_scipy():
    m = rand(3, 31, 26, seed=3) > 0.93
    dist = em.distance_transform(m)
    assert np.allclose(dist.numpy(), per_map(nd.distance_transform_edt, m))
    capped = em.distance_transform(m, 2.5)
    assert np.allclose(capped.numpy(), np.minimum(per_map(nd.distance_transform_edt, m), 2.5))
    assert torch.isinf(em.distance_transform(torch.ones(1, 3, 3, dtype=torch.bool))).all()


def test_falloff_hand_case():
    m = torch.tensor([[[1.0, 0.0, 0.0, 0.0, 0.0]]])
    assert torch.allclose(em.falloff(m, 2, "outside"), torch.tensor([[[1.0, 0.5, 0.0, 0.0, 0.0]]]))
    assert torch.allclose(em.falloff(m, 0), m)
    m2 = torch.tensor([[[1.0, 1.0, 1.0, 1.0, 0.0]]])
    assert torch.allclose(em.falloff(m2, 2, "inside"), torch.tensor([[[1.0, 1.0, 1.0, 0.5, 0.0]]]))
    assert torch.allclose(em.falloff(m2, 2, "centered"), torch.tensor([[[1.0, 1.0, 1.0, 0.75, 0.25]]]))
    sm = em.falloff(torch.tensor([[[1.0, 0.0, 0.0, 0.0, 0.0]]]), 4, "outside", "smooth")
    t = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0])
    assert torch.allclose(sm[0, 0], t * t * (3 - 2 * t))


@needs_scipy
def test_falloff_matches_scipy_distance():
    m = torch.zeros(2, 40, 30)
    m[0, 10:20, 5:12] = 1
    m[1, 30:, 25:] = 1
    out = em.falloff(m, 6.0, "outside")
    d = per_map(nd.distance_transform_edt, m < 0.5)
    assert np.allclose(out.numpy(), np.clip(1 - d / 6.0, 0, 1), atol=1e-6)
    assert torch.allclose(em.falloff(torch.zeros(1, 4, 4), 3), torch.zeros(1, 4, 4))  # empty mask: nothing


# ---------------------------------------------------------------------------------------------- combine, preview

def test_combine_hand_case():
    a = torch.tensor([[0.2, 0.6]])
    b = torch.tensor([[0.5, 0.5]])
    assert torch.allclose(em.combine(a, b, "min"), torch.tensor([[0.2, 0.5]]))
    assert torch.allclose(em.combine(a, b, "max"), torch.tensor([[0.5, 0.6]]))
    assert torch.allclose(em.combine(a, b, "multiply"), torch.tensor([[0.1, 0.3]]))
    assert torch.allclose(em.combine(a, b, "screen"), torch.tensor([[0.6, 0.8]]))
    assert torch.allclose(em.combine(a, b, "min", amount=0.5), torch.tensor([[0.2, 0.55]]))


def test_combine_broadcasts_batch_and_resizes():
    a = rand(3, 8, 8, dtype=torch.float32)
    b = rand(1, 16, 16, dtype=torch.float32)
    out = em.combine(a, b, "max")
    assert out.shape == (3, 8, 8)
    assert torch.allclose(out, torch.maximum(a, masks.fit(b[:, None], 8, 8)[:, 0]))
    with pytest.raises(ValueError, match="batch"):
        em.combine(rand(2, 4, 4), rand(3, 4, 4))


def test_preview_matches_release_step():
    m = em.ramp(32, 32, batch=2)
    small, img, steps = em.preview(m, 4, 4, steps=10)
    assert small.shape == img.shape == steps.shape == (2, 4, 4)
    assert torch.allclose(small, masks.fit(m[:, None], 4, 4)[:, 0])
    assert torch.equal(steps, px.release_step(small.float(), 10))
    assert torch.allclose(img, steps.float() / 10)
    text = em.release_summary(steps, 10)
    assert "step 2: 25.0 %" in text and "step 9: 25.0 %" in text


# ---------------------------------------------------------------------------------------------- contracts

OPS = {
    "grow": lambda m: em.grow(m, 2),
    "shrink": lambda m: em.grow(m, -2, "square"),
    "blur": lambda m: em.blur(m, 1.5),
    "levels": lambda m: em.levels(m, 0.1, 0.9, 1.7),
    "equalize": lambda m: em.equalize(m),
    "stretch": lambda m: em.stretch(m),
    "invert": em.invert,
    "quantize": lambda m: em.quantize(m, 4),
    "from_depth": lambda m: em.from_depth(m),
    "falloff": lambda m: em.falloff(m, 3.0, "centered"),
    "combine": lambda m: em.combine(m, m.flip(-1), "screen"),
    "resize_same": lambda m: em.resize(m, *m.shape[-2:]),
}


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_ops_keep_shape_dtype_batch_and_range(name, dtype):
    op = OPS[name]
    x = rand(3, 12, 10, seed=5).to(dtype)
    y = op(x)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    y2 = op(x[1])  # (H, W) works and equals the batch item
    assert y2.shape == x.shape[1:]
    assert torch.allclose(y2.float(), y[1].float(), atol=1e-3 if dtype == torch.float16 else 1e-6)


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_reject_nan_and_empty(name):
    bad = torch.rand(1, 4, 4)
    bad[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        OPS[name](bad)
    with pytest.raises(ValueError, match="empty"):
        OPS[name](torch.zeros(1, 0, 4))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(B, H, W\)"):
        OPS[name](torch.rand(1, 1, 4, 4))


def test_bad_parameters_give_clear_errors():
    m = torch.rand(1, 4, 4)
    with pytest.raises(ValueError, match="white point"):
        em.levels(m, 0.6, 0.4)
    with pytest.raises(ValueError, match="gamma"):
        em.levels(m, gamma=0)
    with pytest.raises(ValueError, match="sigma"):
        em.blur(m, -1)
    with pytest.raises(ValueError, match="shape"):
        em.grow(m, 1, "star")
    with pytest.raises(ValueError, match="flat"):
        em.from_depth(torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="range_end"):
        em.from_depth(m, start=0.5, end=0.5)
    with pytest.raises(ValueError, match="levels"):
        em.quantize(m, 1)
    with pytest.raises(ValueError, match="start and end"):
        em.ramp(4, 4, start=0.3, end=0.3)
    with pytest.raises(ValueError, match="mode"):
        em.combine(m, m, "xor")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to compare against the CPU")
def test_same_result_on_cuda_as_on_cpu():
    # every op builds its tensors on the input's device: on CUDA it gives the CPU's answer, on CUDA
    m = torch.rand(2, 9, 9, generator=torch.Generator().manual_seed(3))
    for name, op in OPS.items():
        out = op(m.cuda())
        assert out.device.type == "cuda", name
        torch.testing.assert_close(out.cpu(), op(m), atol=1e-5, rtol=1e-5, msg=name)
    assert em.ramp(4, 4, device="cuda").device.type == "cuda"


# ---------------------------------------------------------------------------------------------- fast paths (issue 13)

@needs_scipy
@pytest.mark.parametrize("shape", ["disk", "square"])
@pytest.mark.parametrize("r", [1, 2, 5, 9])
def test_grow_in_row_blocks_matches_scipy(shape, r, monkeypatch):
    # tiny blocks: many blocks of rows, each with r rows of context (borders, blocks shorter than r)
    monkeypatch.setattr(em, "_BLOCK_PIXELS", 40)
    x = rand(2, 37, 23, seed=r)
    fp = disk(r) if shape == "disk" else np.ones((2 * r + 1, 2 * r + 1), bool)
    assert np.array_equal(em.grow(x, r, shape).numpy(), per_map(lambda a: nd.grey_dilation(a, footprint=fp), x))
    assert np.array_equal(em.grow(x, -r, shape).numpy(), per_map(lambda a: nd.grey_erosion(a, footprint=fp), x))
    b = (rand(1, 37, 23, seed=7) > 0.97).double()  # sparse binary map
    assert np.array_equal(em.grow(b, r, shape).numpy(), per_map(lambda a: nd.grey_dilation(a, footprint=fp), b))


@pytest.mark.parametrize("w", [0, 1, 2, 3, 7, 8, 20])
def test_running_max_is_the_window_max(w):
    x = rand(2, 5, 13, seed=w)
    n = x.shape[-1]
    exp = torch.stack([x[..., max(0, i - w):i + w + 1].amax(-1) for i in range(n)], -1)
    assert torch.equal(em._running_max(x, w, -1), exp)
    assert torch.equal(em._running_max(x.transpose(-1, -2).contiguous(), w, -2), exp.transpose(-1, -2))


@needs_scipy
@pytest.mark.parametrize("block", [13, 1 << 17])
@pytest.mark.parametrize("envelope_cap", [0.0, 48.0, float("inf")])  # always / far only / never the envelope
def test_distance_transform_blocks_and_edge_cases_match_scipy(block, envelope_cap, monkeypatch):
    monkeypatch.setattr(em, "_BLOCK_PIXELS", block)
    monkeypatch.setattr(em, "_ENVELOPE_CAP", envelope_cap)
    m = torch.ones(4, 29, 17, dtype=torch.bool)
    m[0, 3, 4] = False  # one feature pixel: distances to it everywhere
    m[1] = rand(1, 29, 17, seed=11)[0] > 0.5
    m[2, :, 16] = False  # a feature column at the right border: long row distances
    m[3] = False  # no mask at all: zeros
    ref = per_map(nd.distance_transform_edt, m)
    assert np.allclose(em.distance_transform(m).numpy(), ref, rtol=0, atol=1e-12)
    for cap in (0.5, 1.0, 3.0, 7.5, 100.0):
        assert np.allclose(em.distance_transform(m, cap).numpy(), np.minimum(ref, cap), rtol=0, atol=1e-12)
    empty = torch.ones(2, 5, 6, dtype=torch.bool)  # no feature pixel: inf
    empty[1, 2, 2] = False
    d = em.distance_transform(empty)
    assert torch.isinf(d[0]).all() and np.allclose(d[1].numpy(), nd.distance_transform_edt(empty[1].numpy()))


@needs_scipy
def test_falloff_all_sides_match_scipy_on_a_large_map():
    m = torch.zeros(1, 300, 260)
    m[0, 40:200, 30:90] = 1
    m[0, 250:, 200:] = 1
    m[0, 120, 180] = 1
    d_out = nd.distance_transform_edt(m[0].numpy() < 0.5)
    d_in = nd.distance_transform_edt(m[0].numpy() >= 0.5)
    w = 17.0
    assert np.allclose(em.falloff(m, w, "outside")[0].numpy(), np.clip(1 - d_out / w, 0, 1), atol=1e-6)
    assert np.allclose(em.falloff(m, w, "inside")[0].numpy(), np.clip(d_in / w, 0, 1), atol=1e-6)
    s = np.where(m[0].numpy() >= 0.5, 0.5 - d_in, d_out - 0.5)
    assert np.allclose(em.falloff(m, w, "centered")[0].numpy(), np.clip(0.5 - s / w, 0, 1), atol=1e-6)


@needs_scipy
def test_distance_transform_cumulative_path_matches_scipy(monkeypatch):
    # the GPU's column pass (cumulative max/min), run on the CPU
    monkeypatch.setattr(em, "_scan_columns", lambda device: False)
    m = rand(3, 31, 26, seed=3) > 0.9
    m[2] = True
    m[2, 30, 0] = False
    ref = per_map(nd.distance_transform_edt, m)
    assert np.allclose(em.distance_transform(m).numpy(), ref, rtol=0, atol=1e-12)
    assert np.allclose(em.distance_transform(m, 4.0).numpy(), np.minimum(ref, 4.0), rtol=0, atol=1e-12)


@needs_scipy
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 4.4])
@pytest.mark.parametrize("band", [8, 16])
def test_blur_in_row_blocks_matches_scipy(sigma, band, monkeypatch):
    # small bands: the blocked CPU path (blocks of rows, last block short, reflect rows at top and bottom)
    monkeypatch.setattr(em, "_BAND_MIN", band)
    for shape in [(2, 101, 37), (1, 150, 9)]:
        x = rand(*shape, seed=shape[1])
        ref = per_map(lambda a: nd.gaussian_filter(a, sigma, mode="reflect", truncate=4.0), x)
        assert np.abs(em.blur(x, sigma).numpy() - ref).max() < 1e-10
        x32 = x.float()
        ref32 = per_map(lambda a: nd.gaussian_filter(a.astype(np.float64), sigma, mode="reflect", truncate=4.0), x32)
        assert np.abs(em.blur(x32, sigma).numpy() - ref32).max() < 1e-5


@needs_scipy
@pytest.mark.parametrize("shape", ["disk", "square"])
@pytest.mark.parametrize("r", [1, 3, 8])
def test_grow_binary_fast_path_matches_general_path_and_scipy(shape, r, monkeypatch):
    # 0/1 maps take the uint8 path: it must equal the float path and scipy (edges, all-0/all-1, odd shapes, batch)
    fp = disk(r) if shape == "disk" else np.ones((2 * r + 1, 2 * r + 1), bool)
    maps = [(rand(3, 37, 23, seed=r) > 0.9).double(), (rand(2, 70, 91, seed=r + 1) > 0.4).float(),
            torch.zeros(1, 9, 5), torch.ones(2, 5, 11, dtype=torch.float64)]
    edge = torch.zeros(1, 17, 13)
    edge[0, 0, :] = 1
    edge[0, :, -1] = 1
    maps.append(edge)
    for x in maps:
        assert em._as_binary(em._check(x)[0]) is not None
        for p in (r, -r):
            fast = em.grow(x, p, shape)
            with monkeypatch.context() as mp:
                mp.setattr(em, "_as_binary", lambda x: None)
                general = em.grow(x, p, shape)
            op = nd.grey_dilation if p > 0 else nd.grey_erosion
            assert fast.dtype == x.dtype and torch.equal(fast, general)
            assert np.array_equal(fast.numpy(), per_map(lambda a: op(a, footprint=fp), x))
    assert em._as_binary(torch.tensor([[[0.0, 1.0, 0.5]]])) is None
    assert em._as_binary(torch.tensor([[[0.0, 1.0, 2.0, -1.0]]])) is None
    late = torch.zeros(1, 100, 100)
    late[0, -1, -1] = 0.25  # binary in the first 4096 pixels only: the full check rejects it
    assert em._as_binary(late) is None
    assert torch.equal(em.grow(late, 2, "square")[0, -3:, -3:], torch.full((3, 3), 0.25))
