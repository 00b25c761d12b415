"""sync-SDE nodes in a real ComfyUI (tiny models): exactness with identical prompts, clear errors, cancel.

The two example workflows (workflows/api/syncsde_*.json) run in test_workflows.py.
"""
import importlib.util
import io
import os
import pathlib
import sys
import time

import numpy as np
import pytest
from PIL import Image

import comfy_client

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
SD3 = "sd3_medium_incl_clips.safetensors"
SRC = "a red house on a green meadow"
TGT = "a red house on a snowy meadow"


@pytest.fixture(scope="module")
def source_name(comfy, tmp_path_factory):
    path = tmp_path_factory.mktemp("syncsde") / "syncsde_src64.png"
    Image.open(REPO / "workflows" / "inputs" / "pixels_source.png").convert("RGB").resize((64, 64)).save(path)
    return comfy.upload(path)


def graph(source_name, src=SRC, tgt=TGT, sampler=None, sigmas=None, guider=None, latent=None, seed=1, steps=28):
    """SD3 sync-SDE edit through SamplerCustomAdvanced, plus the plain VAE round trip of the source (node 21)."""
    enc = lambda t: {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": t}}  # noqa: E731
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD3}},
        "2": enc(src), "3": enc(""), "4": enc(tgt), "5": enc(""),
        "6": {"class_type": "LoadImage", "inputs": {"image": source_name}},
        "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["6", 0], "vae": ["1", 2]}},
        "8": guider or {"class_type": "PixelsSyncSDEGuider", "inputs": {
            "model": ["1", 0], "source_positive": ["2", 0], "source_negative": ["3", 0], "target_positive": ["4", 0],
            "target_negative": ["5", 0], "source_cfg": 2.0, "target_cfg": 2.0}},
        "9": sampler or {"class_type": "PixelsSyncSDESampler", "inputs": {"start_step": 4, "start_sigma": 0.0,
                                                                         "resample": False}},
        "10": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": steps,
                                                           "denoise": 1.0}},
        "11": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "12": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["11", 0], "guider": ["8", 0], "sampler": ["9", 0], "sigmas": sigmas or ["10", 0],
            "latent_image": latent or ["7", 0]}},
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["1", 2]}},
        "14": {"class_type": "SaveImage", "inputs": {"filename_prefix": "syncsde_test_edit", "images": ["13", 0]}},
        "20": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "21": {"class_type": "SaveImage", "inputs": {"filename_prefix": "syncsde_test_recon", "images": ["20", 0]}},
    }
    return g


def images(comfy, outputs, node):
    return [np.asarray(Image.open(io.BytesIO(comfy.download(im)))).astype(int) for im in outputs[node]["images"]]


def test_identical_prompts_return_the_source(comfy, source_name):
    out = comfy.run(graph(source_name, tgt=SRC, seed=11))
    edit, recon = images(comfy, out, "14")[0], images(comfy, out, "21")[0]
    assert np.abs(edit - recon).max() <= 1  # latent equal up to the latent-format round trip


def test_all_in_one_identical_prompts_return_the_source(comfy, source_name):
    g = graph(source_name, tgt=SRC)
    g["12"] = {"class_type": "PixelsSyncSDEEdit", "inputs": {
        "model": ["1", 0], "source_positive": ["2", 0], "source_negative": ["3", 0], "target_positive": ["4", 0],
        "target_negative": ["5", 0], "source_cfg": 1.0, "target_cfg": 1.0, "latent": ["7", 0], "seed": 13,
        "steps": 12, "scheduler": "simple", "start_step": 4, "start_sigma": 0.0, "resample": True}}
    out = comfy.run(g)
    assert np.abs(images(comfy, out, "14")[0] - images(comfy, out, "21")[0]).max() <= 1


def run_error(comfy, prompt) -> str:
    with pytest.raises(AssertionError) as e:
        comfy.run(prompt)
    return str(e.value).split("--- server log tail ---")[0]


def test_error_start_beyond_schedule(comfy, source_name):
    msg = run_error(comfy, graph(source_name, seed=21, sampler={"class_type": "PixelsSyncSDESampler", "inputs": {
        "start_step": 28, "start_sigma": 0.0, "resample": False}}))
    assert "start_step 28 is beyond the schedule of 28 steps" in msg, msg


def test_error_schedule_not_ending_at_zero(comfy, source_name):
    g = graph(source_name, seed=22, sigmas=["15", 0])
    g["15"] = {"class_type": "SplitSigmas", "inputs": {"sigmas": ["10", 0], "step": 20}}
    msg = run_error(comfy, g)
    assert "not 0" in msg and "full schedule" in msg, msg


def test_error_plain_guider(comfy, source_name):
    g = graph(source_name, seed=23, guider={"class_type": "CFGGuider", "inputs": {
        "model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0], "cfg": 2.0}})
    assert "needs the PIXELS Sync-SDE Guider" in run_error(comfy, g)


def test_error_empty_latent(comfy, source_name):
    g = graph(source_name, seed=24, latent=["16", 0])
    g["16"] = {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    assert "source latent is empty" in run_error(comfy, g)


def test_cancel_is_honoured(comfy, source_name):
    g = graph(source_name, seed=25, steps=900)
    pid = comfy.queue(g)
    time.sleep(8)
    comfy.interrupt()
    t = time.monotonic()
    with pytest.raises(comfy_client.WorkflowError, match="interrupted"):
        comfy.wait(pid, timeout=120)
    assert time.monotonic() - t < 60


# ---------------------------------------------------------------------------------------------
# In-process: the guider's batch check (no model needed; ComfyUI importable from COMFYUI_PATH)
# ---------------------------------------------------------------------------------------------

def _pack_module():
    comfy_path = os.environ["COMFYUI_PATH"]
    if comfy_path not in sys.path:
        sys.path.insert(0, comfy_path)
    from comfy.cli_args import args
    args.cpu = True
    name = "pixels_pack_syncsde_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return importlib.import_module(f"{name}.nodes.syncsde")


def test_error_conditioning_batch_mismatch():
    import torch
    N = _pack_module()

    class Patcher:
        model_options = {}

    one, three = [[torch.zeros(1, 77, 8), {}]], [[torch.zeros(3, 77, 8), {}]]
    guider = N.make_guider(Patcher(), one, one, three, one, 1.0, 1.0)
    lat = torch.ones(2, 4, 8, 8)
    with pytest.raises(ValueError, match="target_positive has batch 3 but the latent has batch 2"):
        guider.sample(torch.zeros_like(lat), lat, N.make_sampler(), torch.linspace(1, 0, 29))
