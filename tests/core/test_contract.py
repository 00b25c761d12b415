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


def test_workflows_name_only_declared_pack_nodes_and_bundled_inputs():
    ids = set(declared())
    inputs = {p.name for p in (REPO / "workflows" / "inputs").iterdir()}
    for path in sorted((REPO / "workflows" / "api").glob("*.json")):
        api = json.loads(path.read_text())
        for nid, node in api.items():
            cls = node["class_type"]
            assert not cls.startswith("Pixels") or cls in ids, f"{path.name} node {nid}: unknown pack node {cls}"
            if cls == "LoadImage":
                assert node["inputs"]["image"] in inputs, f"{path.name} node {nid}: {node['inputs']['image']} not bundled"
        ui = REPO / "workflows" / path.name
        assert ui.exists(), f"{path.name} has no UI-format twin in workflows/"
        assert {n["type"] for n in json.loads(ui.read_text())["nodes"]} == {n["class_type"] for n in api.values()}, ui
