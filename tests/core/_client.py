"""The client under test for the core client tests: ``tools/comfy_client.py`` loaded from its file (``tools/`` is not
a package) as a module of its own per test file, and the two-node ``/object_info`` several of them serve."""
import importlib.util
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
CLIENT = REPO / "tools" / "comfy_client.py"

LOAD_SAVE_INFO = {
    "LoadImage": {"input": {"required": {"image": [["a.png"], {"image_upload": True}]}},
                  "output": ["IMAGE", "MASK"], "output_name": ["IMAGE", "MASK"], "name": "LoadImage"},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "ComfyUI"}]}},
                  "output": [], "name": "SaveImage"},
}


def load(name: str):
    """A fresh module ``name`` executed from ``tools/comfy_client.py``."""
    spec = importlib.util.spec_from_file_location(name, CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
