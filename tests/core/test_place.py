"""Exemplar placement (pixels_core.place): exact coverage of placed rectangles, rotations equal torch.rot90, identity
bit for bit, feather profile, antialiasing, the sampler against grid_sample, batches, clear errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from pixels_core import place as pl


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_square_at_known_position_and_scale_exact_coverage():
    ex = rand(1, 4, 4, 3)
    src = torch.zeros(1, 16, 32, 3)
    # centre at x = 12.5 px: the 4 px square spans [10.5, 14.5] -> half-covered columns 10 and 14
    img, m, a = pl.place(ex, src, x=12.5 / 32, y=0.5, scale=1.0, scale_by="exemplar pixels")
    exp = torch.zeros(16, 32)
    exp[6:10, 11:14] = 1.0
    exp[6:10, 10] = 0.5
    exp[6:10, 14] = 0.5
    assert torch.equal(a[0], exp)
    assert torch.equal(m[0], 1.0 - exp)
    # fraction of the shorter side: an 8x4 exemplar with scale 0.5 into 32x32 -> longer side 16 px (factor 2)
    ex2 = rand(1, 4, 8, 3, seed=1)
    _, m2, a2 = pl.place(ex2, torch.zeros(1, 32, 32, 3), scale=0.5)
    exp2 = torch.zeros(32, 32)
    exp2[12:20, 8:24] = 1.0
    assert torch.equal(a2[0], exp2)
    assert pl.scale_factor(0.5, "source shorter side", (32, 48), (4, 8)) == 2.0


def test_upscale_by_two_repeats_pixels_at_their_centres():
    ex = rand(1, 4, 4, 3)
    img, _, a = pl.place(ex, torch.zeros(1, 8, 8, 3), scale=2.0, scale_by="exemplar pixels")
    assert torch.equal(a[0], torch.ones(8, 8))
    ref = F.interpolate(ex.movedim(-1, 1).double(), size=(8, 8), mode="bilinear", align_corners=False).movedim(1, -1)
    assert torch.allclose(img.double(), ref, atol=1e-6)


@pytest.mark.parametrize("deg,k", [(90, 1), (180, 2), (270, 3), (-90, 3), (360, 0)])
def test_rotation_by_quarter_turns_equals_rot90(deg, k):
    ex = rand(2, 10, 10, 3, seed=deg % 7)
    src = rand(2, 10, 10, 3, seed=99)
    img, m, a = pl.place(ex, src, rotation=deg, scale=1.0)
    assert torch.equal(img, torch.rot90(ex, k, (1, 2)))
    assert torch.equal(m, torch.zeros(2, 10, 10))


def test_identity_placement_is_bit_exact_where_the_mask_is_one():
    ex = rand(1, 12, 20, 3, seed=3)
    src = rand(1, 12, 20, 3, seed=4)
    mask = torch.zeros(1, 12, 20)
    mask[0, 2:9, 5:17] = 1.0
    mask[0, 10, 1] = 0.25
    img, m, _ = pl.place(ex, src, mask, scale=1.0, scale_by="exemplar pixels")
    inside = mask[0] == 1
    assert torch.equal(img[0][inside], ex[0][inside])
    assert torch.equal(img[0][mask[0] == 0], src[0][mask[0] == 0])
    assert torch.allclose(img[0, 10, 1], 0.75 * src[0, 10, 1] + 0.25 * ex[0, 10, 1], atol=1e-7)
    assert torch.equal(m[0], 1.0 - mask[0])
    # a LoadImage mask (1 = transparent) means the complement
    img2, m2, _ = pl.place(ex, src, 1.0 - mask, scale=1.0, scale_by="exemplar pixels",
                           mask_meaning=pl.MASK_MEANINGS[1])
    assert torch.equal(img2[0][inside], ex[0][inside]) and torch.equal(m2, m)


def test_rgba_exemplar_uses_its_alpha():
    ex = rand(1, 8, 8, 4, seed=5)
    ex[..., 3] = 0.0
    ex[0, 2:6, 2:6, 3] = 1.0
    src = torch.zeros(1, 8, 8, 3)
    img, m, a = pl.place(ex, src, scale=1.0)
    assert float(a.sum()) == 16.0 and img.shape == (1, 8, 8, 3)
    assert torch.equal(img[0, 2:6, 2:6], ex[0, 2:6, 2:6, :3])


@pytest.mark.parametrize("feather", [3.0, 8.0])
def test_feather_profile_monotone_and_of_the_right_width(feather):
    ex = torch.ones(1, 8, 8, 3)
    _, m, a = pl.place(ex, torch.zeros(1, 40, 40, 3), scale=1.0, scale_by="exemplar pixels", feather=feather)
    row = m[0, 20].double()  # cut-out spans columns 16..23
    right = row[23:]
    assert bool((right[1:] >= right[:-1]).all())
    assert bool((row[:17].flip(0)[1:] >= row[:17].flip(0)[:-1]).all())
    assert torch.equal(m[0, 16:24, 16:24], torch.zeros(8, 8))  # the cut-out keeps its size
    for d in range(1, int(feather) + 2):  # linear: 1 - (1 - d / feather) at d px outside the cut-out
        assert float(row[23 + d]) == pytest.approx(min(1.0, d / feather), abs=1e-6)
    assert float(row[23 + int(feather)]) == 1.0 and float(row[23 + int(feather) - 1]) < 1.0


def test_downscale_is_antialiased():
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None]) % 2).float()
    ex = checker[None, ..., None].expand(1, 32, 32, 3).contiguous()
    img, _, a = pl.place(ex, torch.zeros(1, 16, 16, 3), scale=0.25, scale_by="exemplar pixels")
    inner = img[0, 5:11, 5:11]  # the 8x8 placed exemplar spans 4..11
    assert torch.allclose(inner, torch.full_like(inner, 0.5), atol=0.02)  # no aliasing to black/white
    assert float(a.sum()) == pytest.approx(64.0, abs=1e-6)


def test_bilinear_matches_grid_sample():
    img = rand(2, 3, 7, 9, seed=6).double()
    qx = rand(2, 5, 6, seed=7).double() * 13 - 2
    qy = rand(2, 5, 6, seed=8).double() * 11 - 2
    ours = pl.bilinear(img, qx, qy)
    grid = torch.stack([2 * qx / 9 - 1, 2 * qy / 7 - 1], -1)
    ref = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    assert torch.allclose(ours, ref, atol=1e-12)


def test_free_rotation_area_and_centre():
    ex = rand(1, 20, 20, 3, seed=9)
    _, _, a = pl.place(ex, torch.zeros(1, 64, 64, 3), rotation=30.0, scale=1.0, scale_by="exemplar pixels")
    assert float(a.sum()) == pytest.approx(400.0, rel=0.01)
    # the exemplar's centre lands on the frame's centre; a corner of the rotated square where the formula puts it
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    corner = (32 + c * 9.5 + s * 9.5, 32 - s * 9.5 + c * 9.5)  # exemplar pixel (19, 19)'s centre, counter-clockwise
    assert float(a[0, int(corner[1]), int(corner[0])]) > 0


def test_batches():
    ex = rand(1, 8, 8, 3)
    src = rand(3, 16, 16, 3, seed=2)
    img, m, _ = pl.place(ex, src, scale=0.5)
    assert img.shape == (3, 16, 16, 3) and m.shape == (3, 16, 16)
    assert torch.equal(img[1][m[1] == 1], src[1][m[1] == 1])
    img2, _, _ = pl.place(rand(3, 8, 8, 3, seed=4), src, torch.ones(3, 8, 8), scale=0.5)
    assert not torch.equal(img2[0], img2[1])
    with pytest.raises(ValueError, match="batches do not match: exemplar 2, source 3"):
        pl.place(rand(2, 8, 8, 3), src)


def test_errors():
    ex, src = rand(1, 8, 8, 3), torch.zeros(1, 16, 16, 3)
    with pytest.raises(ValueError, match="covers no pixel of the source"):
        pl.place(ex, src, x=2.5)
    with pytest.raises(ValueError, match="covers no pixel"):
        pl.place(ex, src, torch.zeros(1, 8, 8))
    bad = ex.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="exemplar contains NaN"):
        pl.place(bad, src)
    with pytest.raises(ValueError, match="scale must be > 0"):
        pl.place(ex, src, scale=0.0)
    with pytest.raises(ValueError, match="source: expected an IMAGE"):
        pl.place(ex, torch.zeros(16, 16))
    with pytest.raises(ValueError, match="mask contains NaN"):
        pl.place(ex, src, torch.full((1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="scale_by must be one of"):
        pl.place(ex, src, scale_by="big")
