"""Family facts of Qwen-Image, Wan 2.1 T2V and Wan 2.2 TI2V 5B in a real ComfyUI (the capabilities themselves run in
``test_families.py`` from the specs in ``families/qwen_image.py`` and ``families/wan.py``).

- Detection: ComfyUI's own loading code (``comfy.sd.load_diffusion_model``, ``comfy.sd.VAE``, and the two test-only
  loaders of ``test_nodes/qwen.py``), in a subprocess that imports ComfyUI, gives the family's classes: model class,
  model config, ``model_sampling`` kind and shift, latent format and channels, VAE channels and ratios; the stock
  loaders refuse the tiny files exactly where ComfyUI fixes a released width (why the test-only loaders exist).
- In the server: VAEEncode shapes (Qwen-Image's one image is a one-frame 5-D latent; Wan 2.2's 16x VAE), the test
  VAE loader agreeing bit for bit with ``VAELoader`` where the stock loader can load the file (0.8.0, Wan 2.1
  layout), Qwen-Image's usual graph (EmptySD3LatentImage, KSampler at true CFG) on the real tiny network, PIXELS
  maps given per image frame on Wan 2.2's 16x latent, the four ITO nodes on Qwen-Image's one-frame 5-D latent, and the
  all-in-one ITO edit refusing a video clip clearly.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

HERE = pathlib.Path(__file__).resolve().parent
COMFYUI = os.environ.get("COMFYUI_PATH")
PAPER = "white keeps source (paper)"

PROBE = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
import comfy.cli_args
comfy.cli_args.args.cpu = True
import comfy.model_sampling, comfy.sd, comfy.utils
from test_nodes.qwen import _qwen_unet, _wan_vae
root = sys.argv[1]


def model_facts(m):
    mm, ms = m.model, m.model.model_sampling
    return {"model": type(mm).__name__, "config": type(mm.model_config).__name__,
            "sampling": [c.__name__ for c in type(ms).__mro__[1:3]], "flow": isinstance(ms, comfy.model_sampling.CONST),
            "shift": float(getattr(ms, "shift", 0.0)), "latent_format": type(mm.latent_format).__name__,
            "latent_channels": mm.latent_format.latent_channels,
            "latent_dimensions": getattr(mm.latent_format, "latent_dimensions", 2),
            "heads": mm.model_config.unet_config.get("num_attention_heads", mm.model_config.unet_config.get("num_heads")),
            "unet": type(mm.diffusion_model).__name__}


def vae_facts(v):
    return {"channels": v.latent_channels, "space": v.spacial_compression_encode(),
            "time": v.temporal_compression_decode(), "module": type(v.first_stage_model).__module__}


def attempt(fn):
    try:
        return fn()
    except Exception as e:
        return {"error": str(e)[:300]}


out = {}
out["qwen"] = model_facts(_qwen_unet(root + "/diffusion_models/qwen_image_fp8_e4m3fn.safetensors"))
out["qwen_stock"] = attempt(lambda: model_facts(comfy.sd.load_diffusion_model(
    root + "/diffusion_models/qwen_image_fp8_e4m3fn.safetensors")))
for name, f in (("wan21", "wan2.1_t2v_tiny"), ("wan22", "wan2.2_ti2v_5B_fp16")):
    out[name] = model_facts(comfy.sd.load_diffusion_model(root + f"/diffusion_models/{f}.safetensors"))
for name, f in (("qwen_vae", "qwen_image_vae"), ("wan21_vae", "wan2.1_vae_tiny"), ("wan22_vae", "wan2.2_vae")):
    out[name] = vae_facts(_wan_vae(root + f"/vae/{f}.safetensors"))
    out[name + "_stock"] = attempt(lambda: vae_facts(comfy.sd.VAE(sd=comfy.utils.load_torch_file(
        root + f"/vae/{f}.safetensors"))))
print("FACTS " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def facts(models_dir):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (COMFYUI, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", PROBE, str(models_dir), str(HERE)], cwd=COMFYUI, env=env,
                          capture_output=True, text=True, timeout=900)
    line = [s for s in proc.stdout.splitlines() if s.startswith("FACTS ")]
    assert proc.returncode == 0 and line, f"the detection probe failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(line[0][len("FACTS "):])


def is_0364() -> bool:
    return "Comfy-Org" in (COMFYUI or "")


def test_qwen_image_is_detected_as_qwen_image(facts):
    q = facts["qwen"]
    assert (q["model"], q["config"], q["unet"]) == ("QwenImage", "QwenImage", "QwenImageTransformer2DModel")
    assert q["flow"] and q["sampling"][0] == "ModelSamplingFlux" and q["shift"] == pytest.approx(1.15)
    assert (q["latent_format"], q["latent_channels"]) == ("Wan21", 16)
    assert q["heads"] == 1
    # the stock loader keeps the released 24 heads of 128 and cannot take the one-head file
    assert "size mismatch" in facts["qwen_stock"].get("error", ""), facts["qwen_stock"]


@pytest.mark.parametrize("name,config,fmt,channels", [("wan21", "WAN21_T2V", "Wan21", 16),
                                                      ("wan22", "WAN22_T2V", "Wan22", 48)])
def test_wan_is_detected_by_the_stock_loader(facts, name, config, fmt, channels):
    w = facts[name]
    assert (w["config"], w["unet"], w["latent_format"], w["latent_channels"]) == (config, "WanModel", fmt, channels)
    assert w["model"] == ("WAN21" if name == "wan21" else "WAN22")
    assert w["flow"] and w["sampling"][0] == "ModelSamplingDiscreteFlow" and w["shift"] == pytest.approx(8.0)
    assert w["latent_dimensions"] == 3 and w["heads"] == 1


def test_vaes_and_where_the_stock_loader_takes_them(facts):
    for name in ("qwen_vae", "wan21_vae"):
        v = facts[name]
        assert (v["channels"], v["space"], v["time"], v["module"]) == (16, 8, 4, "comfy.ldm.wan.vae"), v
        stock = facts[name + "_stock"]
        if is_0364():  # 0.3.64 fixes the Wan 2.1 width at 96
            assert "size mismatch" in stock.get("error", ""), stock
        else:  # 0.8.0 reads it from the weights
            assert stock == v
    v = facts["wan22_vae"]
    assert (v["channels"], v["space"], v["time"], v["module"]) == (48, 16, 4, "comfy.ldm.wan.vae2_2"), v
    # both versions fix the Wan 2.2 VAE at the released widths (160 / 256)
    assert "size mismatch" in facts["wan22_vae_stock"].get("error", ""), facts["wan22_vae_stock"]


# ----------------------------------------------------------------------------------------------- in the server

def encode_graph(vae_node: dict, frames: int, size: int = 64) -> dict:
    return {"1": vae_node,
            "2": {"class_type": "PixelsTestFrames", "inputs": {"frames": frames, "width": size, "height": size, "seed": 1}},
            "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 0]}},
            "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "qw_enc"}}}


def test_loader_agrees_with_vaeloader_where_both_load(comfy):
    test = comfy.latent(comfy.run(encode_graph(
        {"class_type": "PixelsTestWanVAELoader", "inputs": {"vae_name": "qwen_image_vae.safetensors"}}, 1)), "4")
    assert test.shape == (1, 16, 1, 8, 8)  # one image: a clip of one frame
    if is_0364():
        pytest.skip("ComfyUI 0.3.64's VAELoader fixes the Wan 2.1 VAE width at 96: nothing to compare with")
    stock = comfy.latent(comfy.run(encode_graph(
        {"class_type": "VAELoader", "inputs": {"vae_name": "qwen_image_vae.safetensors"}}, 1)), "4")
    assert torch.equal(test, stock)


@pytest.mark.parametrize("frames,shape", [(5, (1, 48, 2, 4, 4)), (1, (1, 48, 1, 4, 4)), (9, (1, 48, 3, 4, 4))])
def test_wan22_vae_is_16x_in_space_and_4x_in_time(comfy, frames, shape):
    lat = comfy.latent(comfy.run(encode_graph(
        {"class_type": "PixelsTestWanVAELoader", "inputs": {"vae_name": "wan2.2_vae.safetensors"}}, frames)), "4")
    assert lat.shape == shape and torch.isfinite(lat).all()


def test_qwen_image_usual_graph_runs_the_real_network(comfy):
    """EmptySD3LatentImage (4-D) and KSampler at true CFG 2.5, the way ComfyUI's Qwen-Image template runs: the tiny
    network samples a one-frame 5-D latent, and VAE Decode gives one image."""
    g = {"1": {"class_type": "PixelsTestQwenImageLoader", "inputs": {"unet_name": "qwen_image_fp8_e4m3fn.safetensors"}},
         "2": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["1", 0], "shift": 3.1}},
         "3": {"class_type": "PixelsTestConditioning", "inputs": {"text": "a cat", "tokens": 12, "dim": 3584}},
         "4": {"class_type": "PixelsTestConditioning", "inputs": {"text": "", "tokens": 12, "dim": 3584}},
         "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
         "6": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "positive": ["3", 0], "negative": ["4", 0],
                                                    "latent_image": ["5", 0], "seed": 1, "steps": 2, "cfg": 2.5,
                                                    "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
         "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "qw_t2i"}},
         "8": {"class_type": "PixelsTestWanVAELoader", "inputs": {"vae_name": "qwen_image_vae.safetensors"}},
         "9": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["8", 0]}},
         "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "qw_t2i"}}}
    import comfy_client
    out = comfy.run(g)
    lat = comfy.latent(out, "7")
    assert lat.shape == (1, 16, 1, 8, 8) and torch.isfinite(lat).all()
    assert len(comfy_client.output_images(out)) == 1


def wan22_pixels_graph(seed: int) -> dict:
    """Wan 2.2 (16x VAE): clips of 5 frames at 64 px -> 2 latent frames of 4x4 cells; 5 maps, one per image frame:
    frame 0 white on the left half and black on the right, frames 1..4 all white (latent frame 1 is the mean of image
    frames 1..4, so it is kept whole). The known answer is the exemplar clip's latent."""
    vae = ["2", 0]
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.2_ti2v_5B_fp16.safetensors",
                                                     "weight_dtype": "default"}},
        "2": {"class_type": "PixelsTestWanVAELoader", "inputs": {"vae_name": "wan2.2_vae.safetensors"}},
        "3": {"class_type": "PixelsTestConditioning", "inputs": {"text": "a beach", "tokens": 512, "dim": 4096}},
        "4": {"class_type": "PixelsTestConditioning", "inputs": {"text": "", "tokens": 512, "dim": 4096}},
        "5": {"class_type": "PixelsTestFrames", "inputs": {"frames": 5, "width": 64, "height": 64, "seed": 1}},
        "6": {"class_type": "PixelsTestFrames", "inputs": {"frames": 5, "width": 64, "height": 64, "seed": 2}},
        "7": {"class_type": "PixelsTestMask", "inputs": {"value": "1.0", "width": 64, "height": 64,
                                                        "right_value": "0.0", "right_fraction": 0.5}},
        "40": {"class_type": "PixelsTestMask", "inputs": {"value": "1.0", "width": 64, "height": 64, "batch": 4}},
        "41": {"class_type": "PixelsTestMaskBatch", "inputs": {"a": ["7", 0], "b": ["40", 0]}},
        "8": {"class_type": "PixelsExemplar", "inputs": {"exemplar": ["6", 0], "edit_map": ["41", 0],
                                                        "map_polarity": PAPER}},
        "10": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": vae}},
        "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["6", 0], "vae": vae}},
        "13": {"class_type": "PixelsTestKnownAnswer", "inputs": {"model": ["1", 0], "set_a": ["11", 0]}},
        "20": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "21": {"class_type": "PixelsProgressiveSampler", "inputs": {"sampler": ["20", 0], "exemplars": ["8", 0],
                                                                    "vae": vae, "curve": "linear", "gamma": 1.0}},
        "23": {"class_type": "BasicScheduler", "inputs": {"model": ["13", 0], "scheduler": "simple", "steps": 6,
                                                          "denoise": 0.6}},
        "24": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "25": {"class_type": "CFGGuider", "inputs": {"model": ["13", 0], "positive": ["3", 0], "negative": ["4", 0],
                                                     "cfg": 5.0}},
        "26": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["24", 0], "guider": ["25", 0],
                                                               "sampler": ["21", 0], "sigmas": ["23", 0],
                                                               "latent_image": ["10", 0]}},
        "30": {"class_type": "SaveLatent", "inputs": {"samples": ["26", 0], "filename_prefix": "qw_w22_edit"}},
        "31": {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "qw_w22_src"}},
        "32": {"class_type": "SaveLatent", "inputs": {"samples": ["11", 0], "filename_prefix": "qw_w22_ex"}},
    }


