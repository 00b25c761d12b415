"""Flux.1 dev, Z-Image turbo and Flux.2 dev in a real ComfyUI: the family facts behind ``families/flux1.py``,
``families/zimage.py`` and ``families/flux2.py`` (the capabilities themselves run in ``test_families.py``).

What is asserted, per family: ComfyUI loads the tiny files of ``models_flux.py`` as that family (model class,
``supported_models`` config, ``model_sampling``, shift, latent format and channels, the widths the text conditioning
must have, guidance-distilled or not), the VAE's channels and ratio, and that a 64 px image encodes to the latent the
family's own empty-latent node makes (Flux.2: ``EmptyFlux2LatentImage``, (1, 128, 4, 4) at 16x). Then what depends
on the 16x ratio: the all-in-one PIXELS edit keeps white cells bit for bit and its image comes back at 64 px, and the
ITO edit mask comes out at the image's size, with or without the VAE connected (without it the ratio is read off the
model's latent format). Z-Image and Flux.2 skip on ComfyUI 0.3.64, which has neither.
"""
import importlib.util
import io
import json
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent


def _spec(name):
    spec = importlib.util.spec_from_file_location(f"pixels_family_{name}", HERE / "families" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.FAMILIES[0]


FAMS = {name: _spec(name) for name in ("flux1", "zimage", "flux2")}
PROMPTS = {"src": "a red house on a green meadow", "tgt": "a red house on a snowy meadow", "neg": "blurry"}

# what ComfyUI must detect: model_base class, supported_models config, model_sampling class, shift, latent format,
# latent channels, VAE ratio, and the unet_config entries the stand-in conditioning's shapes rest on
EXPECT = {
    "flux1": dict(model="Flux", config="Flux", sampling="ModelSamplingFlux", shift=1.15, latent_format="Flux",
                  channels=16, ratio=8, vae="TAESD", empty="EmptySD3LatentImage",
                  unet={"image_model": "flux", "context_in_dim": 4096, "vec_in_dim": 768, "guidance_embed": True,
                        "hidden_size": 128, "num_heads": 1, "axes_dim": [16, 56, 56], "patch_size": 2}),
    "zimage": dict(model="Lumina2", config="ZImage", sampling="ModelSamplingDiscreteFlow", shift=3.0,
                   latent_format="Flux", channels=16, ratio=8, vae="TAESD", empty="EmptySD3LatentImage",
                   unet={"image_model": "lumina2", "cap_feat_dim": 2560, "dim": 256, "n_heads": 2,
                         "z_image_modulation": True, "axes_dims": [32, 48, 48], "rope_theta": 256.0}),
    "flux2": dict(model="Flux2", config="Flux2", sampling="ModelSamplingFlux", shift=2.02, latent_format="Flux2",
                  channels=128, ratio=16, vae="AutoencoderKL", empty="EmptyFlux2LatentImage",
                  unet={"image_model": "flux2", "context_in_dim": 15360, "vec_in_dim": None, "guidance_embed": True,
                        "hidden_size": 128, "num_heads": 1, "axes_dim": [32, 32, 32, 32], "patch_size": 1,
                        "in_channels": 128}),
}


@pytest.fixture(params=list(FAMS))
def fam(request, comfy):
    f = FAMS[request.param]
    reason = f["skip"](comfy.object_info())
    if reason:
        pytest.skip(f"{f['title']}: {reason}")
    return f


def frames(seed):
    return {"class_type": "PixelsTestFrames", "inputs": {"frames": 1, "width": 64, "height": 64, "seed": seed}}


def report(comfy, outputs, node):
    return json.loads(outputs[node]["text"][0])


def test_detected_as_the_family(comfy, fam):
    want = EXPECT[fam["id"]]
    g = dict(fam["nodes"](PROMPTS))
    g["1"] = {"class_type": "PixelsTestModelReport", "inputs": {"model": fam["model"], "vae": fam["vae"]}}
    g["2"] = frames(1)
    g["3"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": fam["vae"]}}
    g["4"] = {"class_type": want["empty"], "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    g["5"] = {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": f"flux_fam_{fam['id']}"}}
    g["6"] = {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": f"flux_empty_{fam['id']}"}}
    out = comfy.run(g)
    info = report(comfy, out, "1")
    assert info["model"] == want["model"] and info["config"] == want["config"], info
    assert want["sampling"] in info["model_sampling"] and "CONST" in info["model_sampling"], info["model_sampling"]
    assert info["shift"] == pytest.approx(want["shift"]) and info["sigma_max"] == pytest.approx(1.0)
    assert info["latent_format"] == want["latent_format"] and info["latent_channels"] == want["channels"]
    for k, v in want["unet"].items():
        assert info["unet_config"].get(k) == v, f"unet_config[{k!r}] = {info['unet_config'].get(k)!r}, want {v!r}"
    vae = info["vae"]
    assert vae["first_stage_model"] == want["vae"], vae
    assert vae["latent_channels"] == want["channels"] and vae["spacial_compression"] == want["ratio"], vae
    lat, empty = comfy.latent(out, "5"), comfy.latent(out, "6")
    assert lat.shape == tuple(fam["latent"]) == empty.shape, (lat.shape, empty.shape)
    assert torch.isfinite(lat).all() and lat.std() > 0.1  # of the order of a real VAE's latents


def all_in_one(fam, seed):
    """PIXELS Progressive Edit (image in, image and latent out), a known-answer model that predicts the exemplar's
    latent, a map white on the left half and black on the right; the source's and exemplar's VAEEncode saved."""
    g = dict(fam["nodes"](PROMPTS))
    g.update({
        "1": frames(1), "2": frames(2),
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": fam["vae"]}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": fam["vae"]}},
        "5": {"class_type": "PixelsTestMask", "inputs": {"value": "1.0", "width": 64, "height": 64,
                                                        "right_value": "0.0", "right_fraction": 0.5}},
        "6": {"class_type": "PixelsExemplar", "inputs": {"exemplar": ["2", 0], "edit_map": ["5", 0],
                                                        "map_polarity": "white keeps source (paper)"}},
        "7": {"class_type": "PixelsTestKnownAnswer", "inputs": {"model": fam["model"], "set_a": ["4", 0]}},
        "8": {"class_type": "PixelsProgressiveEdit", "inputs": {
            "model": ["7", 0], "positive": fam["cond"]["src"], "negative": fam["cond"]["neg"], "vae": fam["vae"],
            "source": ["1", 0], "exemplars": ["6", 0], "seed": seed, "steps": 6, "cfg": fam["cfg"],
            "sampler_name": "euler", "scheduler": "simple", "denoise": 0.6, "curve": "linear", "gamma": 1.0}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["8", 1], "filename_prefix": f"flux_all_{fam['id']}"}},
        "10": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": f"flux_src_{fam['id']}"}},
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": f"flux_ex_{fam['id']}"}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": f"flux_all_{fam['id']}"}},
    })
    return g


