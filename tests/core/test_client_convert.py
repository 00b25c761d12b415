"""tools/comfy_client.py ``ui_to_api``: the UI-only nodes and node modes, converted as ComfyUI's frontend does when it
queues (``graphToPrompt`` / ``ExecutableNodeDTO``): notes dropped, reroutes resolved through, a PrimitiveNode's value
written into every widget it feeds, muted nodes dropped with the links from them, bypassed nodes rewired input to
output by type. The expected prompts are written out by hand. No server, no ComfyUI."""
import copy
import pathlib

import pytest

from tests.core._client import load

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
cc = load("comfy_client_convert_under_test")

OBJECT_INFO = {
    "LoadImage": {"input": {"required": {"image": [["a.png", "b.png"], {"image_upload": True}]}},
                  "output": ["IMAGE", "MASK"], "output_name": ["IMAGE", "MASK"]},
    "Blur": {"input": {"required": {"image": ["IMAGE"], "radius": ["INT", {"default": 1}]}}, "output": ["IMAGE"]},
    "Invert": {"input": {"required": {"image": ["IMAGE"]}}, "output": ["IMAGE"]},
    "Scale": {"input": {"required": {"image": ["IMAGE"], "factor": ["FLOAT", {"default": 1.0}]}}, "output": ["IMAGE"]},
    "Mix": {"input": {"required": {"a": ["IMAGE"], "b": ["IMAGE"], "mask": ["MASK"],
                                   "weight": ["FLOAT", {"default": 0.5}]}}, "output": ["IMAGE", "MASK"]},
    "ToMask": {"input": {"required": {"image": ["IMAGE"]}}, "output": ["MASK"]},
    "MaskPreview": {"input": {"required": {"mask": ["MASK"]}}, "output": []},
    "Noise": {"input": {"required": {"seed": ["INT", {"default": 0, "control_after_generate": True}],
                                     "image": ["IMAGE"]}}, "output": ["IMAGE"]},
    "PrimitiveInt": {"input": {"required": {"value": ["INT", {"default": 0, "control_after_generate": True}]}},
                     "output": ["INT"]},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]}},
                  "output": []},
}


def inp(name, typ, link=None, widget=False):
    out = {"name": name, "type": typ, "link": link}
    if widget:
        out["widget"] = {"name": name}
    return out


def out(typ, links, name=None, widget=None):
    o = {"name": name or typ, "type": typ, "links": links}
    if widget:
        o["widget"] = {"name": widget}
    return o


def node(nid, typ, inputs=(), outputs=(), widgets=None, mode=0, **extra):
    n = {"id": nid, "type": typ, "pos": [0, 0], "size": [200, 100], "flags": {}, "order": 0, "mode": mode,
         "inputs": list(inputs), "outputs": list(outputs), "properties": {}}
    if widgets is not None:
        n["widgets_values"] = widgets
    n.update(extra)
    return n


def link(lid, src, slot, dst, dslot, typ):
    return [lid, src, slot, dst, dslot, typ]


def ui_file():
    """LoadImage 1 -> Reroute 10 -> Reroute 11 (a chain) -> Blur 3 and a bypassed Invert 4 -> Blur 5;
    PrimitiveNode 20 (radius 5) feeds Blur 3 and Blur 5; Blur 3 -> muted Scale 6 -> SaveImage 7; Blur 5 -> SaveImage 8;
    PrimitiveInt 21 (a real server node) feeds Noise 9's seed; a Note 30 and a MarkdownNote 31 on the side."""
    nodes = [
        node(1, "LoadImage", [], [out("IMAGE", [1]), out("MASK", [])], ["b.png", "image"]),
        node(10, "Reroute", [inp("", "*", 1)], [out("IMAGE", [2])], showOutputText=False),
        node(11, "Reroute", [inp("", "*", 2)], [out("IMAGE", [3, 4])]),
        node(3, "Blur", [inp("image", "IMAGE", 3), inp("radius", "INT", 10, widget=True)], [out("IMAGE", [6, 14])],
             [1]),  # the stale widget value 1: the primitive's 5 wins
        node(4, "Invert", [inp("image", "IMAGE", 4)], [out("IMAGE", [5])], [], mode=4),
        node(5, "Blur", [inp("image", "IMAGE", 5), inp("radius", "INT", 11, widget=True)], [out("IMAGE", [8])], [2]),
        node(6, "Scale", [inp("image", "IMAGE", 6)], [out("IMAGE", [7])], [2.0], mode=2),
        node(7, "SaveImage", [inp("images", "IMAGE", 7)], [], ["muted"]),
        node(8, "SaveImage", [inp("images", "IMAGE", 8)], [], ["b"]),
        node(20, "PrimitiveNode", [], [out("INT", [10, 11], name="connect to widget input", widget="radius")],
             [5, "fixed"], properties={"Run widget replace on values": False}),
        node(21, "PrimitiveInt", [], [out("INT", [12])], [7, "fixed"]),
        node(9, "Noise", [inp("image", "IMAGE", 14), inp("seed", "INT", 12, widget=True)], [out("IMAGE", [])],
             [123, "randomize"]),
        node(30, "Note", [], [], ["a note"], color="#432", bgcolor="#653"),
        node(31, "MarkdownNote", [], [], ["# a *markdown* note"]),
    ]
    links = [link(1, 1, 0, 10, 0, "*"), link(2, 10, 0, 11, 0, "IMAGE"), link(3, 11, 0, 3, 0, "IMAGE"),
             link(4, 11, 0, 4, 0, "IMAGE"), link(5, 4, 0, 5, 0, "IMAGE"), link(6, 3, 0, 6, 0, "IMAGE"),
             link(7, 6, 0, 7, 0, "IMAGE"), link(8, 5, 0, 8, 0, "IMAGE"), link(10, 20, 0, 3, 1, "INT"),
             link(11, 20, 0, 5, 1, "INT"), link(12, 21, 0, 9, 1, "INT"), link(14, 3, 0, 9, 0, "IMAGE")]
    return {"last_node_id": 31, "last_link_id": 14, "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {}, "version": 0.4}


EXPECTED = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "b.png"}},
    "3": {"class_type": "Blur", "inputs": {"image": ["1", 0], "radius": 5}},
    "5": {"class_type": "Blur", "inputs": {"image": ["1", 0], "radius": 5}},  # through bypassed 4 and both reroutes
    "7": {"class_type": "SaveImage", "inputs": {"filename_prefix": "muted"}},  # its link from muted 6 is gone
    "8": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "b"}},
    "9": {"class_type": "Noise", "inputs": {"seed": ["21", 0], "image": ["3", 0]}},
    "21": {"class_type": "PrimitiveInt", "inputs": {"value": 7}},
}


