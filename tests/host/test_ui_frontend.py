"""The UI-format workflows load in ComfyUI's own frontend, and the frontend queues exactly their API twins.

A headless Chromium (Playwright, ``/usr/bin/chromium`` or ``$PIXELS_CHROMIUM``) opens the session's ComfyUI; for each
workflow it calls ``app.loadGraphData(workflow)`` and ``app.graphToPrompt()``, the frontend's own path from a saved
workflow to the prompt that the Run button queues. It checks that

- loading raises no page error, console error or warning, failed request to the server, dialog (missing nodes,
  load errors) or warning toast, and every node is a registered type;
- the prompt equals ``example_workflows/api/<name>.json`` with its absent widget inputs set to their defaults (a UI file
  without an API twin is compared with ``comfy_client.ui_to_api``);
- ``comfy_client.api_to_ui`` of every API workflow passes the same checks, and lays the nodes out without overlaps
  at the sizes the frontend gives them.

Skipped without Playwright (``pip install playwright``; no ``playwright install`` needed) or Chromium
(``apt-get install chromium``). ``PIXELS_UI_SCREENSHOTS=DIR`` saves a screenshot of every loaded graph there.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil

import pytest

import comfy_client

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
CHROMIUM = os.environ.get("PIXELS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("no Chromium for Playwright (apt-get install chromium, or set PIXELS_CHROMIUM)", allow_module_level=True)

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
UI = sorted((REPO / "example_workflows").glob("*.json"))
API = sorted((REPO / "example_workflows" / "api").glob("*.json"))
INPUTS = REPO / "example_workflows" / "inputs"
SHOTS = os.environ.get("PIXELS_UI_SCREENSHOTS")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Model loaders the frontend (1.27) maps model folders to. Where one is absent from /object_info (here:
# UpscaleModelLoader, whose module needs torchvision), the frontend's model-to-node store breaks and every
# CheckpointLoaderSimple widget fails to build ("reading 'has'" in isAssetBrowserEligible). Such classes get a stub
# definition in the page only; no workflow uses them (with_defaults would fail on them).
MODEL_LOADERS = {"CheckpointLoaderSimple": ("ckpt_name", "MODEL"), "ImageOnlyCheckpointLoader": ("ckpt_name", "MODEL"),
                 "LoraLoader": ("lora_name", "MODEL"), "LoraLoaderModelOnly": ("lora_name", "MODEL"),
                 "VAELoader": ("vae_name", "VAE"), "ControlNetLoader": ("control_net_name", "CONTROL_NET"),
                 "UNETLoader": ("unet_name", "MODEL"), "UpscaleModelLoader": ("model_name", "UPSCALE_MODEL"),
                 "StyleModelLoader": ("style_model", "STYLE_MODEL"), "GLIGENLoader": ("gligen_name", "GLIGEN")}

LOAD_JS = """async (wf) => {
    await window.app.loadGraphData(wf);
    await new Promise(r => setTimeout(r, 250));
    const p = await window.app.graphToPrompt();
    const nodes = window.app.graph.nodes.map(n => ({id: n.id, type: n.type, pos: [n.pos[0], n.pos[1]],
        size: [n.size[0], n.size[1]], registered: n.type in LiteGraph.registered_node_types, errors: !!n.has_errors}));
    const visible = (sel) => [...document.querySelectorAll(sel)].filter(e => e.offsetParent !== null)
        .map(e => e.innerText.trim().slice(0, 300));
    return {output: p.output, nodes,
            dialogs: visible('.p-dialog'), toasts: visible('.p-toast-message-error, .p-toast-message-warn')};
}"""


class Frontend:
    """One headless browser on the session's ComfyUI; ``load(workflow)`` returns what the frontend made of it."""

    def __init__(self, page, url):
        self.page, self.url, self.problems = page, url, []
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("console", self._console)
        page.on("response", lambda r: self.problems.append(f"HTTP {r.status} {r.url}")
                if r.status >= 400 and r.url.startswith(url) else None)

    def _console(self, msg):
        if msg.type in ("error", "warning") and not msg.text.startswith("Failed to load resource"):
            self.problems.append(f"console {msg.type}: {msg.text}")

    def load(self, workflow: dict, shot: str | None = None) -> dict:
        self.problems.clear()
        res = self.page.evaluate(LOAD_JS, workflow)
        res["problems"] = list(self.problems)
        if SHOTS and shot:
            self.screenshot(res["nodes"], pathlib.Path(SHOTS) / f"{shot}.png")
        return res

    def screenshot(self, nodes, path):
        """The whole graph at 70 % zoom (below about 60 % the canvas drops widget text)."""
        x0, y0 = min(n["pos"][0] for n in nodes), min(n["pos"][1] for n in nodes) - 40
        x1 = max(n["pos"][0] + n["size"][0] for n in nodes)
        y1 = max(n["pos"][1] + n["size"][1] for n in nodes)
        scale = 0.7
        self.page.set_viewport_size({"width": min(3800, int((x1 - x0) * scale) + 200),
                                     "height": min(3000, int((y1 - y0) * scale) + 200)})
        self.page.evaluate("([s, x, y]) => { const c = window.app.canvas; c.ds.scale = s; c.ds.offset = [x, y];"
                           " c.setDirty(true, true); }", [scale, -x0 + 100 / scale, -y0 + 120 / scale])
        self.page.wait_for_timeout(300)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))