def test_all_in_one_edit_at_the_family_ratio(comfy, fam):
    """The 64 px map resizes to the family's latent grid (8x8, or 4x4 for Flux.2): the left cells (clear of the
    grey edge) are the source latent bit for bit, the right ones the exemplar; the image comes back at 64 px."""
    out = comfy.run(all_in_one(fam, seed=8101))
    edit, src, ex = comfy.latent(out, "9"), comfy.latent(out, "10"), comfy.latent(out, "11")
    w = src.shape[-1]
    keep, black = slice(0, w // 2 - 1), slice(w // 2 + 1, w)
    assert edit.shape == src.shape == tuple(fam["latent"])
    assert torch.equal(edit[..., keep], src[..., keep])
    gap = (ex - src)[..., black].abs().max()
    assert gap > 0 and (edit[..., black] - ex[..., black]).abs().max() <= 1e-3 * gap
    (img,) = out["12"]["images"]
    assert Image.open(io.BytesIO(comfy.download(img))).size == (64, 64)


@pytest.mark.parametrize("with_vae", [True, False], ids=["vae", "no-vae"])
def test_ito_edit_mask_at_the_image_size(comfy, fam, with_vae):
    """ITO's edit mask (prompts with known, different answers on the right half) comes out at 64 px: asked of the VAE,
    or without it read off the model's latent format (16 px per cell for Flux.2)."""
    g = dict(fam["nodes"](PROMPTS))
    g.update({
        "1": frames(1), "2": frames(2),
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": fam["vae"]}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": fam["vae"]}},
        "5": {"class_type": "PixelsTestLatentSplice", "inputs": {"a": ["3", 0], "b": ["4", 0], "fraction": 0.5}},
        "7": {"class_type": "PixelsTestKnownAnswer", "inputs": {"model": fam["model"], "set_a": ["3", 0],
                                                               "cond_a": fam["cond"]["src"], "set_b": ["5", 0],
                                                               "cond_b": fam["cond"]["tgt"]}},
        "8": {"class_type": "PixelsITOEditMask", "inputs": {
            "model": ["7", 0], "source_positive": fam["cond"]["src"], "source_negative": fam["cond"]["neg"],
            "edit_positive": fam["cond"]["tgt"], "edit_negative": fam["cond"]["neg"], "latent": ["3", 0],
            "mask_seeds": 2, "mask_strength": 0.5, "threshold": 0.1, "smoothing": 0.0, "cfg": 1.0, "seed": 8201}},
        "9": {"class_type": "MaskToImage", "inputs": {"mask": ["8", 0]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": f"flux_mask_{fam['id']}"}},
    })
    if with_vae:
        g["8"]["inputs"]["vae"] = fam["vae"]
    out = comfy.run(g)
    (img,) = out["10"]["images"]
    mask = Image.open(io.BytesIO(comfy.download(img))).convert("L")
    assert mask.size == (64, 64)
    m = torch.from_numpy(np.asarray(mask).astype(np.float32)) / 255.0
    # the known answers differ only on the right half: the mask is white there and black on the left
    assert m[:, :16].max() < 0.5 < m[:, 48:].min(), (float(m[:, :16].max()), float(m[:, 48:].min()))