def test_wan22_maps_per_image_frame_on_the_16x_latent(comfy):
    out = comfy.run(wan22_pixels_graph(seed=80))
    edit, src, ex = comfy.latent(out, "30"), comfy.latent(out, "31"), comfy.latent(out, "32")
    assert edit.shape == src.shape == (1, 48, 2, 4, 4)
    gap = float((ex - src).abs().max())
    assert (ex - src)[:, :, 0, :, 3].abs().mean() > 0.05 * gap
    # latent frame 0: the 64 px map at 4 cells (16 px each): column 0 kept, column 3 the exemplar
    assert (edit[:, :, 0, :, 0] - src[:, :, 0, :, 0]).abs().max() <= 1e-6
    assert torch.allclose(edit[:, :, 0, :, 3], ex[:, :, 0, :, 3], rtol=0, atol=1e-3 * gap)
    # latent frame 1 (image frames 1..4, all white): kept whole
    assert (edit[:, :, 1] - src[:, :, 1]).abs().max() <= 1e-6


def qwen_ito_graph(seed: int) -> dict:
    """All four ITO nodes on Qwen-Image's one-frame 5-D latent with the real tiny network: the edit mask estimate,
    a guidance image, the optimising sampler with that guidance (lambda 0.6), and the all-in-one edit."""
    cond = lambda text: {"class_type": "PixelsTestConditioning",  # noqa: E731
                         "inputs": {"text": text, "tokens": 12, "dim": 3584}}
    common = lambda: {"model": ["2", 0], "source_positive": ["3", 0], "source_negative": ["5", 0],  # noqa: E731
                      "edit_positive": ["4", 0], "edit_negative": ["5", 0]}
    return {
        "1": {"class_type": "PixelsTestQwenImageLoader", "inputs": {"unet_name": "qwen_image_fp8_e4m3fn.safetensors"}},
        "2": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["1", 0], "shift": 3.1}},
        "3": cond("a red house"), "4": cond("a stone castle"), "5": cond(""),
        "6": {"class_type": "PixelsTestWanVAELoader", "inputs": {"vae_name": "qwen_image_vae.safetensors"}},
        "7": {"class_type": "PixelsTestFrames", "inputs": {"frames": 1, "width": 64, "height": 64, "seed": 1}},
        "8": {"class_type": "VAEEncode", "inputs": {"pixels": ["7", 0], "vae": ["6", 0]}},
        "40": {"class_type": "PixelsITOEditMask", "inputs": {
            **common(), "latent": ["8", 0], "mask_seeds": 2, "mask_strength": 0.5, "threshold": 0.1,
            "smoothing": 1.0, "cfg": 2.5, "seed": seed, "vae": ["6", 0]}},
        "30": {"class_type": "PixelsITOGuidanceImage", "inputs": {
            "model": ["2", 0], "edit_positive": ["4", 0], "edit_negative": ["5", 0], "latent": ["8", 0],
            "mask": ["40", 0], "t_u": 2, "k": 1, "lr": 0.1, "steps": 4, "cfg": 2.5, "scheduler": "normal",
            "encode_ratio": 1.0, "seed": seed}},
        "20": {"class_type": "PixelsITOSampler", "inputs": {
            **common(), "latent": ["8", 0], "guidance": ["30", 0], "mask": ["40", 0], "lam": 0.6, "t_u": 2, "k": 1,
            "lr": 0.1, "steps": 4, "cfg": 2.5, "scheduler": "normal", "seed": seed, "encode_ratio": 1.0,
            "inversion_cfg": 1.0, "inversion_refine": 0}},
        "50": {"class_type": "PixelsITOEdit", "inputs": {
            **common(), "vae": ["6", 0], "image": ["7", 0], "steps": 4, "cfg": 2.5, "scheduler": "normal",
            "seed": seed, "t_u": 2, "k": 1, "lr": 0.1, "mask_seeds": 2, "mask_strength": 0.5, "threshold": 0.1,
            "smoothing": 1.0}},
        "21": {"class_type": "SaveLatent", "inputs": {"samples": ["20", 0], "filename_prefix": "qw_ito"}},
        "31": {"class_type": "SaveLatent", "inputs": {"samples": ["30", 0], "filename_prefix": "qw_ito_guide"}},
        "51": {"class_type": "SaveLatent", "inputs": {"samples": ["50", 1], "filename_prefix": "qw_ito_aio"}},
        "52": {"class_type": "SaveImage", "inputs": {"images": ["50", 0], "filename_prefix": "qw_ito_aio"}},
        "41": {"class_type": "MaskToImage", "inputs": {"mask": ["40", 0]}},
        "42": {"class_type": "SaveImage", "inputs": {"images": ["41", 0], "filename_prefix": "qw_ito_mask"}},
    }


