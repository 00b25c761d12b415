"""Segmentation to edit map (pixels_core.segment): levels per segment, orderings, soft edges against the scipy
Gaussian reference, preview, clear errors."""
import pytest
import torch

from pixels_core import segment as seg

import numpy as np

try:  # scipy is the reference implementation (test extra)
    import scipy.ndimage as nd
except ImportError:  # pragma: no cover
    nd = None
needs_scipy = pytest.mark.skipif(nd is None, reason="scipy not installed (pip install .[test]): reference comparisons skipped")

RED, GREEN, BLUE = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def label_image(h=12, w=16):
    """Blue top-left block, red right half, green bottom band (first appearance: blue, red, green)."""
    img = torch.zeros(1, h, w, 3)
    img[0, :, :] = torch.tensor(BLUE)
    img[0, :, w // 2:] = torch.tensor(RED)
    img[0, h - 4:, :] = torch.tensor(GREEN)
    return img


def test_parse_levels():
    assert seg.parse_levels(" 0, 0.5 ,1") == [0.0, 0.5, 1.0]
    assert seg.parse_levels("") == []
    with pytest.raises(ValueError, match=r"entry 2 \('a'\) is not a number"):
        seg.parse_levels("0, a")
    with pytest.raises(ValueError, match="entry 1 is 1.5, outside"):
        seg.parse_levels("1.5")
    with pytest.raises(ValueError, match="outside"):
        seg.parse_levels("nan")


def test_label_image_first_appearance_levels_exact():
    img = label_image()
    m, preview, n = seg.map_from_segments(img, levels="0.1, 0.6, 0.3")
    assert n == 3 and m.shape == (1, 12, 16) and m.dtype == torch.float32
    exp = torch.empty(12, 16)
    exp[:, :8] = 0.1  # blue: first pixel (0, 0)
    exp[:, 8:] = 0.6  # red: first at (0, 8)
    exp[8:, :] = 0.3  # green: first at row 8
    assert torch.equal(m[0], exp)
    assert preview.shape == (1, 12, 16, 3)


def test_label_value_order_and_grey_integer_labels():
    img = label_image()
    # by 8-bit value (R, G, B) ascending: blue 0x0000ff < green 0x00ff00 < red 0xff0000
    m, _, _ = seg.map_from_segments(img, levels="0.1, 0.2, 0.3", order="label value")
    assert float(m[0, 0, 0]) == pytest.approx(0.1) and float(m[0, 11, 0]) == pytest.approx(0.2)
    assert float(m[0, 0, 15]) == pytest.approx(0.3)
    # integer labels 2, 0, 1 as grey k/255 (one channel): label value order indexes by the label
    lab = torch.tensor([[2, 2, 0, 0], [1, 1, 0, 0]], dtype=torch.float32)
    grey = (lab / 255.0)[None, ..., None]
    m, _, n = seg.map_from_segments(grey, levels="0, 0.5, 1", order="label value")
    assert n == 3
    assert torch.equal(m[0], torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]]))
    m, _, _ = seg.map_from_segments(grey, levels="0, 0.5, 1")  # first appearance: 2, 0, 1
    assert torch.equal(m[0], torch.tensor([[0.0, 0.0, 0.5, 0.5], [1.0, 1.0, 0.5, 0.5]]))


def test_batch_of_label_images_shares_one_numbering():
    a = label_image()
    b = torch.zeros_like(a)
    b[:] = torch.tensor(GREEN)
    m, _, n = seg.map_from_segments(torch.cat([a, b]), levels="0.1, 0.6, 0.3")
    assert n == 3 and m.shape == (2, 12, 16)
    assert torch.equal(m[1], torch.full((12, 16), 0.3))


def test_mask_batch_by_index_default_and_overlap():
    mk = torch.zeros(2, 6, 8)
    mk[0, :3, :] = 1.0
    mk[1, :, :2] = 0.7  # soft mask: >= 0.5 counts; the later mask wins where they overlap
    m, _, n = seg.map_from_segments(masks=mk, levels="0.0, 0.5", default=0.9)
    assert n == 2 and m.shape == (1, 6, 8)
    exp = torch.full((6, 8), 0.9)
    exp[:3, :] = 0.0
    exp[:, :2] = 0.5
    assert torch.equal(m[0], exp)
    m1, _, _ = seg.map_from_segments(masks=mk[0], levels="0.25")  # one (H, W) mask
    assert float(m1[0, 0, 0]) == 0.25 and float(m1[0, 5, 0]) == 1.0


