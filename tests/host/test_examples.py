"""PIXELS Load Example Image (``PixelsLoadExample``): the pack's bundled example pictures, loaded from the pack's own
folder (nothing uploaded), as IMAGE and MASK; an unknown name is refused when the prompt is queued."""
import io
import pathlib

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
INPUTS = REPO / "example_workflows" / "inputs"
BUNDLED = sorted(p.name for p in INPUTS.glob("*.png"))


def test_there_are_bundled_images():
    assert {"pixels_source.png", "pixels_exemplar.png", "pixels_map.png", "pixels_mask.png", "oig_cat.png"} <= set(BUNDLED)


def test_load_example_is_registered_with_tooltips(comfy):
    spec = comfy.object_info()["PixelsLoadExample"]
    assert spec["display_name"] == "PIXELS Load Example Image"
    assert spec["category"].startswith("PIXELS") and spec["description"]
    assert spec["output"] == ["IMAGE", "MASK"]
    assert all(spec.get("output_tooltips") or [None]), spec.get("output_tooltips")
    assert "grey level" in spec["output_tooltips"][1] and "alpha" in spec["output_tooltips"][1]
    inputs = {**spec["input"]["required"], **(spec["input"].get("optional") or {})}
    assert set(inputs) == {"image"}
    for name, entry in inputs.items():
        assert entry[-1].get("tooltip"), name
    combo = inputs["image"]
    options = combo[1].get("options") if combo[0] == "COMBO" else combo[0]
    assert options == BUNDLED
    assert combo[-1].get("default") == "pixels_source.png"


def _saved(comfy, outputs, node) -> np.ndarray:
    entry = outputs[node]["images"][0]
    return np.asarray(Image.open(io.BytesIO(comfy.download(entry))).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("name", BUNDLED)
def test_loads_each_bundled_image_as_pil_reads_it(comfy, name):
    g = {
        "1": {"class_type": "PixelsLoadExample", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "example_image"}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["1", 1]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "example_mask"}},
    }
    outputs = comfy.run(g)
    with Image.open(INPUTS / name) as f:
        mode = f.mode
        want_rgb = np.asarray(f.convert("RGB"), dtype=np.int16)
        want_grey = np.asarray(f.convert("L"), dtype=np.int16)
    got_rgb, got_mask = _saved(comfy, outputs, "2"), _saved(comfy, outputs, "4")
    assert got_rgb.shape == want_rgb.shape and got_mask.shape == want_rgb.shape
    # SaveImage writes int(255 * value): within one 8-bit level of the file
    assert np.abs(got_rgb - want_rgb).max() <= 1, name
    if mode in ("L", "LA"):  # a map, mask or depth: the MASK is its grey level
        assert np.abs(got_mask[..., 0] - want_grey).max() <= 1, name
        assert want_grey.std() > 0, f"{name} is flat: the check above proves nothing"
    else:  # an opaque colour picture: no mask
        assert mode in ("RGB", "P") and got_mask.max() == 0, (name, mode)


@pytest.mark.parametrize("bad", ["nope.png", "../README.md", "/etc/passwd", "inputs/pixels_map.png"])
def test_unknown_name_is_refused_with_a_clear_error(comfy, bad):
    g = {
        "1": {"class_type": "PixelsLoadExample", "inputs": {"image": bad}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "example_bad"}},
    }
    with pytest.raises(AssertionError) as err:
        comfy.run(g)
    msg = str(err.value).split("--- server log tail ---")[0]
    assert bad in msg and "bundled example images" in msg and "pixels_source.png" in msg, msg
    assert "Load Image" in msg, msg
