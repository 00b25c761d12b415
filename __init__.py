"""ComfyUI entry point of the PIXELS editing pack: registration only (V3 schema)."""
from comfy_api.latest import ComfyExtension, io

from .nodes import all_nodes

# Served by ComfyUI at /extensions/<this folder>/ (both for V1 packs and for V3 packs with comfy_entrypoint): the
# node help pages the frontend's help panel reads, web/docs/<NodeId>.md (tools/make_node_docs.py), and the icon.
WEB_DIRECTORY = "./web"


class PixelsExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return all_nodes()


async def comfy_entrypoint() -> PixelsExtension:
    return PixelsExtension()
