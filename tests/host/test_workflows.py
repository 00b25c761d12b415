"""Every example workflow (``example_workflows/``, ComfyUI's folder for custom-node templates): its UI-format twin
matches the API format, ComfyUI's templates route lists it and serves it with its thumbnail, and it runs headless
from its bundled inputs with images out, a progress bar that runs to its end and latent previews on the websocket."""
import importlib.util
import io
import json
import pathlib
import urllib.request

import pytest
import torch
from PIL import Image

import comfy_client

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
EXAMPLES = REPO / "example_workflows"
API = sorted((EXAMPLES / "api").glob("*.json"))
INPUTS = EXAMPLES / "inputs"
PACK = "comfyui-pixels-edit"  # the pack's folder name in custom_nodes (conftest): the templates' module name
UI_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}  # frontend-only: never queued
SIZE = 64  # tiny models, tiny images
# Fewer steps where one step costs minutes on a CPU (and other widgets a 64 px picture needs): OIG's guided step runs
# a full-size CLIP ViT-L forward and backward (the smallest vision tower ComfyUI's loader accepts). The full step count runs in tests/host/test_oig.py.
FEWER_STEPS = {"oig_text_edit": {("BasicScheduler", "steps"): 3},
               # at 64 px the shipped placement (a cut-out 0.35 of the frame, rotated, its mask scaled down with
               # the pictures) covers no whole 8 px latent cell: larger, and near-black counts as black
               "pixels_place_segments": {("PixelsPlaceExemplar", "scale"): 0.6, ("PixelsPlaceExemplar", "x"): 0.25,
                                         ("PixelsPlaceExemplar", "y"): 0.25, ("PixelsExemplar", "black_point"): 0.1}}
# Widgets in pixels of the bundled 512 px pictures, scaled with them (a 24 px feather would cover a 64 px placement)
PIXEL_WIDGETS = {("PixelsPlaceExemplar", "feather"), ("PixelsMapFromSegments", "edge_width"), ("PixelsMapBlur", "sigma")}

# Released model files the shipped workflows name -> the tiny test model in the same layout (tests/host/models_*.py).
TINY_FILES = {"wan2.1_t2v_1.3B_fp16.safetensors": "wan2.1_t2v_tiny.safetensors",
              "wan_2.1_vae.safetensors": "wan2.1_vae_tiny.safetensors"}
# Text encoders that cannot be made tiny (T5-XXL, Qwen2.5-VL, umT5-XXL): their loader becomes PixelsTestCLIPLoader,
# a CLIP stand-in with the encoder's output shapes; the workflow's own CLIP Text Encode nodes run on it unchanged.
ENCODER_BY_TYPE = {"flux": "flux (CLIP-L + T5-XXL)", "qwen_image": "qwen_image (Qwen2.5-VL 7B)",
                   "wan": "wan (umT5-XXL)"}
