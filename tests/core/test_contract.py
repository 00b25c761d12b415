"""Public contract: node IDs that shipped must stay (shared workflows name them), and every workflow names real nodes.

Read from the source, so these run without ComfyUI. Adding a node is fine; removing or renaming one fails here.
"""
import json
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parent.parent.parent

# Every node ID released in 0.1.0. Never remove an entry: a renamed node breaks every shared workflow.
SHIPPED = {
    "PixelsExemplar", "PixelsProgressiveSampler", "PixelsProgressiveEdit", "PixelsReleaseSchedule",
    "PixelsMapGrow", "PixelsMapBlur", "PixelsMapLevels", "PixelsMapEqualize", "PixelsMapStretch", "PixelsMapInvert",
    "PixelsMapQuantize", "PixelsMapFromDepth", "PixelsMapRamp", "PixelsMapFalloff", "PixelsMapCombine",
    "PixelsMapPreview",
    "PixelsSyncSDEGuider", "PixelsSyncSDESampler", "PixelsSyncSDEEdit",
    "PixelsITOEditMask", "PixelsITOGuidanceImage", "PixelsITOSampler", "PixelsITOEdit",
    "PixelsOIGGuider",
}


def declared() -> list[str]:
    return [i for f in sorted((REPO / "nodes").glob("*.py")) for i in re.findall(r'node_id="(\w+)"', f.read_text())]


def test_shipped_node_ids_are_still_declared():
    missing = SHIPPED - set(declared())
    assert not missing, f"node IDs removed or renamed (shared workflows break): {sorted(missing)}"


def test_node_ids_are_prefixed_and_unique():
    ids = declared()
    assert all(i.startswith("Pixels") for i in ids), ids
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


EXAMPLES = REPO / "example_workflows"
# Frontend-only node types: in a UI workflow, never queued, so never in its API twin.
UI_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
LOADERS = {"LoadImage", "PixelsLoadExample"}
MODEL_LOADERS = {"CheckpointLoaderSimple", "CLIPLoader", "CLIPVisionLoader", "ControlNetLoader", "UNETLoader", "VAELoader"}


def test_workflows_name_only_declared_pack_nodes_and_bundled_inputs():
    ids = set(declared())
    inputs = {p.name for p in (EXAMPLES / "inputs").iterdir()}
    apis = sorted((EXAMPLES / "api").glob("*.json"))
    assert apis, "no API workflows in example_workflows/api/"
    for path in apis:
        api = json.loads(path.read_text())
        for nid, node in api.items():
            cls = node["class_type"]
            assert not cls.startswith("Pixels") or cls in ids, f"{path.name} node {nid}: unknown pack node {cls}"
            assert cls != "LoadImage", f"{path.name} node {nid}: LoadImage needs an upload; use PixelsLoadExample"
            if cls in LOADERS:
                assert node["inputs"]["image"] in inputs, f"{path.name} node {nid}: {node['inputs']['image']} not bundled"
        ui = EXAMPLES / path.name
        assert ui.exists(), f"{path.name} has no UI-format twin in example_workflows/"
        types = {n["type"] for n in json.loads(ui.read_text())["nodes"]}
        assert types - UI_ONLY == {n["class_type"] for n in api.values()}, ui


def test_templates_are_only_the_ui_workflows():
    """ComfyUI lists every top-level example_workflows/*.json as a template (and also looks in example/, examples/,
    workflow/, workflows/): only the UI files may be there, each with its thumbnail and its MarkdownNote."""
    for old in ("example", "examples", "workflow", "workflows"):
        assert not (REPO / old).exists(), f"{old}/ would be listed as templates too: keep them in example_workflows/"
    names = {p.stem for p in EXAMPLES.glob("*.json")}
    assert names == {p.stem for p in (EXAMPLES / "api").glob("*.json")}
    for name in sorted(names):
        ui = json.loads((EXAMPLES / f"{name}.json").read_text())
        assert isinstance(ui.get("nodes"), list), f"{name}.json is not a UI-format workflow"
        assert any(n["type"] == "MarkdownNote" and n["widgets_values"][0].startswith("## ") for n in ui["nodes"]), name
        thumb = EXAMPLES / f"{name}.jpg"
        assert thumb.exists() and thumb.read_bytes()[:3] == b"\xff\xd8\xff", f"{name}.jpg missing or not a JPEG"
        assert thumb.stat().st_size < 60_000, f"{name}.jpg is {thumb.stat().st_size} bytes"
        for node in ui["nodes"]:
            models = (node.get("properties") or {}).get("models", [])
            for model in models:
                assert set(model) == {"name", "url", "directory"} and model["url"].startswith("https://"), (name, model)
            if node["type"] in MODEL_LOADERS:  # where the frontend looks for a missing model's download link
                assert [m["name"] for m in models] == node["widgets_values"][:1], (name, node["id"], models)