def test_ui_only_nodes_and_modes_convert_as_the_frontend_does():
    assert cc.ui_to_api(ui_file(), OBJECT_INFO) == EXPECTED


def test_node_order_and_link_objects_do_not_matter():
    ui = ui_file()
    ui["nodes"].reverse()
    ui["links"] = [{"id": l[0], "origin_id": l[1], "origin_slot": l[2], "target_id": l[3], "target_slot": l[4],
                    "type": l[5]} for l in ui["links"]]
    assert cc.ui_to_api(ui, OBJECT_INFO) == EXPECTED


def test_ui_only_types_need_no_object_info():
    assert not set(cc.VIRTUAL_TYPES) & set(OBJECT_INFO)
    ui = ui_file()
    ui["nodes"] = [n for n in ui["nodes"] if n["id"] in (30, 31)]
    ui["links"] = []
    assert cc.ui_to_api(ui, OBJECT_INFO) == {}


def test_a_bypassed_node_prefers_the_input_at_the_outputs_index():
    """Mix (a, b: IMAGE; mask: MASK) bypassed: output 0 (IMAGE) takes input 0 (a), output 1 (MASK) the MASK input."""
    nodes = [
        node(1, "LoadImage", [], [out("IMAGE", [1]), out("MASK", [3])], ["a.png", "image"]),
        node(2, "Invert", [], [out("IMAGE", [2])]),
        node(3, "Mix", [inp("a", "IMAGE", 1), inp("b", "IMAGE", 2), inp("mask", "MASK", 3)],
             [out("IMAGE", [4]), out("MASK", [5])], [0.5], mode=4),
        node(4, "SaveImage", [inp("images", "IMAGE", 4)], [], ["x"]),
        node(5, "MaskPreview", [inp("mask", "MASK", 5)], []),
    ]
    links = [link(1, 1, 0, 3, 0, "IMAGE"), link(2, 2, 0, 3, 1, "IMAGE"), link(3, 1, 1, 3, 2, "MASK"),
             link(4, 3, 0, 4, 0, "IMAGE"), link(5, 3, 1, 5, 0, "MASK")]
    api = cc.ui_to_api({"nodes": nodes, "links": links}, OBJECT_INFO)
    assert api == {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
                   "2": {"class_type": "Invert", "inputs": {}},
                   "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
                   "5": {"class_type": "MaskPreview", "inputs": {"mask": ["1", 1]}}}


