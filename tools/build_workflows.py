"""Write the UI-format template ``example_workflows/<name>.json`` of every ``example_workflows/api/<name>.json``,
and its thumbnail ``example_workflows/<name>.jpg``.

The API files are the source of truth (they are what the host tests run headless); the UI files are laid out
from them with the node definitions of a running ComfyUI that has this pack installed:

    python tools/build_workflows.py --server http://127.0.0.1:8188

Each UI file is the API graph converted (and checked to convert back to exactly the API graph), plus what only a
person opening the template needs: a MarkdownNote saying what the workflow does, which model files it needs and
where to download them, and the download links in the loader nodes' ``properties.models`` (the list ComfyUI's own
templates carry and its frontend offers to download when a model is missing). Both are added after the round-trip
check; a MarkdownNote is a frontend-only node that is never queued, so the graph that runs is the API file.
The thumbnails are drawn from the UI file by tools/make_thumbnails.py.
"""
import argparse
import json
import pathlib
import re

import comfy_client
import make_thumbnails

REPO = pathlib.Path(__file__).resolve().parent.parent
FOLDER = REPO / "example_workflows"
README = "https://github.com/pixels-edit/comfyui-pixels-edit#"

# Loader node type -> (its file input, the models/ folder ComfyUI reads it from)
LOADERS = {
    "CheckpointLoaderSimple": ("ckpt_name", "checkpoints"),
    "CLIPLoader": ("clip_name", "text_encoders"),
    "CLIPVisionLoader": ("clip_name", "clip_vision"),
    "ControlNetLoader": ("control_net_name", "controlnet"),
}

# The model files the shipped workflows name: what they are and where to download them.
MODELS = {
    "v1-5-pruned-emaonly.safetensors": {
        "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly.safetensors",
        "what": "Stable Diffusion 1.5 (about 4 GB; any SD1.5 checkpoint works: pick it in Load Checkpoint)",
    },
    "sd3_medium_incl_clips.safetensors": {
        "url": "https://huggingface.co/stabilityai/stable-diffusion-3-medium/resolve/main/sd3_medium_incl_clips.safetensors",
        "what": "Stable Diffusion 3 medium with its CLIP text encoders (about 6 GB; a gated download: accept the "
                "licence on its Hugging Face page first)",
    },
    "clip_l.safetensors": {
        "url": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
        "what": "a CLIP-L text encoder that has its text projection (SD3's and Flux's clip_l; SD1.5 checkpoints do not "
                "carry the projection)",
    },
    "clip-vit-large-patch14.safetensors": {
        "url": "https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/model.safetensors",
        "what": "OpenAI's CLIP ViT-L/14 (the file downloads as model.safetensors: save it under this name; the loader "
                "keeps the vision tower)",
    },
}

# What each workflow shows (the note's heading and first paragraph) and where the README explains it.
ABOUT = {
    "ito_layout_edit": (
        "ITO layout edit (SD1.5)",
        "ITO, the optimising sampler, with a layout edit: the edit conditioning is the source prompt plus \"a blue "
        "pond\" placed inside the drawn mask with Conditioning (Set Mask), which also serves as the edit mask; "
        "PIXELS ITO Guidance Image, then PIXELS ITO Sampler. For a pose or scribble layout edit replace the "
        "Conditioning (Set Mask) part by a ControlNet on both branches (README, \"Layout edits with ControlNet\": "
        "e.g. [control_v11p_sd15_openpose.pth](https://huggingface.co/lllyasviel/ControlNet-v1-1/resolve/main/"
        "control_v11p_sd15_openpose.pth) in `models/controlnet/`); as shipped it needs no ControlNet.",
        "ito-the-optimising-ksampler-edit-toward-a-new-prompt-or-layout-keep-the-rest"),
    "ito_text_edit": (
        "ITO text edit (SD1.5)",
        "ITO's three stages for a text edit (\"a small red house\" to \"a small stone castle\"): PIXELS ITO Edit "
        "Mask finds where the prompts differ, PIXELS ITO Guidance Image makes a first edit, PIXELS ITO Sampler "
        "blends it into the source (lambda 0.6). Saves the edit, the guidance image and the mask.",
        "ito-the-optimising-ksampler-edit-toward-a-new-prompt-or-layout-keep-the-rest"),
    "oig_text_edit": (
        "OIG text edit, cat to dog (SD1.5 + CLIP-L)",
        "OIG guidance: the source is DDIM-inverted with the source prompt, then every step toward the target prompt "
        "also descends a CLIP direction loss and a structure loss (PIXELS OIG Guider in SamplerCustomAdvanced, 25 "
        "DDIM steps, the authors' settings). Needs a CLIP text encoder with a projection and the matching CLIP "
        "vision model besides the checkpoint.",
        "oig-guidance-text-driven-image-edit-with-clip-and-structure-triplet-losses"),
    "pixels_flow_sd3": (
        "PIXELS on SD3 (a flow model)",
        "PIXELS progressive exemplar editing on SD3 with a text prompt: the beach exemplar comes in where the edit "
        "map is dark (black right quarter, grey ramp, white left quarter keeps the source), all in PIXELS "
        "Progressive Edit; the release schedule is saved too.",
        "pixels-progressive-exemplar-editing"),
    "pixels_map_from_mask": (
        "PIXELS map from a drawn mask (SD1.5)",
        "An edit map built from a drawn mask (Grow 8 px, smooth 48 px Falloff) combined with a gentle ramp (Levels), "
        "read in inpaint polarity (white = change), previewed as a release schedule, then fed to PIXELS "
        "Progressive Edit. Saves the edit, the map and its preview.",
        "edit-maps-from-masks-depth-and-ramps-to-grey-level-maps"),
    "pixels_multi_exemplar_sd15": (
        "PIXELS with two exemplars (SD1.5)",
        "Two exemplars in one sampling pass: the beach through the ramp map, the snowy field through the drawn mask "
        "(inpaint polarity), with PIXELS Progressive Sampler wrapping dpmpp_2m in SamplerCustomAdvanced. Saves the "
        "edit and which exemplar owns each pixel over the steps.",
        "pixels-progressive-exemplar-editing"),
    "pixels_single_exemplar_sd15": (
        "PIXELS with one exemplar (SD1.5)",
        "PIXELS progressive exemplar editing with the all-in-one node: the beach exemplar comes in where the map is "
        "dark (black right quarter), greys are released part-way (the ramp), white keeps the source. Saves the edit "
        "and the release schedule.",
        "pixels-progressive-exemplar-editing"),
    "syncsde_sd15": (
        "sync-SDE text edit (SD1.5)",
        "A sync-SDE edit with the all-in-one node: the source and target trajectories share their noise, so only "
        "what the prompt change asks for changes (\"green meadow\" to \"snowy meadow\").",
        "sync-sde-text-edits-that-change-only-what-the-prompt-change-asks-for"),
    "syncsde_sd3": (
        "sync-SDE text edit (SD3)",
        "The sync-SDE edit on SD3 with PIXELS Sync-SDE Guider and Sampler in SamplerCustomAdvanced (source prompt to "
        "target prompt, 28 steps from step 4).",
        "sync-sde-text-edits-that-change-only-what-the-prompt-change-asks-for"),
}

