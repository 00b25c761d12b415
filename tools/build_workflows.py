"""Write the UI-format twin ``workflows/<name>.json`` of every ``workflows/api/<name>.json``.

The API files are the source of truth (they are what the host tests run headless); the UI files are laid out
from them with the node definitions of a running ComfyUI that has this pack installed:

    python tools/build_workflows.py --server http://127.0.0.1:8188
"""
import argparse
import json
import pathlib

import comfy_client

REPO = pathlib.Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default="http://127.0.0.1:8188")
    args = ap.parse_args()
    oi = comfy_client.Client(args.server).object_info()
    for path in sorted((REPO / "workflows" / "api").glob("*.json")):
        api = json.loads(path.read_text())
        ui = comfy_client.api_to_ui(api, oi)
        assert comfy_client.ui_to_api(ui, oi) == comfy_client.with_defaults(api, oi), path
        (REPO / "workflows" / path.name).write_text(json.dumps(ui, indent=1) + "\n")
        print("wrote", REPO / "workflows" / path.name)


if __name__ == "__main__":
    main()
