"""SD2.x 768-v and SDXL UNet families in a real ComfyUI: family-specific facts the generic matrix
(``test_families.py``, specs ``families/sd2.py`` and ``families/sdxl.py``) does not check, plus OIG on both.

- Detection, in a ComfyUI subprocess through ComfyUI's own loader code: the tiny SD2 checkpoint is ComfyUI's ``SD20``
  (``BaseModel``, SD1.x latent format, 4 channels), EPS as loaded (the key ComfyUI reads v-prediction from is absent
  in a one-level UNet) and V_PREDICTION after ComfyUI's ``ModelSamplingDiscrete`` node; the tiny SDXL UNet matches no
  ComfyUI config (why ``PixelsTestSDXLLoader`` exists), and the loader gives ``model_base.SDXL`` with the
  ``supported_models.SDXL`` config, EPS, ``SDXL`` latent format (0.13025); ``encode_adm`` turns the pooled 1280 + the
  size keys into 2816 values and reads width/height; the VAEs give 8x latents of 4 channels; the real tiny networks
  run a sampling step with finite output.
- Through the server: the v-prediction node and the SDXL size keys change what the real networks produce (so both
  reach the model), and the OIG guider runs on SD2-v and SDXL with its backward pass and moves the latent compared
  with no guidance.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import torch

HERE = pathlib.Path(__file__).resolve().parent
SD2 = "v2-1_768-ema-pruned.safetensors"
SDXL_UNET = "sdxl_tiny_unet.safetensors"
SDXL_VAE = "sdxl_taesd_tiny.safetensors"
PROMPTS = {"src": "a photo of a cat sitting on a sofa", "tgt": "a photo of a dog sitting on a sofa", "neg": "blurry"}

DETECT = textwrap.dedent('''
    import json, sys
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import torch
    models, test_nodes = sys.argv[1], sys.argv[2]
    sys.path.insert(0, test_nodes)
    import comfy.latent_formats, comfy.model_detection, comfy.model_sampling, comfy.sample, comfy.sd, comfy.utils
    from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete
    import sdxl as test_sdxl
    out = {}

    def sampling(mp):
        ms, m = mp.get_model_object("model_sampling"), comfy.model_sampling
        return {"discrete": isinstance(ms, m.ModelSamplingDiscrete), "v": isinstance(ms, m.V_PREDICTION),
                "eps": isinstance(ms, m.EPS) and not isinstance(ms, m.V_PREDICTION), "flow": isinstance(ms, m.CONST)}

    def vae_info(vae):
        lat = vae.encode(torch.rand(1, 64, 64, 3))
        return {"channels": vae.latent_channels, "shape": list(lat.shape), "std": float(lat.std())}

    def one_step(mp, ctx, extra):
        lat = torch.zeros(1, 4, 8, 8)
        cond = [[ctx, extra]]
        y = comfy.sample.sample(mp, torch.randn(lat.shape, generator=torch.Generator().manual_seed(1)), 1, 4.0, "euler",
                                "normal", cond, cond, lat, denoise=1.0, seed=1)
        return bool(torch.isfinite(y).all()) and float(y.abs().mean()) > 0

    # SD2 768-v: CheckpointLoaderSimple's code path, then ComfyUI's ModelSamplingDiscrete node
    path = models + "/checkpoints/''' + SD2 + '''"
    mp, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(path, output_vae=True, output_clip=True)
    cfg = mp.model.model_config
    out["sd2"] = {"model": type(mp.model).__name__, "config": type(cfg).__name__,
                  "unet": {k: cfg.unet_config.get(k) for k in ("model_channels", "context_dim",
                                                              "use_linear_in_transformer", "adm_in_channels")},
                  "latent_format": type(mp.model.latent_format).__name__,
                  "scale": mp.model.latent_format.scale_factor, "channels": mp.model.latent_format.latent_channels,
                  "clip": clip is not None, "loaded": sampling(mp), "vae": vae_info(vae),
                  "v_key": any(k.endswith("output_blocks.11.1.transformer_blocks.0.norm1.bias")
                               for k in comfy.utils.load_torch_file(path))}
    (vmp,) = ModelSamplingDiscrete().patch(mp, "v_prediction", False)
    out["sd2"]["patched"] = sampling(vmp)
    out["sd2"]["original_untouched"] = sampling(mp)["eps"]
    out["sd2"]["step"] = one_step(vmp, torch.randn(1, 77, 1024), {})

    # SDXL: the UNet matches no ComfyUI config; the test loader builds ComfyUI's SDXL family around it
    upath = models + "/diffusion_models/''' + SDXL_UNET + '''"
    sd = comfy.utils.load_torch_file(upath)
    ucfg = comfy.model_detection.detect_unet_config(sd, "")
    out["sdxl_detected"] = comfy.model_detection.model_config_from_unet_config(ucfg, sd) is not None
    xmp = test_sdxl.load_sdxl_unet(upath)
    m = xmp.model
    pooled = torch.randn(1, 1280)
    adm = lambda **kw: m.encode_adm(pooled_output=pooled, **kw)
    out["sdxl"] = {"model": type(m).__name__, "model_module": type(m).__module__,
                   "config": type(m.model_config).__name__, "config_module": type(m.model_config).__module__,
                   "unet": {k: m.model_config.unet_config.get(k) for k in ("model_channels", "context_dim",
                                                                          "adm_in_channels")},
                   "latent_format": type(m.latent_format).__name__, "scale": m.latent_format.scale_factor,
                   "channels": m.latent_format.latent_channels, "loaded": sampling(xmp),
                   "adm_shape": list(adm(width=1024, height=1024).shape),
                   "adm_pooled_first": bool(torch.equal(adm(width=1024, height=1024)[:, :1280].float(), pooled)),
                   "adm_reads_size": float((adm(width=1024, height=1024) - adm(width=512, height=768)).abs().max()),
                   "vae": vae_info(comfy.sd.VAE(sd=comfy.utils.load_torch_file(models + "/vae/''' + SDXL_VAE + '''"))),
                   "step": one_step(xmp, torch.randn(1, 77, 2048), {"pooled_output": pooled, "width": 64,
                                                                    "height": 64})}
    try:
        test_sdxl.load_sdxl_unet(path)  # the SD2 checkpoint is no SDXL UNet
        out["sdxl_refuses_sd2"] = None
    except ValueError as e:
        out["sdxl_refuses_sd2"] = str(e)
    print("RESULT" + json.dumps(out))
''')


@pytest.fixture(scope="module")
def detected(models_dir):
    comfyui = os.environ["COMFYUI_PATH"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (comfyui, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", DETECT, str(models_dir), str(HERE / "test_nodes")], cwd=comfyui,
                          env=env, capture_output=True, text=True, timeout=600)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert proc.returncode == 0 and line, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(line[-1][len("RESULT"):])


def test_sd2_is_detected_as_sd20_and_becomes_v_prediction(detected):
    d = detected["sd2"]
    assert (d["model"], d["config"]) == ("BaseModel", "SD20")
    assert d["unet"] == {"model_channels": 320, "context_dim": 1024, "use_linear_in_transformer": True,
                         "adm_in_channels": None}
    assert (d["latent_format"], d["channels"]) == ("SD15", 4) and abs(d["scale"] - 0.18215) < 1e-9
    assert not d["clip"]  # no OpenCLIP-H in the tiny file: the specs use PixelsTestConditioning (1, 77, 1024)
    # ComfyUI reads v-prediction from a key of the 12th output block, which the one-level tiny UNet lacks
    assert not d["v_key"] and d["loaded"]["eps"] and d["loaded"]["discrete"]
    assert d["patched"]["v"] and d["patched"]["discrete"] and not d["patched"]["flow"]
    assert d["original_untouched"]  # the node patches a clone
    assert d["step"]


def test_sdxl_loader_builds_comfyuis_sdxl_family(detected):
    assert not detected["sdxl_detected"]  # ComfyUI's fixed SDXL config: a tiny SDXL is never detected
    d = detected["sdxl"]
    assert (d["model"], d["model_module"]) == ("SDXL", "comfy.model_base")
    assert (d["config"], d["config_module"]) == ("SDXL", "comfy.supported_models")
    assert d["unet"] == {"model_channels": 64, "context_dim": 2048, "adm_in_channels": 2816}
    assert (d["latent_format"], d["channels"]) == ("SDXL", 4) and abs(d["scale"] - 0.13025) < 1e-9
    assert d["loaded"]["eps"] and d["loaded"]["discrete"] and not d["loaded"]["flow"]
    assert d["adm_shape"] == [1, 2816] and d["adm_pooled_first"]  # pooled 1280 + 6 size embeddings of 256
    assert d["adm_reads_size"] > 0
    assert d["step"]
    assert "not an SDXL-layout UNet" in detected["sdxl_refuses_sd2"]


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_vaes_give_4_channel_8x_latents_of_real_scale(detected, family):
    v = detected[family]["vae"]
    assert v["channels"] == 4 and v["shape"] == [1, 4, 8, 8]
    assert 0.5 < v["std"] < 20  # a real SD VAE's unscaled latents are of order a few units


# ------------------------------------------------------------------------------------ through the server

def cond(text: str, dim: int, pooled: int = 0) -> dict:
    return {"class_type": "PixelsTestConditioning", "inputs": {"text": text, "tokens": 77, "dim": dim,
                                                               "pooled": pooled}}


def family_nodes(family: str, size: int = 1024) -> dict:
    """The specs' loaders and conditionings: model ["m", 0], VAE ``vae_ref``, conditionings ["src"/"tgt"/"neg", 0]."""
    if family == "sd2":
        g = {"100": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD2}},
             "m": {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["100", 0], "sampling": "v_prediction",
                                                                     "zsnr": False}}}
        for k in PROMPTS:
            g[k] = cond(PROMPTS[k], 1024)
        return g
    g = {"m": {"class_type": "PixelsTestSDXLLoader", "inputs": {"unet_name": SDXL_UNET}},
         "v": {"class_type": "VAELoader", "inputs": {"vae_name": SDXL_VAE}}}
    for k in PROMPTS:
        g["c" + k] = cond(PROMPTS[k], 2048, 1280)
        g[k] = {"class_type": "PixelsTestSDXLSize", "inputs": {
            "conditioning": ["c" + k, 0], "width": size, "height": size, "crop_w": 0, "crop_h": 0,
            "target_width": size, "target_height": size}}
    return g


