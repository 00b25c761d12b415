"""PixelsMapFromSegments and PixelsPlaceExemplar in a real ComfyUI: registered with tooltips on every input, run
headless in one tiny graph (in-graph masks -> segment map, placed exemplar -> two PIXELS exemplars -> progressive
edit with the tiny SD1.5 checkpoint at 64 px), and clear errors."""
import io

import numpy as np
import pytest
from PIL import Image

import comfy_client

SD15 = "v1-5-pruned-emaonly.safetensors"
PAPER = "white keeps source (paper)"
NODE_IDS = {"PixelsMapFromSegments": "PIXELS/edit maps", "PixelsPlaceExemplar": "PIXELS/progressive editing"}


def test_nodes_registered_with_tooltips(comfy):
    info = comfy.object_info()
    for nid, category in NODE_IDS.items():
        assert nid in info, f"{nid} missing from /object_info"
        assert info[nid]["category"] == category
        for section in ("required", "optional"):
            for name, entry in info[nid]["input"].get(section, {}).items():
                opts = entry[1] if len(entry) > 1 else {}
                assert opts.get("tooltip"), f"{nid}.{name} has no tooltip"
    assert "IMPORT FAILED for nodes/segment.py" not in comfy.log()


def graph(seed: int, levels: str = "0.0, 0.5") -> dict:
    """Masks made in the graph: segment 1 = right half, segment 2 = top 16 rows (wins where they overlap)."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD15}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a beach"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x5080C0}},
        "5": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0xE0C080}},
        "30": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 64, "height": 64}},
        "31": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 32, "height": 64}},
        "32": {"class_type": "MaskComposite", "inputs": {"destination": ["30", 0], "source": ["31", 0], "x": 32, "y": 0,
                                                         "operation": "add"}},
        "33": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 16}},
        "34": {"class_type": "MaskComposite", "inputs": {"destination": ["30", 0], "source": ["33", 0], "x": 0, "y": 0,
                                                         "operation": "add"}},
        "35": {"class_type": "PixelsTestMaskBatch", "inputs": {"a": ["32", 0], "b": ["34", 0]}},
        "40": {"class_type": "PixelsMapFromSegments", "inputs": {"levels": levels, "default": 1.0, "edge_width": 4.0,
                                                                 "order": "first appearance", "masks": ["35", 0]}},
        "41": {"class_type": "PixelsPlaceExemplar", "inputs": {
            "exemplar": ["5", 0], "source": ["4", 0], "x": 0.5, "y": 0.5, "scale": 0.5, "rotation": 15.0,
            "feather": 4.0, "scale_by": "source shorter side"}},
        "8": {"class_type": "PixelsExemplar", "inputs": {"exemplar": ["41", 0], "edit_map": ["41", 1],
                                                        "map_polarity": PAPER}},
        "9": {"class_type": "PixelsExemplar", "inputs": {"exemplar": ["5", 0], "edit_map": ["40", 0],
                                                        "map_polarity": PAPER, "previous": ["8", 0]}},
        "10": {"class_type": "PixelsProgressiveEdit", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "vae": ["1", 2], "source": ["4", 0],
            "exemplars": ["9", 0], "seed": seed, "steps": 4, "cfg": 5.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 0.6, "curve": "linear", "gamma": 1.0}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "segplace_edit"}},
        "12": {"class_type": "MaskToImage", "inputs": {"mask": ["40", 0]}},
        "13": {"class_type": "SaveImage", "inputs": {"images": ["12", 0], "filename_prefix": "segplace_map"}},
        "14": {"class_type": "SaveImage", "inputs": {"images": ["41", 0], "filename_prefix": "segplace_placed"}},
        "15": {"class_type": "SaveImage", "inputs": {"images": ["40", 1], "filename_prefix": "segplace_preview"}},
    }


def _saved(comfy, outputs: dict, node: str) -> np.ndarray:
    img = outputs[node]["images"][0]
    return np.asarray(Image.open(io.BytesIO(comfy.download(img))).convert("RGB"))


def test_segments_and_placement_headless(comfy):
    out = comfy.run(graph(seed=5))
    assert len(comfy_client.output_images(out)) == 4
    m = _saved(comfy, out, "13")[..., 0]
    assert m[40, 56] == 0  # segment 1 (right half), far from the edges: level 0
    assert m[4, 8] == 127  # segment 2 (top band, over segment 1 too): level 0.5 (saved as floor(127.5))
    assert m[4, 56] == 127
    assert m[48, 8] == 255  # in no mask: default 1
    placed = _saved(comfy, out, "14")
    assert tuple(placed[32, 32]) == (0xE0, 0xC0, 0x80)  # the exemplar at the centre
    assert tuple(placed[2, 2]) == (0x50, 0x80, 0xC0)  # the source outside the cut-out
    preview = _saved(comfy, out, "15")
    assert tuple(preview[15, 8]) == (255, 0, 0)  # a boundary pixel drawn red


def error_text(comfy, g) -> str:
    with pytest.raises(AssertionError) as err:
        comfy.run(g)
    return str(err.value).split("--- server log tail ---")[0]


def test_too_few_levels_and_bad_levels_are_clear_errors(comfy):
    msg = error_text(comfy, graph(seed=6, levels="0.0"))
    assert "2 segments found but only 1 level(s) listed" in msg and "PixelsMapFromSegments" in msg, msg
    g = {k: v for k, v in graph(seed=6, levels="0.0, half").items() if k in ("30", "31", "32", "33", "34", "35", "40",
                                                                                 "12", "13")}
    msg = error_text(comfy, g)  # refused when queued (validate_inputs), before anything runs
    assert "entry 2 ('half') is not a number" in msg, msg