def test_a_bypassed_node_with_no_input_of_the_type_feeds_nothing():
    """ToMask (IMAGE in, MASK out) bypassed: nothing of type MASK to pass on, so the mask input is left out; a
    chain of two bypassed nodes passes straight through."""
    nodes = [
        node(1, "LoadImage", [], [out("IMAGE", [1]), out("MASK", [])], ["a.png", "image"]),
        node(2, "ToMask", [inp("image", "IMAGE", 1)], [out("MASK", [2])], mode=4),
        node(3, "MaskPreview", [inp("mask", "MASK", 2)], []),
        node(4, "Invert", [inp("image", "IMAGE", 3)], [out("IMAGE", [4])], mode=4),
        node(5, "Invert", [inp("image", "IMAGE", 4)], [out("IMAGE", [5])], mode=4),
        node(6, "Blur", [inp("image", "IMAGE", 5)], [out("IMAGE", [])], [3]),
        node(7, "Invert", [], [out("IMAGE", [3])]),
    ]
    links = [link(1, 1, 0, 2, 0, "IMAGE"), link(2, 2, 0, 3, 0, "MASK"), link(3, 7, 0, 4, 0, "IMAGE"),
             link(4, 4, 0, 5, 0, "IMAGE"), link(5, 5, 0, 6, 0, "IMAGE")]
    api = cc.ui_to_api({"nodes": nodes, "links": links}, OBJECT_INFO)
    assert api["3"] == {"class_type": "MaskPreview", "inputs": {}}
    assert api["6"] == {"class_type": "Blur", "inputs": {"image": ["7", 0], "radius": 3}}
    assert set(api) == {"1", "3", "6", "7"}


def test_a_widget_fed_through_an_unlinked_reroute_keeps_its_value():
    nodes = [node(1, "Reroute", [inp("", "*", None)], [out("INT", [1])]),
             node(2, "Blur", [inp("image", "IMAGE", None), inp("radius", "INT", 1, widget=True)], [out("IMAGE", [])],
                  [4])]
    api = cc.ui_to_api({"nodes": nodes, "links": [link(1, 1, 0, 2, 1, "INT")]}, OBJECT_INFO)
    assert api == {"2": {"class_type": "Blur", "inputs": {"radius": 4}}}


def test_uninstalled_types_fail_unless_muted_or_bypassed():
    ui = {"nodes": [node(1, "Missing", [], [], [1])], "links": []}
    with pytest.raises(cc.WorkflowError, match="node 1: 'Missing' is not installed"):
        cc.ui_to_api(ui, OBJECT_INFO)
    for mode in (2, 4):
        ui["nodes"][0]["mode"] = mode
        assert cc.ui_to_api(ui, OBJECT_INFO) == {}


def test_a_subgraph_is_refused_naming_the_node():
    ui = ui_file()
    sg = "1f1e9b9e-0b8a-4c52-9d36-1d3c0b1f0a11"
    ui["definitions"] = {"subgraphs": [{"id": sg, "name": "My blur", "nodes": [], "links": [], "inputs": [],
                                        "outputs": []}]}
    ui["nodes"].append(node(40, sg, [], [], []))
    with pytest.raises(cc.WorkflowError, match=r"node 40 \(My blur\) is a subgraph: .*Unpack Subgraph"):
        cc.ui_to_api(ui, OBJECT_INFO)


def test_a_group_node_is_refused_naming_the_node():
    ui = ui_file()
    ui["extra"]["groupNodes"] = {"pair": {"nodes": [], "links": []}}
    ui["nodes"].append(node(41, "workflow>pair", [], [], []))
    with pytest.raises(cc.WorkflowError, match=r"node 41 \(workflow>pair\) is a group node"):
        cc.ui_to_api(ui, OBJECT_INFO)


def test_a_circular_reroute_is_refused():
    nodes = [node(1, "Reroute", [inp("", "*", 2)], [out("IMAGE", [1, 3])]),
             node(2, "Reroute", [inp("", "*", 1)], [out("IMAGE", [2])]),
             node(3, "Invert", [inp("image", "IMAGE", 3)], [out("IMAGE", [])])]
    links = [link(1, 1, 0, 2, 0, "IMAGE"), link(2, 2, 0, 1, 0, "IMAGE"), link(3, 1, 0, 3, 0, "IMAGE")]
    with pytest.raises(cc.WorkflowError, match="circular"):
        cc.ui_to_api({"nodes": nodes, "links": links}, OBJECT_INFO)


def test_api_to_ui_round_trip_still_holds():
    api = copy.deepcopy(EXPECTED)
    del api["7"]  # a SaveImage with no images link is not an API workflow api_to_ui lays out
    ui = cc.api_to_ui(api, OBJECT_INFO)
    assert cc.ui_to_api(ui, OBJECT_INFO) == cc.with_defaults(api, OBJECT_INFO)


def test_conversion_needs_no_aiohttp_and_the_client_says_what_is_missing():
    import subprocess
    import sys
    code = f"""
import sys, importlib.util
sys.modules["aiohttp"] = None  # as if it were not installed
spec = importlib.util.spec_from_file_location("cc", {str(REPO / "tools" / "comfy_client.py")!r})
cc = importlib.util.module_from_spec(spec); spec.loader.exec_module(cc)
assert cc.ui_to_api({{"nodes": [], "links": []}}, {{}}) == {{}}
try:
    cc.Client("http://127.0.0.1:1").object_info()
except ImportError as e:
    print(e)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "needs aiohttp, which ComfyUI itself installs" in out.stdout
