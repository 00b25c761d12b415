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

# Loader node type -> (its file inputs, the models/ folder ComfyUI reads them from)
LOADERS = {
    "CheckpointLoaderSimple": (("ckpt_name",), "checkpoints"),
    "CLIPLoader": (("clip_name",), "text_encoders"),
    "DualCLIPLoader": (("clip_name1", "clip_name2"), "text_encoders"),
    "CLIPVisionLoader": (("clip_name",), "clip_vision"),
    "ControlNetLoader": (("control_net_name",), "controlnet"),
    "UNETLoader": (("unet_name",), "diffusion_models"),
    "VAELoader": (("vae_name",), "vae"),
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
    "sd_xl_base_1.0.safetensors": {
        "url": "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors",
        "what": "Stable Diffusion XL base 1.0 with its two CLIP text encoders and VAE (about 7 GB; any SDXL checkpoint "
                "works)",
    },
    "flux1-dev.safetensors": {
        "url": "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors",
        "what": "FLUX.1 [dev], the guidance-distilled diffusion model (about 24 GB; a gated download: accept the licence "
                "on its Hugging Face page first; an fp8 copy works too)",
    },
    "flux1-fill-dev.safetensors": {
        "url": "https://huggingface.co/black-forest-labs/FLUX.1-Fill-dev/resolve/main/flux1-fill-dev.safetensors",
        "what": "FLUX.1 Fill [dev], the inpainting model (about 24 GB; a gated download: accept the licence on its "
                "Hugging Face page first; an fp8 copy works too)",
    },
    "ae.safetensors": {
        "url": "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/ae.safetensors",
        "what": "the FLUX.1 VAE (16 latent channels, about 330 MB; gated like the model)",
    },
    "t5xxl_fp16.safetensors": {
        "url": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors",
        "what": "the T5-XXL text encoder Flux uses (about 9.8 GB; t5xxl_fp8_e4m3fn.safetensors works in less memory)",
    },
    "qwen_image_fp8_e4m3fn.safetensors": {
        "url": "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/diffusion_models/"
               "qwen_image_fp8_e4m3fn.safetensors",
        "what": "Qwen-Image, the diffusion model in fp8 (about 20 GB)",
    },
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": {
        "url": "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/text_encoders/"
               "qwen_2.5_vl_7b_fp8_scaled.safetensors",
        "what": "Qwen2.5-VL 7B, Qwen-Image's text encoder (about 9 GB)",
    },
    "qwen_image_vae.safetensors": {
        "url": "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/vae/qwen_image_vae.safetensors",
        "what": "the Qwen-Image VAE (about 250 MB)",
    },
    "wan2.1_t2v_1.3B_fp16.safetensors": {
        "url": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/diffusion_models/"
               "wan2.1_t2v_1.3B_fp16.safetensors",
        "what": "Wan 2.1 text-to-video 1.3B (about 2.8 GB; the 14B model works the same way)",
    },
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": {
        "url": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/text_encoders/"
               "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
        "what": "umT5-XXL, Wan's text encoder, in fp8 (about 6.7 GB)",
    },
    "wan_2.1_vae.safetensors": {
        "url": "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files/vae/"
               "wan_2.1_vae.safetensors",
        "what": "the Wan 2.1 video VAE (8x space, 4x time, about 250 MB)",
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
    "pixels_flux1": (
        "PIXELS on Flux.1 dev",
        "PIXELS progressive exemplar editing on Flux.1 dev (guidance-distilled: Flux Guidance 3.5 on the prompt, CFG "
        "1, the negative zeroed): the beach exemplar comes in where the edit map is dark, greys are released part-way, "
        "white keeps the source; source and exemplar scaled to 1024 px.",
        "pixels-progressive-exemplar-editing"),
    "pixels_place_segments": (
        "PIXELS with a placed exemplar and a segmentation map (SD1.5)",
        "Two exemplars from two new map sources: PIXELS Place Exemplar puts the exemplar into the sky (centre 0.2, "
        "0.2, scale 0.35, rotated 15 degrees, 24 px feather) and gives the matching edit map; PIXELS Map From "
        "Segments turns the drawn mask (a batch of one mask, as segmentation nodes give them) into a map with a grey "
        "level per segment (0.0 for the mask, 1.0 elsewhere) and 32 px soft edges. Both exemplars go into one "
        "PIXELS Progressive Edit pass. Saves the edit, the placed composite and the segment map's preview.",
        "maps-from-segmentations-and-placed-exemplars"),
    "pixels_sdxl": (
        "PIXELS on SDXL",
        "PIXELS progressive exemplar editing on SDXL base with the all-in-one node (dpmpp_2m karras, 30 steps): the "
        "beach exemplar comes in where the edit map is dark; source and exemplar scaled to 1024 px. The release "
        "schedule is drawn on the VAE's latent grid.",
        "pixels-progressive-exemplar-editing"),
    "pixels_soft_inpaint_sd15": (
        "PIXELS soft inpainting, no exemplar (SD1.5)",
        "PIXELS with no exemplar: progressive soft inpainting, a drop-in for Differential Diffusion. Top: the drawn "
        "mask, feathered (PIXELS Map Blur 16 px), read as white = change by PIXELS Progressive Edit. Bottom: a "
        "Differential Diffusion graph with its sampler swapped: Set Latent Noise Mask (the inverted ramp map) into "
        "PIXELS Progressive Sampler in SamplerCustomAdvanced. Pixels the map never releases end exactly at the "
        "source.",
        "no-exemplar-progressive-soft-inpainting-a-drop-in-for-differential-diffusion"),
    "pixels_flux_fill_inpaint": (
        "PIXELS soft inpainting with Flux Fill",
        "PIXELS with no exemplar on an inpainting checkpoint (FLUX.1 Fill dev, Flux Guidance 30, 28 steps from full "
        "noise): the drawn mask, feathered (PIXELS Map Blur 16 px), read as white = change. At every step Flux Fill's "
        "mask and masked image are the pixels released so far (inpaint_concat = follow the release), so the feathered "
        "edge is filled progressively; pixels the map never releases end exactly at the source. No "
        "InpaintModelConditioning is needed.",
        "inpainting-checkpoints-sd15-and-sdxl-inpainting-flux-fill"),
    "pixels_wan_video": (
        "PIXELS on a Wan 2.1 video clip",
        "PIXELS on a clip: 17 frames (the still source repeated: replace Repeat Image Batch by your video loader) "
        "edited in one pass by Wan 2.1 T2V, one edit map for every frame (a MASK batch of 17 maps, or of 5, one per "
        "latent frame, edits frame by frame). The beach exemplar clip comes in where the map is dark; the frames are "
        "saved as images.",
        "video-latents-wan-2x-and-other-3-d-latent-formats"),
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
    "syncsde_flux1": (
        "sync-SDE text edit (Flux.1 dev)",
        "The sync-SDE edit on Flux.1 dev, the family the sync-SDE authors ship: both prompts through Flux Guidance "
        "3.5, CFG 1 on both branches, the source and target trajectories on one shared noise (\"green meadow\" to "
        "\"snowy meadow\", 28 steps from step 4).",
        "sync-sde-text-edits-that-change-only-what-the-prompt-change-asks-for"),
    "syncsde_qwen_image": (
        "sync-SDE text edit (Qwen-Image)",
        "The sync-SDE edit on Qwen-Image (Model Sampling AuraFlow shift 3.1, true CFG 2.5 on both branches, 20 steps "
        "from step 3): \"green meadow\" to \"snowy meadow\", the rest of the picture kept by the shared noise.",
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
            keys, folder = LOADERS[node["class_type"]]
            out += [(nid, node["inputs"][key], folder) for key in keys]
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
    files = {}
    for nid, file, folder in needed_models(api):
        files.setdefault(nid, []).append({"name": file, "url": MODELS[file]["url"], "directory": folder})
    for node in ui["nodes"]:
        if str(node["id"]) in files:
            node["properties"]["models"] = files[str(node["id"])]
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
