"""The shared mask contract and resize rule (pixels_core.masks) and the seeded CPU noise (pixels_core.noise)."""
import logging

import pytest
import torch

from pixels_core import masks
from pixels_core import noise as pxnoise


def triangle_downscale_1d(x: torch.Tensor, out: int) -> torch.Tensor:
    """Antialiased linear (triangle) resampling along the last axis, written out: output cell ``i`` is centred at
    ``(i + 0.5) * f - 0.5`` input pixels, tap weights ``1 - |d| / f`` over the taps inside the image, renormalised."""
    n = x.shape[-1]
    f = n / out
    rows = []
    for i in range(out):
        c = (i + 0.5) * f - 0.5
        w = torch.tensor([max(0.0, 1.0 - abs(j - c) / f) for j in range(n)], dtype=torch.float64)
        rows.append(w / w.sum())
    return x.double() @ torch.stack(rows).T


def test_fit_shrinks_with_antialiasing():
    g = torch.Generator().manual_seed(0)
    m = torch.rand(1, 1, 16, 24, generator=g, dtype=torch.float64)
    got = masks.fit(m, 4, 6)
    want = triangle_downscale_1d(triangle_downscale_1d(m, 6).transpose(-1, -2), 4).transpose(-1, -2)
    assert torch.allclose(got, want, atol=1e-12)
    # a binary mask becomes its coverage: a 1-cell-wide line shrunk 8x is grey, not lost or kept whole (aliasing)
    line = torch.zeros(1, 1, 64, 64)
    line[..., 3, :] = 1.0
    small = masks.fit(line, 8, 8)
    assert 0.0 < float(small[..., 0, :].min()) < 0.25


def test_fit_crops_other_aspect_ratios_and_says_so(caplog):
    m = torch.zeros(1, 1, 8, 16)
    m[..., 4:12] = 1.0  # the centre square is white, the sides black
    with caplog.at_level(logging.WARNING, logger="pixels"):
        out = masks.fit(m, 4, 4, name="edit_map of exemplar 1")
    assert torch.equal(out, torch.ones(1, 1, 4, 4))
    assert "edit_map of exemplar 1 is 16x8" in caplog.text and "centre crop" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pixels"):
        masks.fit(torch.zeros(1, 1, 16, 16), 4, 4, name="same aspect")
    assert caplog.text == ""


def test_fit_keeps_dtype_and_returns_same_size_untouched():
    m = torch.rand(2, 1, 8, 8).half()
    assert masks.fit(m, 4, 4).dtype == torch.float16
    assert masks.fit(m, 8, 8) is m


@pytest.mark.parametrize("bad,msg", [
    (torch.full((4, 4), float("nan")), "NaN"),
    (torch.full((4, 4), float("inf")), "NaN or infinite"),
    (torch.full((4, 4), 1.5), "outside"),
    (torch.full((4, 4), -0.2), "outside"),
    (torch.zeros(0, 4, 4), "empty"),
    (torch.zeros(1, 3, 4, 4), "single-channel"),
])
def test_bad_masks_get_clear_errors_naming_the_input(bad, msg):
    with pytest.raises(ValueError, match=msg) as e:
        masks.as_mask(bad, "noise_mask")
    assert "noise_mask" in str(e.value)


def test_mask_batch_rule():
    assert masks.as_mask(torch.zeros(1, 4, 4), "m", batch=3).shape == (1, 1, 4, 4)
    assert masks.as_mask(torch.zeros(3, 4, 4), "m", batch=3).shape == (3, 1, 4, 4)
    with pytest.raises(ValueError, match="batch 2 but the image has batch 3"):
        masks.as_mask(torch.zeros(2, 4, 4), "m", batch=3)


@pytest.mark.parametrize("seed", [0, 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1])
def test_derived_seeds_stay_in_range_for_every_widget_seed(seed):
    s = pxnoise.derive_seed(seed, "pixels exemplar", 0)
    assert 0 <= s < 2 ** 63
    torch.Generator().manual_seed(s)  # accepted by torch
    assert pxnoise.randn((2, 3), seed, "x").shape == (2, 3)


def test_salts_give_different_draws_and_seeds_repeat():
    a = pxnoise.randn((64,), 5, "a")
    assert torch.equal(a, pxnoise.randn((64,), 5, "a"))
    assert not torch.equal(a, pxnoise.randn((64,), 5, "b"))
    assert not torch.equal(a, pxnoise.randn((64,), 6, "a"))


def test_per_item_draw_is_the_same_alone_and_in_a_batch():
    ref = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    both = pxnoise.per_item_randn(ref, 7, "ex", 0)
    assert both.device.type == "cpu" and both.shape == ref.shape
    for i in range(3):
        assert torch.equal(both[i:i + 1], pxnoise.per_item_randn(ref[i:i + 1], 7, "ex", 0))
    assert not torch.equal(both[0], both[1])
    # the draw depends on the item's own reference, not on its position in the batch
    swapped = pxnoise.per_item_randn(ref.flip(0), 7, "ex", 0)
    assert torch.equal(swapped[0], both[2])


def test_item_noise_sampler_streams_per_item():
    ref = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2)).double()
    ns, alone = pxnoise.ItemNoiseSampler(ref, 3, "anc"), pxnoise.ItemNoiseSampler(ref[1:], 3, "anc")
    for _ in range(3):
        a, b = ns(), alone()
        assert a.dtype == torch.float64 and a.shape == ref.shape
        assert torch.equal(a[1:], b)
    assert not torch.equal(ns(), ns())  # fresh noise every step