@pytest.fixture(scope="module")
def frontend(comfy, tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("ui_inputs")
    for f in INPUTS.glob("*.png"):  # the same 64 px copies test_workflows uploads, so previews load (no 404s)
        Image.open(f).resize((64, 64), Image.BILINEAR).save(folder / f.name)
        comfy.upload(folder / f.name)
    comfy._req("/settings/Comfy.TutorialCompleted", b"true", {"Content-Type": "application/json"})  # no template dialog
    missing = {cls: v for cls, v in MODEL_LOADERS.items() if cls not in comfy.object_info()}

    def object_info(route):
        response = route.fetch()
        info = response.json()
        for cls, (name, out) in missing.items():
            info.setdefault(cls, {"input": {"required": {name: [[], {}]}}, "input_order": {"required": [name]},
                                  "output": [out], "output_is_list": [False], "output_name": [out], "name": cls,
                                  "display_name": cls, "description": "", "python_module": "stub",
                                  "category": "loaders", "output_node": False, "deprecated": False})
        route.fulfill(response=response, json=info)

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            if missing:
                page.route("**/object_info", object_info)
            fe = Frontend(page, comfy.url)
            page.goto(comfy.url)
            page.wait_for_function("() => window.app && window.app.graph && window.app.canvas"
                                   " && window.app.extensionManager?.workflow?.activeWorkflow")
            page.wait_for_timeout(500)  # let the start-up (restoring the default graph) finish
            yield fe
        finally:
            browser.close()


def _prompt(res: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in res["output"].items()}


def _diff(got: dict, want: dict) -> list[str]:
    out = []
    for k in sorted(set(got) | set(want), key=int):
        g, w = got.get(k), want.get(k)
        if g == w:
            continue
        if g is None or w is None or g["class_type"] != w["class_type"]:
            out.append(f"node {k}: frontend {g} != expected {w}")
            continue
        for name in sorted(set(g["inputs"]) | set(w["inputs"])):
            a, b = g["inputs"].get(name, "<absent>"), w["inputs"].get(name, "<absent>")
            if a != b:
                out.append(f"node {k} {w['class_type']}.{name}: frontend {a!r} != expected {b!r}")
    return out


def _check(res: dict, workflow: dict, want: dict) -> None:
    assert not res["problems"], "loading it in the frontend reported:\n" + "\n".join(res["problems"])
    assert not res["dialogs"], f"the frontend opened a dialog: {res['dialogs']}"
    assert not res["toasts"], f"the frontend showed a warning: {res['toasts']}"
    bad = [f"{n['id']} {n['type']}" for n in res["nodes"] if not n["registered"] or n["errors"]]
    assert not bad, f"nodes the frontend does not know or marks as broken: {bad}"
    assert sorted(n["id"] for n in res["nodes"]) == sorted(n["id"] for n in workflow["nodes"])
    diff = _diff(_prompt(res), want)
    assert not diff, "the frontend's prompt differs from the API twin:\n" + "\n".join(diff)


@pytest.mark.parametrize("path", UI, ids=[p.stem for p in UI])
def test_ui_workflow_loads_and_queues_its_api_twin(comfy, frontend, path):
    ui = json.loads(path.read_text())
    assert comfy_client.is_ui(ui)
    oi = comfy.object_info()
    twin = REPO / "example_workflows" / "api" / path.name
    want = comfy_client.with_defaults(json.loads(twin.read_text()), oi) if twin.exists() else comfy_client.ui_to_api(ui, oi)
    res = frontend.load(ui, shot=path.stem)
    stale = comfy_client.ui_to_api(ui, oi) != want
    try:
        _check(res, ui, want)
    except AssertionError as e:
        hint = f"{path.name} is not the UI twin of api/{path.name} any more: run tools/build_workflows.py\n"
        raise AssertionError((hint if stale else "") + str(e)) from None


_converted: dict[str, dict] = {}


def _load_converted(comfy, frontend, path) -> tuple[dict, dict]:
    if path.stem not in _converted:
        ui = comfy_client.api_to_ui(json.loads(path.read_text()), comfy.object_info())
        _converted[path.stem] = (ui, frontend.load(ui, shot=f"api_to_ui_{path.stem}"))
    return _converted[path.stem]


@pytest.mark.parametrize("path", API, ids=[p.stem for p in API])
def test_api_to_ui_loads_and_queues_the_same_prompt(comfy, frontend, path):
    ui, res = _load_converted(comfy, frontend, path)
    _check(res, ui, comfy_client.with_defaults(json.loads(path.read_text()), comfy.object_info()))


@pytest.mark.parametrize("path", API, ids=[p.stem for p in API])
def test_api_to_ui_layout_has_no_overlapping_nodes(comfy, frontend, path):
    _, res = _load_converted(comfy, frontend, path)
    boxes = [(n["id"], n["type"], n["pos"][0], n["pos"][1] - 30, n["size"][0], n["size"][1] + 30)  # + title bar
             for n in res["nodes"]]
    overlaps = [f"{a[0]} {a[1]} / {b[0]} {b[1]}" for i, a in enumerate(boxes) for b in boxes[i + 1:]
                if a[2] < b[2] + b[4] and b[2] < a[2] + a[4] and a[3] < b[3] + b[5] and b[3] < a[3] + a[5]]
    assert not overlaps, f"nodes overlap once the frontend sizes them: {overlaps}"
