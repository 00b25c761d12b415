"""Node help pages, fetched from a running ComfyUI the way its frontend's help panel fetches them.

The frontend takes the pack folder from a node's ``python_module`` (``custom_nodes.<folder>``, an ``@version``
suffix dropped), asks for ``/extensions/<folder>/docs/<NodeId>/<locale>.md`` and then ``.../docs/<NodeId>.md``,
and resolves relative image paths in the markdown against ``/extensions/<folder>/docs/``. ComfyUI serves
``/extensions/<folder>/`` from the pack's ``WEB_DIRECTORY`` (read in ``nodes.load_custom_node`` before the V1/V3
branch, so a ``comfy_entrypoint`` pack gets it too).
"""
import re
import urllib.error
import urllib.request

import make_node_docs  # tools/ is on sys.path (conftest)

MODULE_PREFIX = "custom_nodes."
MODULE = MODULE_PREFIX + "comfyui-pixels-edit"  # conftest links the pack in under this folder name
IMAGE_REF = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _get(comfy, path: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(comfy.url + path, timeout=60) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def _pack_nodes(comfy) -> dict:
    nodes = {k: v for k, v in comfy.object_info().items() if v.get("python_module") == MODULE}
    assert nodes, "no pack node registered"
    return nodes


def _folder(info: dict) -> str:
    """The pack folder as the frontend's extractCustomNodeName derives it."""
    module = info["python_module"]
    assert module.startswith(MODULE_PREFIX), module
    return module.split(".")[1].split("@")[0]


def _page(comfy, info: dict) -> str:
    path = f"/extensions/{_folder(info)}/docs/{info['name']}.md"
    status, body, _ = _get(comfy, path)
    assert status == 200, f"{path}: HTTP {status}"
    text = body.decode("utf-8")
    assert text.strip(), f"{path} is empty"
    return text


def test_every_node_has_a_served_help_page_naming_its_inputs_and_outputs(comfy):
    missing = []
    for nid, info in sorted(_pack_nodes(comfy).items()):
        text = _page(comfy, info)
        assert text.lstrip().startswith(f"# {info['display_name']} (`{nid}`)"), f"{nid}: page title"
        names = [n for sec in ("required", "optional") for n in (info["input"].get(sec) or {})]
        names += list(info.get("output_name") or [])
        missing += [f"{nid}: `{n}`" for n in names if f"`{n}`" not in text]
        assert "TODO" not in text, f"{nid}: the page still has TODO placeholders"
        assert "## Example" in text, f"{nid}: no worked example"
    assert not missing, "help pages do not mention: " + ", ".join(missing)


def test_generated_tables_match_this_servers_schemas(comfy):
    """The block tools/make_node_docs.py writes equals what it renders from this server's /object_info."""
    stale = []
    for nid, info in sorted(_pack_nodes(comfy).items()):
        text = _page(comfy, info)
        if make_node_docs.generated_block(text) != make_node_docs.render_block(info):
            stale.append(nid)
    assert not stale, f"stale parameter tables (run tools/make_node_docs.py): {stale}"


def test_pictures_resolve_as_the_frontend_resolves_them(comfy):
    seen = 0
    for nid, info in sorted(_pack_nodes(comfy).items()):
        base = f"/extensions/{_folder(info)}/docs/"
        for ref in IMAGE_REF.findall(_page(comfy, info)):
            assert not re.match(r"^(/|https?://)", ref), f"{nid}: {ref} is not relative to the docs folder"
            status, body, kind = _get(comfy, base + ref)
            assert status == 200, f"{nid}: {base + ref}: HTTP {status}"
            assert kind.startswith("image/") and body[:8] == b"\x89PNG\r\n\x1a\n", f"{nid}: {ref} is not a PNG"
            seen += 1
    assert seen, "no page shows a picture"


def test_help_panel_falls_back_from_the_locale_page(comfy):
    """The frontend asks for <NodeId>/<locale>.md first; a 404 there must not hide the plain page."""
    info = next(iter(_pack_nodes(comfy).values()))
    status, _, _ = _get(comfy, f"/extensions/{_folder(info)}/docs/{info['name']}/en.md")
    assert status == 404
    assert _page(comfy, info)