@needs_scipy
@pytest.mark.parametrize("edge_width", [2.0, 5.0, 12.0])
def test_soft_edges_equal_the_scipy_gaussian_of_the_level_map(edge_width):
    img = label_image(40, 48)
    levels = [0.1, 0.6, 0.3]
    m, _, _ = seg.map_from_segments(img, levels=", ".join(map(str, levels)), edge_width=edge_width)
    hard, _, _ = seg.map_from_segments(img, levels=levels)
    ref = nd.gaussian_filter(hard[0].double().numpy(), edge_width / 4.0, mode="reflect", truncate=4.0)
    assert np.allclose(m[0].double().numpy(), ref, atol=1e-6)
    # the same as the normalised level-weighted blur of each segment's indicator
    lab, n = seg.labels_from_image(img)
    blurred = [nd.gaussian_filter((lab[0] == k).double().numpy(), edge_width / 4.0, mode="reflect", truncate=4.0)
               for k in range(n)]
    weighted = sum(lv * b for lv, b in zip(levels, blurred)) / sum(blurred)
    assert np.allclose(m[0].double().numpy(), weighted, atol=1e-6)
    # exact (bit for bit) levels farther than the kernel radius from any other segment
    r = int(edge_width + 0.5)
    far = nd.minimum_filter(hard[0].numpy(), size=2 * r + 1, mode="nearest") == \
        nd.maximum_filter(hard[0].numpy(), size=2 * r + 1, mode="nearest")
    assert far.any()
    assert np.array_equal(m[0].numpy()[far], hard[0].numpy()[far])


def test_soft_edge_profile_is_monotone_and_centred():
    mk = torch.zeros(1, 8, 64)
    mk[0, :, :32] = 1.0
    m, _, _ = seg.map_from_segments(masks=mk, levels="0", default=1.0, edge_width=16.0)
    row = m[0, 4].double()
    assert bool((row[1:] >= row[:-1]).all())
    assert float(row[31] + row[32]) == pytest.approx(1.0, abs=1e-6)  # symmetric about the boundary
    assert float(row[40]) > 0.97 and float(row[23]) < 0.03  # ~95 % of the change within 16 px (2 sigma each side)
    assert torch.equal(m[0, :, :16], torch.zeros(8, 16)) and torch.equal(m[0, :, 48:], torch.ones(8, 16))


def test_preview_marks_boundaries():
    mk = torch.zeros(1, 6, 6)
    mk[0, :, :3] = 1.0
    m, preview, _ = seg.map_from_segments(masks=mk, levels="0.25")
    assert torch.equal(preview[0, 0, 2], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(preview[0, 0, 3], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(preview[0, 0, 0], torch.full((3,), 0.25))
    assert torch.equal(preview[0, 0, 5], torch.ones(3))


def test_errors():
    with pytest.raises(ValueError, match="3 segments found but only 2 level"):
        seg.map_from_segments(label_image(), levels="0, 1")
    photo = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"\d+ distinct colours, more than 256: this looks like a photo"):
        seg.map_from_segments(photo, levels="0")
    with pytest.raises(ValueError, match="empty batch"):
        seg.map_from_segments(masks=torch.zeros(0, 8, 8), levels="0")
    with pytest.raises(ValueError, match="masks 2 is 6x4 px but masks 1 is 8x8 px"):
        seg.labels_from_masks([torch.zeros(1, 8, 8), torch.zeros(1, 4, 6)])
    bad = torch.zeros(1, 4, 4)
    bad[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="masks contains NaN"):
        seg.map_from_segments(masks=bad, levels="0")
    nan_img = label_image()
    nan_img[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="labels contains NaN"):
        seg.map_from_segments(nan_img, levels="0, 0, 0")
    with pytest.raises(ValueError, match="exactly one of labels"):
        seg.map_from_segments(None, None, levels="0")
    with pytest.raises(ValueError, match="not both"):
        seg.map_from_segments(label_image(), torch.zeros(1, 12, 16), levels="0")
    with pytest.raises(ValueError, match="default must be <= 1"):
        seg.map_from_segments(label_image(), levels="0,0,0", default=2.0)


def test_deterministic():
    img = label_image(20, 24)
    a = seg.map_from_segments(img, levels="0.1, 0.6, 0.3", edge_width=6)
    b = seg.map_from_segments(img, levels="0.1, 0.6, 0.3", edge_width=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