def test_qwen_image_ito_nodes_take_its_one_frame_latent(comfy):
    """ITO's maths is on image latents; Qwen-Image's VAE gives an image as a clip of one frame (1, 16, 1, 8, 8). The
    four ITO nodes take it, the model gets its own shape, and the latents come back in that shape."""
    import comfy_client
    out = comfy.run(qwen_ito_graph(seed=90))
    for nid in ("21", "31", "51"):
        lat = comfy.latent(out, nid)
        assert lat.shape == (1, 16, 1, 8, 8) and torch.isfinite(lat).all(), (nid, tuple(lat.shape))
    images = comfy_client.output_images(out)
    assert len(images) == 2  # the all-in-one edit's one image and the estimated mask
    import io

    from PIL import Image
    for img in images:  # both at the source's 64 x 64 px (the mask's size asked of the VAE: 8x)
        assert Image.open(io.BytesIO(comfy.download(img))).size == (64, 64)


def test_ito_edit_refuses_a_clip_clearly(comfy):
    """The all-in-one ITO edit encodes its IMAGE input itself: a Wan clip of 5 frames (2 latent frames) is refused
    with the same message as a clip latent given to the other ITO nodes."""
    g = qwen_ito_graph(seed=91)
    for k in ("20", "21", "30", "31", "40", "41", "42"):
        del g[k]
    g["1"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "wan2.1_t2v_tiny.safetensors", "weight_dtype": "default"}}
    g["2"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": 8.0}}
    g["6"]["inputs"]["vae_name"] = "wan2.1_vae_tiny.safetensors"
    g["7"]["inputs"]["frames"] = 5
    for k in ("3", "4", "5"):
        g[k]["inputs"].update(tokens=512, dim=4096)
    with pytest.raises(AssertionError) as err:
        comfy.run(g)
    msg = str(err.value).split("--- server log tail ---")[0]
    assert "vae (the image it encodes): ITO works on image latents (B, C, H, W)" in msg, msg
    assert "got shape (1, 16, 2, 8, 8)" in msg, msg
