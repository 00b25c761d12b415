"""Every example workflow: its UI-format twin matches the API format, and it runs headless with images out,
a progress bar that runs to its end and latent previews on the websocket."""
import io
import json
import pathlib

import pytest
import torch
from PIL import Image

import comfy_client

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
API = sorted((REPO / "workflows" / "api").glob("*.json"))
INPUTS = REPO / "workflows" / "inputs"
SIZE = 64  # tiny models, tiny images
# Fewer steps where one step costs minutes on a CPU: OIG's guided step runs a full-size CLIP ViT-L forward and
# backward (the smallest vision tower ComfyUI's loader accepts). The full step count runs in tests/host/test_oig.py.
FEWER_STEPS = {"oig_text_edit": {("BasicScheduler", "steps"): 3}}


def shrink(api: dict, name: str = "") -> dict:
    """The same graph at 64 px: every width/height widget set to 64 (image inputs are uploaded at 64 px)."""
    out = json.loads(json.dumps(api))
    for node in out.values():
        for key in ("width", "height"):
            if isinstance(node["inputs"].get(key), int):
                node["inputs"][key] = SIZE
        for (cls, key), value in FEWER_STEPS.get(name, {}).items():
            if node["class_type"] == cls:
                node["inputs"][key] = value
    return out


@pytest.fixture(scope="module")
def small_inputs(comfy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    for f in INPUTS.glob("*.png"):
        im = Image.open(f)
        im.resize((SIZE, SIZE), Image.BILINEAR).save(folder / f.name)
        comfy.upload(folder / f.name)
    return folder


def test_there_are_workflows():
    names = {p.stem for p in API}
    assert {"pixels_single_exemplar_sd15", "pixels_multi_exemplar_sd15", "pixels_flow_sd3"} <= names


@pytest.mark.parametrize("path", API, ids=[p.stem for p in API])
def test_ui_twin_matches_api(comfy, path):
    ui_path = REPO / "workflows" / path.name
    assert ui_path.exists(), f"no UI-format twin for {path.name}: run tools/build_workflows.py"
    ui = json.loads(ui_path.read_text())
    assert comfy_client.is_ui(ui)
    oi = comfy.object_info()
    assert comfy_client.ui_to_api(ui, oi) == comfy_client.with_defaults(json.loads(path.read_text()), oi)


@pytest.mark.parametrize("path", API, ids=[p.stem for p in API])
def test_workflow_runs_headless(comfy, small_inputs, path):
    api = shrink(json.loads(path.read_text()), path.stem)
    missing = [n for n in comfy_client.image_inputs(api) if not (INPUTS / n).exists()]
    assert not missing, f"{path.name} loads images not in workflows/inputs: {missing}"
    comfy_client.set_seed(api, 1000 + API.index(path))  # a seed of its own: no cached result
    outputs, events = comfy.run_watched(api)
    progress = [e["data"] for e in events if e["type"] == "progress"]
    assert any(p["value"] == p["max"] for p in progress), f"{path.name}: no progress bar ran to its end: {progress}"
    previews = [e for e in events if e["type"] == "binary" and e["event"] in (1, 4)]
    assert previews, f"{path.name}: no latent preview was sent while sampling"
    images = comfy_client.output_images(outputs)
    saves = [k for k, n in api.items() if n["class_type"] == "SaveImage"]
    assert saves and len(images) >= len(saves), f"{path.name}: expected images from {saves}, got {outputs}"
    for img in images:
        im = Image.open(io.BytesIO(comfy.download(img)))
        assert im.size[0] > 0 and im.size[1] > 0


PIXELS_WORKFLOWS = [p for p in API if any(n["class_type"] == "PixelsExemplar" for n in json.loads(p.read_text()).values())]
SAMPLING = {"PixelsProgressiveEdit", "SamplerCustomAdvanced"}


@pytest.mark.parametrize("path", PIXELS_WORKFLOWS, ids=[p.stem for p in PIXELS_WORKFLOWS])
def test_pixels_workflow_output_follows_its_exemplar(comfy, small_inputs, path):
    """Each shipped PIXELS workflow demonstrates its exemplar: another exemplar image gives another edit."""
    api = shrink(json.loads(path.read_text()), path.stem)
    comfy_client.set_seed(api, 2000 + API.index(path))
    loaders = {n["inputs"]["exemplar"][0] for n in api.values() if n["class_type"] == "PixelsExemplar"}
    samplers = [k for k, n in api.items() if n["class_type"] in SAMPLING]
    assert loaders and samplers
    for k in samplers:  # compare latents: the tiny random VAE decodes small latent changes to the same 8-bit image
        slot = 1 if api[k]["class_type"] == "PixelsProgressiveEdit" else 0
        api[f"9{k}"] = {"class_type": "SaveLatent", "inputs": {"samples": [k, slot], "filename_prefix": f"follows_{k}"}}
    flipped = small_inputs / "alt_exemplar.png"
    Image.open(INPUTS / "pixels_source.png").resize((SIZE, SIZE)).transpose(Image.FLIP_LEFT_RIGHT).save(flipped)
    comfy.upload(flipped)

    def edits(api):
        out = comfy.run(api)
        return [comfy.latent(out, f"9{k}") for k in samplers]

    before = edits(api)
    for k in loaders:
        assert api[k]["class_type"] == "LoadImage"
        api[k]["inputs"]["image"] = "alt_exemplar.png"
    after = edits(api)
    for k, a, b in zip(samplers, before, after):
        assert not torch.equal(a, b), f"{path.name}: changing the exemplar left the edit of node {k} unchanged"
