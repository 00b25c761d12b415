"""ITO nodes in a real ComfyUI on tiny models: the three stages, the all-in-one node, a flow model, clear errors,
gradients under ComfyUI's inference mode (the Adam steps run inside every run here), cancel."""

import pytest

import comfy_client

ITO_NODES = ["PixelsITOEditMask", "PixelsITOGuidanceImage", "PixelsITOSampler", "PixelsITOEdit"]


def graph(seed: int, steps: int = 4, ckpt: str = "v1-5-pruned-emaonly.safetensors", batch: int = 1) -> dict:
    """Source image, prompts and a square edit mask made inside the graph at 64 px (no uploads)."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a red house on a meadow"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a stone castle on a meadow"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "5": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": batch, "color": 0x5080C0}},
        "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 64, "height": 64}},
        "8": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 32, "height": 32}},
        "9": {"class_type": "MaskComposite", "inputs": {"destination": ["7", 0], "source": ["8", 0], "x": 16, "y": 16,
                                                         "operation": "add"}},
        "20": {"class_type": "PixelsITOSampler", "inputs": {
            "model": ["1", 0], "source_positive": ["2", 0], "source_negative": ["4", 0], "edit_positive": ["3", 0],
            "edit_negative": ["4", 0], "latent": ["6", 0], "mask": ["9", 0], "lam": 1.0, "t_u": 2, "k": 1, "lr": 0.1,
            "steps": steps, "cfg": 4.0, "scheduler": "normal", "seed": seed, "encode_ratio": 1.0,
            "inversion_cfg": 1.0, "inversion_refine": 0}},
        "21": {"class_type": "VAEDecode", "inputs": {"samples": ["20", 0], "vae": ["1", 2]}},
        "22": {"class_type": "SaveImage", "inputs": {"images": ["21", 0], "filename_prefix": "ito_host"}},
    }


def with_guidance(g: dict, seed: int, steps: int = 4) -> dict:
    g["30"] = {"class_type": "PixelsITOGuidanceImage", "inputs": {
        "model": ["1", 0], "edit_positive": ["3", 0], "edit_negative": ["4", 0], "latent": ["6", 0], "mask": ["9", 0],
        "t_u": 2, "k": 1, "lr": 0.1, "steps": steps, "cfg": 4.0, "scheduler": "normal", "encode_ratio": 1.0, "seed": seed}}
    g["20"]["inputs"].update(guidance=["30", 0], lam=0.6)
    return g


def error_text(comfy, g) -> str:
    with pytest.raises(AssertionError) as err:
        comfy.run(g)
    return str(err.value).split("--- server log tail ---")[0]


def test_ito_nodes_listed_with_tooltips(comfy):
    oi = comfy.object_info()
    for name in ITO_NODES:
        assert name in oi, f"{name} missing from /object_info"
        assert oi[name]["category"] == "PIXELS/ITO"
        for section in ("required", "optional"):
            for inp, spec in oi[name]["input"].get(section, {}).items():
                opts = spec[1] if len(spec) > 1 else {}
                assert opts.get("tooltip"), f"{name}.{inp} has no tooltip"


def test_three_stages_batch_of_two_and_resized_mask(comfy):
    g = with_guidance(graph(seed=21, batch=2), seed=21)
    g["40"] = {"class_type": "PixelsITOEditMask", "inputs": {
        "model": ["1", 0], "source_positive": ["2", 0], "source_negative": ["4", 0], "edit_positive": ["3", 0],
        "edit_negative": ["4", 0], "latent": ["6", 0], "mask_seeds": 2, "mask_strength": 0.5, "threshold": 0.1,
        "smoothing": 1.0, "cfg": 4.0, "seed": 21, "vae": ["1", 2]}}  # the mask's size is asked of the VAE
    g["41"] = {"class_type": "MaskToImage", "inputs": {"mask": ["40", 0]}}
    g["42"] = {"class_type": "SaveImage", "inputs": {"images": ["41", 0], "filename_prefix": "ito_host_mask"}}
    g["30"]["inputs"]["mask"] = ["40", 0]
    g["8"]["inputs"].update(width=40, height=40)
    g["7"]["inputs"].update(width=96, height=80)  # a mask of another size: resized to the latent, not an error
    out = comfy_client.output_images(comfy.run(g))
    assert len(out) == 4  # two edited images, two masks


def test_all_in_one(comfy):
    g = graph(seed=22)
    del g["20"], g["21"]
    g["20"] = {"class_type": "PixelsITOEdit", "inputs": {
        "model": ["1", 0], "source_positive": ["2", 0], "source_negative": ["4", 0], "edit_positive": ["3", 0],
        "edit_negative": ["4", 0], "vae": ["1", 2], "image": ["5", 0], "steps": 4, "cfg": 4.0, "scheduler": "normal",
        "seed": 22, "t_u": 2, "k": 1, "lr": 0.1, "mask_seeds": 2, "mask_strength": 0.5, "threshold": 0.1,
        "smoothing": 1.0}}
    g["22"]["inputs"]["images"] = ["20", 0]
    g["23"] = {"class_type": "MaskToImage", "inputs": {"mask": ["20", 2]}}
    g["24"] = {"class_type": "SaveImage", "inputs": {"images": ["23", 0], "filename_prefix": "ito_host_aio_mask"}}
    assert len(comfy_client.output_images(comfy.run(g))) == 2


def test_flow_model(comfy):
    g = with_guidance(graph(seed=23, steps=3, ckpt="sd3_medium_incl_clips.safetensors"), seed=23, steps=3)
    g["20"]["inputs"]["inversion_refine"] = 1
    assert comfy_client.output_images(comfy.run(g))


def test_lambda_below_one_without_guidance_is_a_clear_error(comfy):
    g = graph(seed=24)
    g["20"]["inputs"]["lam"] = 0.6
    msg = error_text(comfy, g)
    assert "needs a guidance image" in msg and "PixelsITOSampler" in msg, msg


def test_t_u_above_steps_is_a_clear_error(comfy):
    g = graph(seed=25)
    g["20"]["inputs"]["t_u"] = 10
    msg = error_text(comfy, g)
    assert "t_u (10)" in msg and "steps" in msg, msg


def test_lambda_outside_unit_interval_is_refused(comfy):
    g = graph(seed=26)
    g["20"]["inputs"]["lam"] = 1.5
    msg = error_text(comfy, g)
    assert "lam" in msg and "1.5" in msg, msg


def test_cancel_is_honoured(comfy):
    """A long ITO run (1000 inversion steps) interrupted after it starts ends as 'interrupted'."""
    g = graph(seed=27, steps=1000)
    g["20"]["inputs"]["t_u"] = 10
    text, seconds = comfy.interrupted_run(g, after=3.0, timeout=120)
    assert "interrupted" in text
    assert seconds < 100


def controlnet_graph(seed: int, strength: float) -> dict:
    """Layout edit through a (tiny, random) ControlNet: the source layout on the source branch, another on the edit
    branch, the same prompt on both, wired exactly as a user would with a pose or scribble ControlNet."""
    g = with_guidance(graph(seed=seed, steps=3), seed=seed, steps=3)
    g.update({
        "50": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "tiny_sd15_controlnet.safetensors"}},
        "51": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x000000}},
        "52": {"class_type": "MaskToImage", "inputs": {"mask": ["9", 0]}},
        "53": {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["2", 0], "negative": ["4", 0], "control_net": ["50", 0], "image": ["51", 0],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        "54": {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["2", 0], "negative": ["4", 0], "control_net": ["50", 0], "image": ["52", 0],
            "strength": strength, "start_percent": 0.0, "end_percent": 1.0}},
        "40": {"class_type": "PixelsITOEditMask", "inputs": {
            "model": ["1", 0], "source_positive": ["53", 0], "source_negative": ["53", 1], "edit_positive": ["54", 0],
            "edit_negative": ["54", 1], "latent": ["6", 0], "mask_seeds": 2, "mask_strength": 0.5, "threshold": 0.1,
            "smoothing": 1.0, "cfg": 4.0, "seed": seed}},
    })
    g["20"]["inputs"].update(source_positive=["53", 0], source_negative=["53", 1], edit_positive=["54", 0],
                             edit_negative=["54", 1], mask=["40", 0])
    g["30"]["inputs"].update(edit_positive=["54", 0], edit_negative=["54", 1], mask=["40", 0])
    return g


def test_controlnet_layout_edit(comfy):
    """ControlNet-applied conditioning just works in all three stages, and the edit layout changes the result."""
    from PIL import Image
    import io
    import numpy as np

    def run(strength):
        imgs = comfy_client.output_images(comfy.run(controlnet_graph(seed=28, strength=strength)))
        assert len(imgs) == 1
        return np.asarray(Image.open(io.BytesIO(comfy.download(imgs[0])))).astype(float)

    with_layout, weak_layout = run(1.0), run(0.25)
    assert np.abs(with_layout - weak_layout).mean() > 0.0