# Checkpoints whose config ComfyUI fixes (a tiny one cannot be detected): node -> the stand-ins of its outputs
CHECKPOINT_STAND_INS = {"sd_xl_base_1.0.safetensors": lambda nid: [  # tests/host/test_nodes/sdxl.py, models_sdxl.py
    (f"{nid}001", {"class_type": "PixelsTestSDXLLoader", "inputs": {"unet_name": "sdxl_tiny_unet.safetensors"}}),
    (f"{nid}002", {"class_type": "PixelsTestCLIPLoader", "inputs": {"encoder": "sdxl (CLIP-L + OpenCLIP-bigG)"}}),
    (f"{nid}003", {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_taesd_tiny.safetensors"}})]}
# Models whose widths or head counts ComfyUI fixes at the released ones (a tiny file cannot go through the stock
# loader): (loader, file) -> the test-only loader that reads them from the weights (tests/host/test_nodes/flux.py,
# qwen.py) and its extra inputs; same file input, same output
LOADER_STAND_INS = {("UNETLoader", "flux1-dev.safetensors"): ("PixelsTestTinyDiTLoader", {"family": "flux"}),
                    ("UNETLoader", "flux1-fill-dev.safetensors"): ("PixelsTestTinyDiTLoader", {"family": "flux"}),
                    ("UNETLoader", "qwen_image_fp8_e4m3fn.safetensors"): ("PixelsTestQwenImageLoader", {}),
                    ("VAELoader", "qwen_image_vae.safetensors"): ("PixelsTestWanVAELoader", {}),
                    ("VAELoader", "wan2.1_vae_tiny.safetensors"): ("PixelsTestWanVAELoader", {})}
# The family each workflow needs (a spec of tests/host/families/): skipped where this ComfyUI lacks it
WORKFLOW_FAMILY = {"pixels_flux1": "flux1", "syncsde_flux1": "flux1", "pixels_sdxl": "sdxl", "pixels_flux_fill_inpaint": "flux1",
                   "syncsde_qwen_image": "qwen_image", "pixels_wan_video": "wan21"}


def _families() -> dict:
    spec = importlib.util.spec_from_file_location("pixels_test_families", REPO / "tests" / "host" / "test_families.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {f["id"]: f for f in mod.FAMILIES}


def skip_missing_family(comfy, name: str) -> None:
    fam = WORKFLOW_FAMILY.get(name)
    if fam:
        reason = _families()[fam]["skip"](comfy.object_info())
        if reason:
            pytest.skip(f"{name} needs {fam}: {reason}")


def stand_ins(api: dict) -> dict:
    """The same graph on the tiny test models: released file names -> tiny files, big text-encoder loaders -> the
    CLIP stand-in, fixed-config checkpoints -> their stand-in loaders (links to their outputs rewired)."""
    out = json.loads(json.dumps(api))
    rewire = {}
    for nid, node in api.items():
        ins = out[nid]["inputs"]
        for key, value in ins.items():
            if isinstance(value, str) and value in TINY_FILES:
                ins[key] = TINY_FILES[value]
        if node["class_type"] in ("CLIPLoader", "DualCLIPLoader") and node["inputs"].get("type") in ENCODER_BY_TYPE:
            out[nid] = {"class_type": "PixelsTestCLIPLoader",
                        "inputs": {"encoder": ENCODER_BY_TYPE[node["inputs"]["type"]]}}
        field = {"UNETLoader": "unet_name", "VAELoader": "vae_name"}.get(node["class_type"])
        if field and (node["class_type"], ins[field]) in LOADER_STAND_INS:
            cls, extra = LOADER_STAND_INS[(node["class_type"], ins[field])]
            out[nid] = {"class_type": cls, "inputs": {field: ins[field], **extra}}
        make = CHECKPOINT_STAND_INS.get(node["inputs"].get("ckpt_name"))
        if node["class_type"] == "CheckpointLoaderSimple" and make:
            del out[nid]
            for slot, (sid, stand_in) in enumerate(make(nid)):
                out[sid] = stand_in
                rewire[(nid, slot)] = [sid, 0]
    for node in out.values():
        for key, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and tuple(value) in rewire:
                node["inputs"][key] = rewire[tuple(value)]
    return out


def _scale(api: dict, nid: str, image: list) -> list:
    api[nid] = {"class_type": "ImageScale", "inputs": {"image": image, "upscale_method": "bilinear",
                                                      "width": SIZE, "height": SIZE, "crop": "disabled"}}
    return [nid, 0]


def shrink(api: dict, name: str = "") -> dict:
    """The same graph at 64 px: every width/height widget set to 64, each bundled picture (512 px, from a
    PixelsLoadExample) scaled to 64 px between the loader and what it feeds (new nodes get ids from 1000 up), and the
    widgets in pixels of those pictures (``PIXEL_WIDGETS``) scaled with them."""
    out = json.loads(json.dumps(api))
    used = {tuple(v) for n in out.values() for v in n["inputs"].values() if isinstance(v, list) and len(v) == 2}
    scaled = {}
    for k in [k for k, n in api.items() if n["class_type"] == "PixelsLoadExample"]:
        i = int(k)
        scaled[(k, 0)] = _scale(out, str(1000 + i), [k, 0])
        if (k, 1) in used:  # its MASK: through an image and back
            out[str(2000 + i)] = {"class_type": "MaskToImage", "inputs": {"mask": [k, 1]}}
            small = _scale(out, str(3000 + i), [str(2000 + i), 0])
            out[str(4000 + i)] = {"class_type": "ImageToMask", "inputs": {"image": small, "channel": "red"}}
            scaled[(k, 1)] = [str(4000 + i), 0]
    for nid in api:
        for key, value in out[nid]["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and tuple(value) in scaled:
                out[nid]["inputs"][key] = scaled[tuple(value)]
    for node in out.values():
        for key in ("width", "height"):
            if isinstance(node["inputs"].get(key), int):
                node["inputs"][key] = SIZE
        for key in [k for c, k in PIXEL_WIDGETS if c == node["class_type"]]:
            node["inputs"][key] = node["inputs"][key] * SIZE / 512
        for (cls, key), value in FEWER_STEPS.get(name, {}).items():
            if node["class_type"] == cls:
                node["inputs"][key] = value
    return out


def without_ui_only(ui: dict) -> dict:
    out = json.loads(json.dumps(ui))
    out["nodes"] = [n for n in out["nodes"] if n["type"] not in UI_ONLY]
    return out


def fetch(comfy, path: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(comfy.url + path, timeout=30) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def test_there_are_workflows():
    names = {p.stem for p in API}
    assert {"pixels_single_exemplar_sd15", "pixels_multi_exemplar_sd15", "pixels_flow_sd3"} <= names


@pytest.mark.parametrize("path", API, ids=[p.stem for p in API])
def test_ui_twin_matches_api(comfy, path):
    ui_path = EXAMPLES / path.name
    assert ui_path.exists(), f"no UI-format twin for {path.name}: run tools/build_workflows.py"
    ui = json.loads(ui_path.read_text())
    assert comfy_client.is_ui(ui)
    oi = comfy.object_info()
    assert comfy_client.ui_to_api(without_ui_only(ui), oi) == comfy_client.with_defaults(json.loads(path.read_text()), oi)


def test_templates_route_lists_every_workflow(comfy):
    """GET /api/workflow_templates (what the frontend's templates browser asks for) lists exactly the UI workflows,
    under this pack's folder name; the API twins in api/ are not listed."""
    listing = comfy.get_json("/api/workflow_templates")
    assert sorted(listing.get(PACK, [])) == sorted(p.stem for p in API), listing


@pytest.mark.parametrize("path", API, ids=[p.stem for p in API])
def test_template_is_served_with_thumbnail_and_note(comfy, path):
    """The files the templates browser fetches: <name>.json (the UI workflow, with a MarkdownNote that says what it
    does and names every model file it loads, and the loaders' download links) and <name>.jpg (its thumbnail)."""
    status, _, body = fetch(comfy, f"/api/workflow_templates/{PACK}/{path.stem}.json")
    ui = json.loads(body)
    assert status == 200 and ui == json.loads((EXAMPLES / path.name).read_text())
    notes = [n for n in ui["nodes"] if n["type"] == "MarkdownNote"]
    assert notes, f"{path.name}: no MarkdownNote"
    text = notes[0]["widgets_values"][0]
    links = [m for n in ui["nodes"] for m in (n.get("properties") or {}).get("models", [])]
    for n in json.loads(path.read_text()).values():
        for key in ("ckpt_name", "clip_name", "control_net_name", "unet_name", "vae_name"):
            file = n["inputs"].get(key)
            if isinstance(file, str):
                assert file in text, f"{path.name}: the note does not name {file}"
                assert any(m["name"] == file and m["url"].startswith("https://") for m in links), (path.name, file)
    status, ctype, jpg = fetch(comfy, f"/api/workflow_templates/{PACK}/{path.stem}.jpg")
    assert status == 200 and ctype == "image/jpeg" and len(jpg) < 60_000, (status, ctype, len(jpg))
    assert Image.open(io.BytesIO(jpg)).size == (512, 512)


@pytest.mark.parametrize("path", API, ids=[p.stem for p in API])
def test_workflow_runs_headless(comfy, path):
    api = json.loads(path.read_text())
    assert not comfy_client.image_inputs(api), f"{path.name} needs uploads: load bundled pictures with PixelsLoadExample"
    for nid, n in api.items():
        if n["class_type"] == "PixelsLoadExample":
            assert (INPUTS / n["inputs"]["image"]).exists(), f"{path.name} node {nid}: {n['inputs']['image']} not bundled"
    skip_missing_family(comfy, path.stem)
    api = stand_ins(shrink(api, path.stem))
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


def picture_loader(api: dict, nid: str) -> str:
    """The PixelsLoadExample an image input comes from, through the image nodes between (scale, repeat, place)."""
    while api[nid]["class_type"] != "PixelsLoadExample":
        ins = api[nid]["inputs"]
        nid = (ins.get("image") or ins["exemplar"])[0]
    return nid


PIXELS_WORKFLOWS = [p for p in API if any(n["class_type"] == "PixelsExemplar" for n in json.loads(p.read_text()).values())]
SAMPLING = {"PixelsProgressiveEdit", "SamplerCustomAdvanced"}
OTHER_EXEMPLAR = {"pixels_exemplar.png": "pixels_exemplar2.png", "pixels_exemplar2.png": "pixels_exemplar.png"}


@pytest.mark.parametrize("path", PIXELS_WORKFLOWS, ids=[p.stem for p in PIXELS_WORKFLOWS])
def test_pixels_workflow_output_follows_its_exemplar(comfy, path):
    """Each shipped PIXELS workflow demonstrates its exemplar: another exemplar image gives another edit."""
    skip_missing_family(comfy, path.stem)
    shipped = json.loads(path.read_text())
    api = stand_ins(shrink(shipped, path.stem))
    comfy_client.set_seed(api, 2000 + API.index(path))
    loaders = {picture_loader(shipped, n["inputs"]["exemplar"][0]) for n in shipped.values()
               if n["class_type"] == "PixelsExemplar"}
    samplers = [k for k, n in api.items() if n["class_type"] in SAMPLING]
    assert loaders and samplers
    for k in samplers:  # compare latents: the tiny random VAE decodes small latent changes to the same 8-bit image
        slot = 1 if api[k]["class_type"] == "PixelsProgressiveEdit" else 0
        api[f"9{k}"] = {"class_type": "SaveLatent", "inputs": {"samples": [k, slot], "filename_prefix": f"follows_{k}"}}

    def edits(api):
        out = comfy.run(api)
        return [comfy.latent(out, f"9{k}") for k in samplers]

    before = edits(api)
    for k in loaders:
        assert api[k]["class_type"] == "PixelsLoadExample"
        api[k]["inputs"]["image"] = OTHER_EXEMPLAR[api[k]["inputs"]["image"]]
    after = edits(api)
    for k, a, b in zip(samplers, before, after):
        assert not torch.equal(a, b), f"{path.name}: changing the exemplar left the edit of node {k} unchanged"