def vae_ref(family: str) -> list:
    return ["100", 2] if family == "sd2" else ["v", 0]


def ksampler_graph(family: str, seed: int, size: int = 1024, model=("m", 0)) -> dict:
    """The real tiny network from a fixed empty latent: KSampler, 2 steps, saved by node "s"."""
    g = family_nodes(family, size)
    g["e"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    g["k"] = {"class_type": "KSampler", "inputs": {
        "model": list(model), "positive": ["src", 0], "negative": ["neg", 0], "latent_image": ["e", 0],
        "seed": seed, "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}}
    g["s"] = {"class_type": "SaveLatent", "inputs": {"samples": ["k", 0], "filename_prefix": f"unet_{family}"}}
    return g


def test_v_prediction_node_reaches_the_sd2_model(comfy):
    v = comfy.latent(comfy.run(ksampler_graph("sd2", seed=81)), "s")
    eps = comfy.latent(comfy.run(ksampler_graph("sd2", seed=81, model=("100", 0))), "s")
    assert v.shape == eps.shape == (1, 4, 8, 8) and torch.isfinite(v).all()
    assert (v - eps).abs().max() > 1e-3, "ModelSamplingDiscrete v_prediction changed nothing"


def test_sdxl_size_conditioning_reaches_the_model(comfy):
    big = comfy.latent(comfy.run(ksampler_graph("sdxl", seed=82, size=1024)), "s")
    small = comfy.latent(comfy.run(ksampler_graph("sdxl", seed=82, size=512)), "s")
    assert big.shape == (1, 4, 8, 8) and torch.isfinite(big).all()
    assert (big - small).abs().max() > 0, "width/height/target sizes did not reach model_base.SDXL.encode_adm"


def oig_graph(family: str, seed: int, clip_weight: float = 0.1, struct_weight: float = 1.0) -> dict:
    """OIG on the family's model and VAE with the random CLIP-L text + ViT-L/14 vision of ``models_oig.py`` (the
    guider's CLIP space; SD2 and SDXL users would pair ViT-H with CLIP-H or ViT-bigG with CLIP-G, too big here);
    source = the family's VAE encoding of a 64 px frame, inverted, 2 DDIM steps."""
    g = family_nodes(family)
    g["i"] = {"class_type": "PixelsTestFrames", "inputs": {"frames": 1, "width": 64, "height": 64, "seed": 1}}
    g["l"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["i", 0], "vae": vae_ref(family)}}
    g["clip"] = {"class_type": "CLIPLoader", "inputs": {"clip_name": "clip_l.safetensors", "type": "stable_diffusion"}}
    g["cv"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "clip-vit-large-patch14.safetensors"}}
    g["o"] = {"class_type": "PixelsOIGGuider", "inputs": {
        "model": ["m", 0], "source": ["src", 0], "target": ["tgt", 0], "clip": ["clip", 0], "clip_vision": ["cv", 0],
        "vae": vae_ref(family), "source_text": PROMPTS["src"], "target_text": PROMPTS["tgt"], "cfg": 5.0,
        "clip_weight": clip_weight, "struct_weight": struct_weight, "beta_p": 0.5, "beta_f": 2.5, "step_scale": 1.0,
        "clip_decode": "full resolution (paper)", "start": "invert the source latent (image edit)",
        "gradient": "negative branch (authors' code)"}}
    g["ks"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "ddim"}}
    g["sg"] = {"class_type": "BasicScheduler", "inputs": {"model": ["m", 0], "scheduler": "ddim_uniform", "steps": 2,
                                                          "denoise": 1.0}}
    g["n"] = {"class_type": "DisableNoise", "inputs": {}}
    g["r"] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["n", 0], "guider": ["o", 0],
                                                              "sampler": ["ks", 0], "sigmas": ["sg", 0],
                                                              "latent_image": ["l", 0]}}
    g["s"] = {"class_type": "SaveLatent", "inputs": {"samples": ["r", 0], "filename_prefix": f"unet_oig_{family}"}}
    g["seed"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}}  # varies the prompt: no cached result
    return g


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_oig_runs_with_backward_and_moves_the_latent(comfy, family):
    guided = comfy.latent(comfy.run(oig_graph(family, seed=91)), "s")
    plain = comfy.latent(comfy.run(oig_graph(family, seed=92, clip_weight=0.0, struct_weight=0.0)), "s")
    assert guided.shape == plain.shape == (1, 4, 8, 8)
    assert torch.isfinite(guided).all()
    assert (guided - plain).abs().max() > 0, "the OIG gradient step changed nothing"
    log = comfy.log()
    assert "Inference tensors cannot be saved for backward" not in log
    assert "element 0 of tensors does not require grad" not in log
