"""Node behaviour a ComfyUI user sees before and around a run: bad widget combinations refused when the prompt is
queued (nothing runs), inputs that are not needed not computed at all (lazy), preview nodes that show their picture
on the node itself."""
import importlib.util
import json
import pathlib
import urllib.error
import urllib.request

import pytest

HERE = pathlib.Path(__file__).resolve().parent


def sibling(name: str):
    """Another test module of this folder (pytest's importlib mode puts none of them on sys.path)."""
    spec = importlib.util.spec_from_file_location(f"pixels_host_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


test_ito, test_oig = sibling("test_ito"), sibling("test_oig")
ito_graph, with_guidance = test_ito.graph, test_ito.with_guidance


def queue_raw(comfy, prompt: dict) -> tuple[int, dict]:
    """POST /prompt as the frontend does; the HTTP status and the JSON answer (400 + node_errors when refused)."""
    req = urllib.request.Request(comfy.url + "/prompt", data=json.dumps({"prompt": prompt}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def map_graph(node: str, inputs: dict, seed: int) -> dict:
    return {
        "1": {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 16 + seed % 7, "height": 16}},
        "2": {"class_type": node, "inputs": {"map": ["1", 0], **inputs}},
        "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "node_ui"}},
    }


LEVELS = {"black": 0.0, "white": 1.0, "gamma": 1.0, "out_black": 0.0, "out_white": 1.0}


@pytest.mark.parametrize("inputs,needle", [
    ({**LEVELS, "black": 0.8, "white": 0.2}, "white point (0.2) must be above the black point (0.8)"),
    ({**LEVELS, "black": 1.5}, "black is 1.5, above its maximum 1.0"),  # ComfyUI's own range check still holds
    ({**LEVELS, "gamma": 0.0}, "gamma is 0.0, below its minimum 0.05"),
])
def test_levels_rules_are_refused_at_queue_time(comfy, inputs, needle):
    status, answer = queue_raw(comfy, map_graph("PixelsMapLevels", inputs, 1))
    assert status == 400, answer
    errors = answer["node_errors"]["2"]["errors"]
    assert any(needle in e["details"] for e in errors), errors


@pytest.mark.parametrize("node,inputs,needle", [
    ("PixelsMapStretch", {"low_percentile": 90.0, "high_percentile": 10.0}, "high percentile (10.0) must be above"),
])
def test_other_widget_rules_are_refused_at_queue_time(comfy, node, inputs, needle):
    status, answer = queue_raw(comfy, map_graph(node, inputs, 2))
    assert status == 400, answer
    assert any(needle in e["details"] for e in answer["node_errors"]["2"]["errors"]), answer


def test_ramp_and_depth_rules_are_refused_at_queue_time(comfy):
    ramp = {"1": {"class_type": "PixelsMapRamp", "inputs": {
        "kind": "linear", "width": 16, "height": 16, "angle": 0.0, "start": 0.4, "end": 0.4, "center_x": 0.5,
        "center_y": 0.5, "batch_size": 1}},
        "2": {"class_type": "MaskToImage", "inputs": {"mask": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "node_ui"}}}
    status, answer = queue_raw(comfy, ramp)
    assert status == 400 and "both 0.4" in json.dumps(answer), answer
    depth = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 1}},
             "2": {"class_type": "PixelsMapFromDepth", "inputs": {"depth": ["1", 0], "edit": "far", "white_is": "near",
                                                                  "range_start": 0.7, "range_end": 0.2}},
             "3": {"class_type": "MaskToImage", "inputs": {"mask": ["2", 0]}},
             "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "node_ui"}}}
    status, answer = queue_raw(comfy, depth)
    assert status == 400 and "range_end (0.2) must be above range_start (0.7)" in json.dumps(answer), answer


