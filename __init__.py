"""ComfyUI entry point of the PIXELS editing pack: registration only (V3 schema)."""
from comfy_api.latest import ComfyExtension, io

from .nodes import all_nodes


class PixelsExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return all_nodes()


async def comfy_entrypoint() -> PixelsExtension:
    return PixelsExtension()