UI_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}  # frontend-only node types, never queued
NOTE_WIDTH = 460


def needed_models(api: dict) -> list[tuple[str, str, str]]:
    """(loader node id, file name, models/ folder) of every model file the API graph loads, in node order."""
    out = []
    for nid in sorted(api, key=int):
        node = api[nid]
        if node["class_type"] in LOADERS:
            key, folder = LOADERS[node["class_type"]]
            out.append((nid, node["inputs"][key], folder))
    return out


def note_text(name: str, api: dict) -> str:
    title, about, anchor = ABOUT[name]
    lines = [f"## {title}", "", about, "", "### Models", ""]
    folders = {}
    for _, file, folder in needed_models(api):
        if file in folders.get(folder, []):
            continue
        folders.setdefault(folder, []).append(file)
        info = MODELS[file]
        lines.append(f"- `models/{folder}/{file}`: {info['what']}. Download: [{file}]({info['url']})")
    lines += ["", "Put each file in that folder of your ComfyUI, then refresh the browser page so the loaders list it.", "",
              "### Inputs", "",
              "The pictures come with the pack: each **PIXELS Load Example Image** node picks one from the pack's "
              "`example_workflows/inputs/`, so nothing needs uploading. To edit your own picture, replace it with "
              "**Load Image** (for a map or mask, keep the Convert Image to Mask after it).", "",
              f"More: [the README]({README}{anchor}) of PIXELS editing."]
    return "\n".join(lines)


def add_template_info(ui: dict, name: str, api: dict) -> dict:
    """The UI workflow with its MarkdownNote (left of the graph) and the loaders' ``properties.models``."""
    ui = json.loads(json.dumps(ui))
    files = {nid: (file, folder) for nid, file, folder in needed_models(api)}
    for node in ui["nodes"]:
        if str(node["id"]) in files:
            file, folder = files[str(node["id"])]
            node["properties"]["models"] = [{"name": file, "url": MODELS[file]["url"], "directory": folder}]
    text = note_text(name, api)
    chars_per_line = 62
    shown = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link shows only its text
    rows = sum(max(1, -(-len(line) // chars_per_line)) for line in shown.splitlines())
    nid = ui["last_node_id"] + 1
    ui["nodes"].append({
        "id": nid, "type": "MarkdownNote", "pos": [40 - NOTE_WIDTH - 60, 40], "size": [NOTE_WIDTH, 24 + 19 * rows],
        "flags": {}, "order": len(ui["nodes"]), "mode": 0, "inputs": [], "outputs": [],
        "title": "About this workflow", "properties": {}, "widgets_values": [text], "color": "#432", "bgcolor": "#000"})
    ui["last_node_id"] = nid
    return ui


def ui_only_stripped(ui: dict) -> dict:
    """The UI workflow without its frontend-only nodes (notes, reroutes), for comparing with the API graph."""
    out = json.loads(json.dumps(ui))
    out["nodes"] = [n for n in out["nodes"] if n["type"] not in UI_ONLY]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default="http://127.0.0.1:8188")
    args = ap.parse_args()
    oi = comfy_client.Client(args.server).object_info()
    for path in sorted((FOLDER / "api").glob("*.json")):
        api = json.loads(path.read_text())
        ui = comfy_client.api_to_ui(api, oi)
        assert comfy_client.ui_to_api(ui, oi) == comfy_client.with_defaults(api, oi), path
        ui = add_template_info(ui, path.stem, api)
        assert comfy_client.ui_to_api(ui_only_stripped(ui), oi) == comfy_client.with_defaults(api, oi), path
        (FOLDER / path.name).write_text(json.dumps(ui, indent=1) + "\n")
        print("wrote", FOLDER / path.name)
    make_thumbnails.main(["--server", args.server])


if __name__ == "__main__":
    main()
