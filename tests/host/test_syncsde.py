"""sync-SDE nodes in a real ComfyUI (tiny models): exactness with identical prompts, clear errors, cancel.

The two example workflows (example_workflows/api/syncsde_*.json) run in test_workflows.py.
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
    Image.open(REPO / "example_workflows" / "inputs" / "pixels_source.png").convert("RGB").resize((64, 64)).save(path)
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


def test_error_latent_of_another_family(comfy, source_name):
    g = graph(source_name, seed=26)
    g["16"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}}
    g["7"]["inputs"]["vae"] = ["16", 2]  # a 4-channel SD1.5 latent into the 16-channel SD3 model
    del g["20"], g["21"]  # the round trip would fail first, in ComfyUI's own VAE Decode
    msg = run_error(comfy, g)
    assert "latent_image: it has 4 latent channels but this model works on 16-channel latents" in msg, msg


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
# A model that knows the answer (tests/host/test_nodes): the source prompt predicts the source latent, the target
# prompt the target latent (VAE Encode of the source flipped), at every noise level. CFG 1 / 1.
# ---------------------------------------------------------------------------------------------

SD15 = "v1-5-pruned-emaonly.safetensors"
MODELS = [pytest.param(SD15, id="sd15"), pytest.param(SD3, id="sd3")]
NOISE_MASK_ERROR = "latent noise_mask (Set Latent Noise Mask) contains NaN or infinite values"


def known_answer_graph(source_name, ckpt, edits=None, mask=None, steps=20, seed=1):
    """Nodes 1-9: checkpoint, source/target prompts, source latent (7) and target latent (9, the source flipped),
    the known-answer model (10), an optional noise mask on the source latent (12: PixelsTestMask ``mask`` + Set
    Latent Noise Mask). ``edits``: {node id: extra inputs of a PixelsSyncSDEEdit}, each saved by node ``<id>0``;
    the source and target latents are saved by nodes 17 and 19."""
    enc = lambda t: {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": t}}  # noqa: E731
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": enc(SRC), "3": enc(""), "4": enc(TGT),
        "6": {"class_type": "LoadImage", "inputs": {"image": source_name}},
        "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "ImageFlip", "inputs": {"image": ["6", 0], "flip_method": "y-axis: horizontally"}},
        "9": {"class_type": "VAEEncode", "inputs": {"pixels": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "PixelsTestKnownAnswer", "inputs": {"model": ["1", 0], "set_a": ["7", 0],
                                                                  "cond_a": ["2", 0], "set_b": ["9", 0],
                                                                  "cond_b": ["4", 0]}},
        "17": {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0], "filename_prefix": "syncsde_ka_src"}},
        "19": {"class_type": "SaveLatent", "inputs": {"samples": ["9", 0], "filename_prefix": "syncsde_ka_tgt"}},
    }
    if mask is not None:
        g["11"] = {"class_type": "PixelsTestMask", "inputs": {"value": mask, "width": 64, "height": 64}}
        g["12"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["7", 0], "mask": ["11", 0]}}
    for nid, extra in (edits or {}).items():
        inputs = {"model": ["10", 0], "source_positive": ["2", 0], "source_negative": ["3", 0],
                  "target_positive": ["4", 0], "target_negative": ["3", 0], "source_cfg": 1.0, "target_cfg": 1.0,
                  "latent": ["7", 0], "seed": seed, "steps": steps, "scheduler": "simple", "start_step": 4,
                  "start_sigma": 0.0, "resample": False}
        inputs.update(extra)
        g[nid] = {"class_type": "PixelsSyncSDEEdit", "inputs": inputs}
        g[nid + "0"] = {"class_type": "SaveLatent", "inputs": {"samples": [nid, 0],
                                                                "filename_prefix": f"syncsde_ka_{nid}"}}
    return g


@pytest.mark.parametrize("ckpt", MODELS)
def test_grey_noise_mask_gives_a_proportional_edit(comfy, source_name, ckpt):
    """A 0.5 noise mask keeps about half of the edit (the old rule kept a small, model-dependent part of it)."""
    g = known_answer_graph(source_name, ckpt, mask="0.5", seed=31,
                           edits={"13": {}, "14": {"latent": ["12", 0]}})
    out = comfy.run(g)
    src, tgt = comfy.latent(out, "17"), comfy.latent(out, "19")
    full, grey = comfy.latent(out, "130"), comfy.latent(out, "140")
    assert float((full - tgt).norm() / (tgt - src).norm()) < 0.01  # the known-answer model did edit, to the target
    frac = float((grey - src).abs().mean() / (full - src).abs().mean())
    print(f"{ckpt}: grey 0.5 mask keeps {frac:.4f} of the mean |edit|")
    assert 0.35 <= frac <= 0.65, frac


@pytest.mark.parametrize("ckpt", MODELS)
def test_nan_noise_mask_is_a_clear_error_all_in_one(comfy, source_name, ckpt):
    g = known_answer_graph(source_name, ckpt, mask="nan", seed=32, edits={"13": {"latent": ["12", 0]}})
    msg = run_error(comfy, g)
    assert NOISE_MASK_ERROR in msg, msg


@pytest.mark.parametrize("ckpt", MODELS)
def test_nan_noise_mask_is_a_clear_error_guider_sampler(comfy, source_name, ckpt):
    g = known_answer_graph(source_name, ckpt, mask="nan")
    g.update({
        "20": {"class_type": "PixelsSyncSDEGuider", "inputs": {
            "model": ["10", 0], "source_positive": ["2", 0], "source_negative": ["3", 0],
            "target_positive": ["4", 0], "target_negative": ["3", 0], "source_cfg": 1.0, "target_cfg": 1.0}},
        "21": {"class_type": "PixelsSyncSDESampler", "inputs": {"start_step": 4, "start_sigma": 0.0,
                                                                 "resample": False}},
        "22": {"class_type": "BasicScheduler", "inputs": {"model": ["10", 0], "scheduler": "simple", "steps": 12,
                                                           "denoise": 1.0}},
        "23": {"class_type": "RandomNoise", "inputs": {"noise_seed": 33}},
        "24": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["23", 0], "guider": ["20", 0], "sampler": ["21", 0], "sigmas": ["22", 0],
            "latent_image": ["12", 0]}},
        "25": {"class_type": "SaveLatent", "inputs": {"samples": ["24", 0], "filename_prefix": "syncsde_ka_nan"}},
    })
    msg = run_error(comfy, g)
    assert NOISE_MASK_ERROR in msg, msg


@pytest.mark.parametrize("ckpt,steps", [pytest.param(SD15, 20, id="sd15-20steps"),
                                        pytest.param(SD3, 10, id="sd3-10steps")])
def test_exponential_integrator_lands_on_the_known_answer(comfy, source_name, ckpt, steps):
    """Exponential: the output is the target latent up to the latent-format round trip; Euler (the authors') misses by
    its step error (measured: SD1.5 at 20 steps 7.0e-4 of the edit, SD3 at 10 steps 5.9e-4)."""
    g = known_answer_graph(source_name, ckpt, steps=steps, seed=34, edits={
        "13": {"integrator": "euler (authors)"}, "14": {"integrator": "exponential (exact linear part)"}})
    out = comfy.run(g)
    src, tgt = comfy.latent(out, "17"), comfy.latent(out, "19")
    rel = lambda x: float((x - tgt).norm() / (tgt - src).norm())  # noqa: E731
    euler, expo = rel(comfy.latent(out, "130")), rel(comfy.latent(out, "140"))
    print(f"{ckpt} {steps} steps: relative target error euler {euler:.3e}, exponential {expo:.3e}")
    # the floor is float32 rounding in the latent format: SD3 shifts latents by 0.0609, the tiny VAE's are ~1e-3
    # (measured: SD1.5 1.3e-7, SD3 1.3e-5)
    assert expo < 5e-5, expo
    assert euler > 10 * expo and euler > 5e-5, (euler, expo)


def test_integrator_input_is_optional_with_the_authors_default(comfy):
    info = comfy.object_info()
    for nid in ("PixelsSyncSDESampler", "PixelsSyncSDEEdit"):
        spec = info[nid]["input"]
        assert "integrator" not in spec["required"], nid
        options, opts = spec["optional"]["integrator"][0], spec["optional"]["integrator"][1]
        if isinstance(options, str):  # newer ComfyUIs: ("COMBO", {"options": [...]})
            options = opts["options"]
        assert options == ["euler (authors)", "exponential (exact linear part)"], options
        assert opts["default"] == "euler (authors)" and "beyond the paper" in opts["tooltip"]


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


def test_integrator_labels_map_to_core_names():
    N = _pack_module()
    assert N.integrator_name("euler (authors)") == "euler"
    assert N.integrator_name("exponential (exact linear part)") == "exponential"
    assert N.integrator_name("exponential") == "exponential"
    with pytest.raises(ValueError, match="integrator: unknown option 'rk4'"):
        N.make_sampler(integrator="rk4")