def test_ito_t_u_beyond_the_encoded_steps_is_refused_at_queue_time(comfy):
    g = ito_graph(seed=811, steps=4)
    g["20"]["inputs"].update(t_u=3, encode_ratio=0.5)  # 0.5 of 4 steps leaves 2 decoding steps
    status, answer = queue_raw(comfy, g)
    assert status == 400, answer
    assert "t_u (3) must be between 0 and the number of decoding steps (2)" in json.dumps(answer), answer


def test_syncsde_start_beyond_the_schedule_is_refused_at_queue_time(comfy):
    g = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
         "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a"}},
         "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
         "4": {"class_type": "PixelsSyncSDEEdit", "inputs": {
             "model": ["1", 0], "source_positive": ["2", 0], "source_negative": ["2", 0], "target_positive": ["2", 0],
             "target_negative": ["2", 0], "source_cfg": 1.0, "target_cfg": 1.0, "latent": ["3", 0], "seed": 812,
             "steps": 6, "scheduler": "simple", "start_step": 6, "start_sigma": 0.0, "resample": False}},
         "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "node_ui"}}}
    status, answer = queue_raw(comfy, g)
    assert status == 400 and "start_step 6 is beyond the schedule of 6 steps" in json.dumps(answer), answer


def executed_nodes(comfy, g) -> set:
    _, events = comfy.run_watched(g)
    ran = {e["data"].get("node") for e in events if e.get("type") == "executing"}
    cached = {n for e in events if e.get("type") == "execution_cached" for n in e["data"].get("nodes", [])}
    return ran - {None}, cached


def test_ito_guidance_is_not_computed_when_lambda_is_one(comfy):
    g = with_guidance(ito_graph(seed=813), seed=813)
    g["20"]["inputs"]["lam"] = 1.0  # guidance connected but unused
    ran, _ = executed_nodes(comfy, g)
    assert "20" in ran and "30" not in ran, ran
    g = with_guidance(ito_graph(seed=814), seed=814)  # lambda 0.6: it is needed and runs
    ran, _ = executed_nodes(comfy, g)
    assert {"20", "30"} <= ran, ran


def test_preview_nodes_show_their_picture_on_the_node(comfy):
    g = {"1": {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 32, "height": 24}},
         "2": {"class_type": "PixelsMapPreview", "inputs": {
             "map": ["1", 0], "map_polarity": "white keeps source (paper)", "steps": 10 + 815 % 3, "curve": "linear",
             "gamma": 1.0, "downscale": 8, "upscale_preview": True}}}
    outputs = comfy.run(g)  # the preview node alone is an output: no Preview Image node needed
    images = outputs["2"]["images"]
    assert len(images) == 1 and images[0]["type"] == "temp", outputs
    from PIL import Image
    import io as _io
    img = Image.open(_io.BytesIO(comfy.download(images[0])))
    assert img.size == (32, 24)
    g = {"1": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 64, "height": 64}},
         "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 816}},
         "3": {"class_type": "PixelsExemplar", "inputs": {"exemplar": ["2", 0], "edit_map": ["1", 0],
                                                          "map_polarity": "white keeps source (paper)"}},
         "4": {"class_type": "PixelsReleaseSchedule", "inputs": {"exemplars": ["3", 0], "steps": 12, "curve": "linear",
                                                                 "gamma": 1.0, "downscale": 8}}}
    outputs = comfy.run(g)
    assert len(outputs["4"]["images"]) == 1, outputs


def test_oig_does_not_load_the_clip_encoders_when_the_clip_term_is_off(comfy):
    comfy.upload(test_oig.INPUTS / "oig_cat.png")
    g = test_oig.graph(steps=1, clip_weight=0.0)
    g["20"]["inputs"]["width"] = 64 + 8 * (817 % 3)  # a new prompt, not served from the cache
    ran, cached = executed_nodes(comfy, g)
    loaders = {k for k, n in g.items() if n["class_type"] in ("CLIPLoader", "CLIPVisionLoader")}
    assert "8" in ran | cached and not loaders & (ran | cached), (loaders, ran, cached)
