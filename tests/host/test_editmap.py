"""Edit-map nodes in a real ComfyUI: every node in /object_info with tooltips, every node run in one graph, the
map-from-mask workflow headless (at 64 px, few steps), clear errors for bad input."""
import json
import pathlib

import pytest

import comfy_client

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
WORKFLOW = REPO / "example_workflows" / "api" / "pixels_map_from_mask.json"
NODE_IDS = ["PixelsMapGrow", "PixelsMapBlur", "PixelsMapLevels", "PixelsMapEqualize", "PixelsMapStretch",
            "PixelsMapInvert", "PixelsMapQuantize", "PixelsMapFromDepth", "PixelsMapRamp", "PixelsMapFalloff",
            "PixelsMapCombine", "PixelsMapPreview"]


def test_editmap_nodes_in_object_info(comfy):
    info = comfy.object_info()
    for nid in NODE_IDS:
        assert nid in info, f"{nid} missing from /object_info"
        spec = info[nid]
        assert spec["category"] == "PIXELS/edit maps"
        for section in ("required", "optional"):
            for name, entry in spec["input"].get(section, {}).items():
                opts = entry[1] if len(entry) > 1 else {}
                assert opts.get("tooltip"), f"{nid}.{name} has no tooltip"
    assert "IMPORT FAILED for nodes/editmap.py" not in comfy.log()


def every_node_graph(seed: int) -> dict:
    """All edit-map nodes chained on in-graph masks and images (no uploads)."""
    return {
        "1": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 64, "height": 48}},
        "2": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 20, "height": 16}},
        "3": {"class_type": "MaskComposite", "inputs": {"destination": ["1", 0], "source": ["2", 0], "x": 16,
                                                        "y": 12, "operation": "add"}},
        "4": {"class_type": "PixelsMapGrow", "inputs": {"map": ["3", 0], "pixels": 3, "shape": "disk"}},
        "5": {"class_type": "PixelsMapBlur", "inputs": {"map": ["4", 0], "sigma": 2.5}},
        "6": {"class_type": "PixelsMapLevels", "inputs": {"map": ["5", 0], "black": 0.05, "white": 0.95, "gamma": 1.3,
                                                          "out_black": 0.0, "out_white": 1.0}},
        "7": {"class_type": "PixelsMapEqualize", "inputs": {"map": ["6", 0], "bins": 64}},
        "8": {"class_type": "PixelsMapStretch", "inputs": {"map": ["7", 0], "low_percentile": 2.0,
                                                           "high_percentile": 98.0}},
        "9": {"class_type": "PixelsMapInvert", "inputs": {"map": ["8", 0]}},
        "10": {"class_type": "PixelsMapQuantize", "inputs": {"map": ["9", 0], "levels": 5}},
        "11": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": seed % 4096}},
        "12": {"class_type": "PixelsMapRamp", "inputs": {"kind": "radial", "width": 64, "height": 48, "angle": 0.0,
                                                         "start": 0.0, "end": 1.2, "center_x": 0.3, "center_y": 0.5,
                                                         "batch_size": 1, "reference": ["11", 0]}},
        "13": {"class_type": "MaskToImage", "inputs": {"mask": ["12", 0]}},
        "14": {"class_type": "PixelsMapFromDepth", "inputs": {"depth": ["13", 0], "edit": "far", "white_is": "near",
                                                              "range_start": 0.1, "range_end": 0.9}},
        "15": {"class_type": "PixelsMapFalloff", "inputs": {"mask": ["3", 0], "width": 6.0, "side": "centered",
                                                            "curve": "cosine", "threshold": 0.5}},
        "16": {"class_type": "PixelsMapCombine", "inputs": {"map_a": ["10", 0], "map_b": ["14", 0], "mode": "screen",
                                                            "amount": 1.0}},
        "17": {"class_type": "PixelsMapCombine", "inputs": {"map_a": ["16", 0], "map_b": ["15", 0], "mode": "min",
                                                            "amount": 0.7}},
        "18": {"class_type": "PixelsMapPreview", "inputs": {"map": ["17", 0], "map_polarity": "white keeps source (paper)",
                                                            "steps": 12, "curve": "linear", "gamma": 1.0,
                                                            "downscale": 8, "upscale_preview": True}},
        "19": {"class_type": "SaveImage", "inputs": {"images": ["18", 0], "filename_prefix": "editmap_preview"}},
        "20": {"class_type": "MaskToImage", "inputs": {"mask": ["18", 1]}},
        "21": {"class_type": "SaveImage", "inputs": {"images": ["20", 0], "filename_prefix": "editmap_latent_map"}},
    }


def test_every_editmap_node_runs(comfy):
    outputs = comfy.run(every_node_graph(seed=301))
    images = comfy_client.output_images(outputs)
    assert len(images) == 2, outputs


def test_map_from_mask_workflow_headless(comfy, tmp_path):
    from PIL import Image

    api = json.loads(WORKFLOW.read_text())
    for name in comfy_client.image_inputs(api):  # 64-px copies under the same names
        Image.open(REPO / "example_workflows" / "inputs" / name).resize((64, 64), Image.BILINEAR).save(tmp_path / name)
        comfy.upload(tmp_path / name)
    for node in api.values():
        if node["class_type"] == "PixelsMapRamp":
            node["inputs"].update(width=64, height=64)
        if "steps" in node["inputs"]:
            node["inputs"]["steps"] = 6
    comfy_client.set_seed(api, 302)
    outputs = comfy.run(api)
    saves = [k for k, n in api.items() if n["class_type"] == "SaveImage"]
    assert len(comfy_client.output_images(outputs)) >= len(saves) == 3


@pytest.mark.parametrize("node,inputs,needle", [
    ("PixelsMapLevels", {"black": 0.8, "white": 0.2, "gamma": 1.0, "out_black": 0.0, "out_white": 1.0}, "white point"),
    ("PixelsMapStretch", {"low_percentile": 90.0, "high_percentile": 10.0}, "high percentile"),
])
def test_bad_editmap_parameters_are_clear_errors(comfy, node, inputs, needle):
    g = {
        "1": {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 16, "height": 16}},
        "2": {"class_type": node, "inputs": {"map": ["1", 0], **inputs}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "editmap_bad"}},
    }
    with pytest.raises(AssertionError) as err:
        comfy.run(g)
    msg = str(err.value).split("--- server log tail ---")[0]
    assert needle in msg and node in msg, msg


def test_flat_depth_is_a_clear_error(comfy):
    g = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 303}},
        "2": {"class_type": "PixelsMapFromDepth", "inputs": {"depth": ["1", 0], "edit": "far", "white_is": "near",
                                                             "range_start": 0.0, "range_end": 1.0}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "editmap_flat"}},
    }
    with pytest.raises(AssertionError) as err:
        comfy.run(g)
    assert "flat" in str(err.value).split("--- server log tail ---")[0]
