"""PIXELS with inpainting checkpoints in a real ComfyUI (issue 13): SD1.5 inpainting (9-channel UNet), SDXL inpainting
(9-channel SDXL UNet) and Flux.1 Fill (``img_in`` 384: latent + masked image + 64 packed mask channels), tiny
random-weight files of their real layouts (``models_inpaint.py``).

An inpainting checkpoint is conditioned on a mask and the masked image (``c_concat``) besides the noised latent. The
pack's rule: at every step the mask is the pixels PIXELS has released so far and the masked image is the source with
those pixels greyed out. The known answer is ComfyUI's own: ``InpaintModelConditioning`` given that step's released
region as its mask, then the model's ``concat_cond`` (``PixelsTestConcatReference``). ``PixelsTestConcatRecorder``
records the ``c_concat`` each model call really receives (the real tiny network then runs on it).

The map (paper polarity): white (keep) on the left 3 of 8 latent columns, grey 0.5 on the next 2, black on the right 3.
With 8 Euler steps and the linear curve (thresholds i/8) black is released from step 0 and grey from step 4, so the
calls of steps 0-3 must see InpaintModelConditioning of the right 3 columns, steps 4-7 that of the right 5.
"""
from __future__ import annotations

import pytest
import torch

from tests.host.test_families import load_families

PAPER = "white keeps source (paper)"
FOLLOW, FIXED = "follow the release (per step)", "as conditioned (fixed)"
BLEND = "follow the release, blended latents (faster)"
PROMPTS = {"src": "a red house on a green meadow", "tgt": "a red house on a snowy meadow", "neg": "blurry"}
STEPS = 8
SPEC = {f["id"]: f for f in load_families()}


def sd15_inpaint(prompts):
    g = SPEC["sd15"]["nodes"](prompts)  # CheckpointLoaderSimple "100": CLIP-L and the VAE
    g["99"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "sd15_inpainting_tiny_unet.safetensors",
                                                      "weight_dtype": "default"}}
    return g


def swapped(fam_id: str, unet: str):
    def nodes(prompts):
        g = SPEC[fam_id]["nodes"](prompts)
        g["100"] = {**g["100"], "inputs": {**g["100"]["inputs"], "unet_name": unet}}
        return g
    return nodes


# mask_channels: where the concat holds the mask (SD: [mask, masked image]; Flux Fill: [masked image, 8x8 mask])
INPAINT = [
    dict(id="sd15_inpaint", base="sd15", nodes=sd15_inpaint, model=["99", 0], mask_channels=slice(0, 1),
         image_channels=slice(1, 5)),
    dict(id="sdxl_inpaint", base="sdxl", nodes=swapped("sdxl", "sdxl_inpainting_tiny_unet.safetensors"),
         model=["100", 0], mask_channels=slice(0, 1), image_channels=slice(1, 5)),
    dict(id="flux_fill", base="flux1", nodes=swapped("flux1", "flux1-fill-dev.safetensors"), model=["100", 0],
         mask_channels=slice(16, 80), image_channels=slice(0, 16)),
]
for f in INPAINT:
    f.update({k: SPEC[f["base"]][k] for k in ("vae", "cond", "cfg", "skip")})
PARAMS = [pytest.param(f, id=f["id"]) for f in INPAINT]


def mask(value, right_value, right_fraction, size=64):
    return {"class_type": "PixelsTestMask", "inputs": {"value": value, "width": size, "height": size,
                                                      "right_value": right_value, "right_fraction": right_fraction}}


def save(nid, ref):
    return {"class_type": "SaveLatent", "inputs": {"samples": ref, "filename_prefix": f"inpaint_{nid}"}}


def graph(fam: dict, seed: int) -> dict:
    g = dict(fam["nodes"](PROMPTS))
    cond, vae = fam["cond"], fam["vae"]
    g["1"] = {"class_type": "PixelsTestFrames", "inputs": {"frames": 1, "width": 64, "height": 64, "seed": seed}}
    g["3"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": vae}}
    g["4"] = save("4", ["3", 0])
    # the 3-level map, paper polarity, on the latent grid itself (a 64 px map would be shrunk with antialiasing, which
    # greys the latent column at each edge; here each latent column has one value)
    g["6"], g["7"] = mask("1.0", "0.5", 0.625, 8), mask("1.0", "0.0", 0.375, 8)
    g["8"] = {"class_type": "MaskComposite", "inputs": {"destination": ["6", 0], "source": ["7", 0], "x": 0, "y": 0,
                                                       "operation": "multiply"}}
    # the two released regions (white = inpaint), as a user would paint them for InpaintModelConditioning
    # a, b: the two released regions; z, o: nothing and everything released (the ends the blended mode mixes)
    for nid, (left, right, fraction) in {"a": ("0.0", "1.0", 0.375), "b": ("0.0", "1.0", 0.625),
                                         "z": ("0.0", "0.0", 0.5), "o": ("1.0", "1.0", 0.5)}.items():
        g[f"m{nid}"] = mask(left, right, fraction)
        g[f"c{nid}"] = {"class_type": "InpaintModelConditioning", "inputs": {
            "positive": cond["src"], "negative": cond["neg"], "vae": vae, "pixels": ["1", 0], "mask": [f"m{nid}", 0],
            "noise_mask": False}}
        g[f"r{nid}"] = {"class_type": "PixelsTestConcatReference", "inputs": {
            "model": fam["model"], "conditioning": [f"c{nid}", 0], "latent": ["3", 0]}}
        g[f"r{nid}s"] = save(f"r{nid}", [f"r{nid}", 0])

    g["2"] = {"class_type": "PixelsTestFrames", "inputs": {"frames": 1, "width": 64, "height": 64, "seed": seed + 1}}
    g["20"] = {"class_type": "PixelsExemplar", "inputs": {"exemplar": ["2", 0], "edit_map": ["8", 0],
                                                         "map_polarity": PAPER}}

    def edit(key, positive, negative, concat, exemplar=False):
        name = f"{fam['id']}-{key}-{seed}"
        g[f"rec{key}"] = {"class_type": "PixelsTestConcatRecorder", "inputs": {"model": fam["model"], "name": name}}
        inputs = {"exemplars": ["20", 0]} if exemplar else {"edit_map": ["8", 0], "map_polarity": PAPER}
        g[f"e{key}"] = {"class_type": "PixelsProgressiveEdit", "inputs": {
            "model": [f"rec{key}", 0], "positive": positive, "negative": negative, "vae": vae, "source": ["1", 0],
            "seed": seed, "steps": STEPS, "cfg": fam["cfg"], "sampler_name": "euler", "scheduler": "simple",
            "denoise": 0.6, "curve": "linear", "gamma": 1.0, **inputs, "inpaint_concat": concat}}
        g[f"d{key}"] = {"class_type": "PixelsTestConcatDump", "inputs": {"samples": [f"e{key}", 1], "name": name}}
        g[f"e{key}s"] = save(f"e{key}", [f"e{key}", 1])
        g[f"d{key}s"] = save(f"d{key}", [f"d{key}", 1])

    edit("follow", cond["src"], cond["neg"], FOLLOW)
    edit("fixed", ["cb", 0], ["cb", 1], FIXED)  # InpaintModelConditioning of the wider region, kept as it is
    edit("exemplar", cond["src"], cond["neg"], FOLLOW, exemplar=True)  # K = 1: the same map's release
    edit("blend", cond["src"], cond["neg"], BLEND)
    return g


def run(comfy, g, *nodes):
    out = comfy.run(g)
    return [comfy.latent(out, n) for n in nodes]


def skip_missing(comfy, fam):
    reason = fam["skip"](comfy.object_info())
    if reason:
        pytest.skip(f"{fam['id']}: {reason}")


@pytest.mark.parametrize("fam", PARAMS)
def test_concat_follows_the_release(comfy, fam):
    skip_missing(comfy, fam)
    src, ref_a, ref_b, ref_z, ref_o, follow, fixed, with_exemplar, blend, edit = run(
        comfy, graph(fam, seed=9301), "4", "ras", "rbs", "rzs", "ros", "dfollows", "dfixeds", "dexemplars", "dblends",
        "efollows")
    # with an exemplar the map's release is the same, so are the concats (the exemplar enters through the latent)
    assert torch.equal(with_exemplar, follow)
    calls = follow.shape[0]
    chunks = 2 if fam["cfg"] != 1.0 else 1  # cond and uncond in one batch above CFG 1
    assert calls == STEPS, f"{calls} model calls for {STEPS} Euler steps"
    assert follow.shape[1:] == (chunks * ref_a.shape[0], *ref_a.shape[1:])
    ms, im = fam["mask_channels"], fam["image_channels"]
    # the references differ where they must: the mask and the masked image of the grey columns
    assert (ref_a[:, ms] - ref_b[:, ms]).abs().max() > 0.5 and (ref_a[:, im] - ref_b[:, im]).abs().max() > 0
    scale = ref_b[:, im].abs().max()
    for i in range(calls):
        want = ref_a if i < STEPS // 2 else ref_b  # grey (0.5) is held while 0.5 > i / 8
        for k in range(chunks):
            got = follow[i, k * ref_a.shape[0]:(k + 1) * ref_a.shape[0]]
            assert torch.equal(got[:, ms], want[:, ms]), f"step {i}: mask channels differ"
            err = float((got[:, im] - want[:, im]).abs().max() / scale)
            assert err < 1e-5, f"step {i}: masked image off by {err:.3g} of its size"
    # 'as conditioned': the conditioning's own concat at every call
    for i in range(fixed.shape[0]):
        assert float((fixed[i, :ref_b.shape[0]] - ref_b).abs().max() / scale) < 1e-5
    # 'blended latents': the same masks; the image channels mix the two ends per latent cell (the references' latent
    # scaling is affine, so the blend of the references is the reference of the blend)
    n = ref_a.shape[0]
    for i in range(blend.shape[0]):
        released = torch.zeros_like(ref_a[:, :1])
        released[..., 8 - (3 if i < STEPS // 2 else 5):] = 1
        want = torch.lerp(ref_z[:, im], ref_o[:, im], released)
        assert torch.equal(blend[i, :n, ms], (ref_a if i < STEPS // 2 else ref_b)[:, ms]), f"step {i}: mask"
        assert float((blend[i, :n, im] - want).abs().max() / scale) < 1e-5, f"step {i}: blended image"
    # the real tiny network ran on it: white-kept cells are the source, the result is finite
    assert torch.isfinite(edit).all()
    assert float((edit[..., :3] - src[..., :3]).abs().max()) < 1e-5 * float(src.abs().max())


def test_sampler_node_follows_and_needs_the_vae(comfy):
    """PIXELS Progressive Sampler (SamplerCustomAdvanced, the latent's noise mask as the map): the mask channel
    follows the release (its masked image comes from the source latent decoded once), and without a VAE the
    sampler says what to connect."""
    fam = INPAINT[0]
    g = graph(fam, seed=9302)
    keep = {k: v for k, v in g.items() if not k.startswith(("e", "d", "rec"))}
    inv = {"class_type": "InvertMask", "inputs": {"mask": ["8", 0]}}  # white = change
    sampler = {"class_type": "PixelsProgressiveSampler", "inputs": {"sampler": ["s1", 0], "curve": "linear",
                                                                   "gamma": 1.0, "vae": fam["vae"]}}
    name = "sd15-sampler-9302"
    extra = {
        "inv": inv, "nm": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["3", 0], "mask": ["inv", 0]}},
        "rec": {"class_type": "PixelsTestConcatRecorder", "inputs": {"model": fam["model"], "name": name}},
        "s1": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "px": sampler,
        "sch": {"class_type": "BasicScheduler", "inputs": {"model": ["rec", 0], "scheduler": "simple", "steps": STEPS,
                                                           "denoise": 0.6}},
        "gd": {"class_type": "CFGGuider", "inputs": {"model": ["rec", 0], "positive": fam["cond"]["src"],
                                                     "negative": fam["cond"]["neg"], "cfg": 1.0}},
        "nz": {"class_type": "RandomNoise", "inputs": {"noise_seed": 9302}},
        "sca": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["nz", 0], "guider": ["gd", 0],
                                                                 "sampler": ["px", 0], "sigmas": ["sch", 0],
                                                                 "latent_image": ["nm", 0]}},
        "dp": {"class_type": "PixelsTestConcatDump", "inputs": {"samples": ["sca", 0], "name": name}},
        "dps": save("dp", ["dp", 1]),
    }
    ref_a, ref_b, rec = run(comfy, {**keep, **extra}, "ras", "rbs", "dps")
    assert rec.shape[0] == STEPS
    for i in range(STEPS):
        assert torch.equal(rec[i, :, 0:1], (ref_a if i < STEPS // 2 else ref_b)[:, 0:1]), f"step {i}"
    # the masked image changes when the grey columns are released
    assert (rec[STEPS // 2, :, 1:] - rec[STEPS // 2 - 1, :, 1:]).abs().max() > 0
    # no VAE: a clear message
    no_vae = {**extra, "px": {**sampler, "inputs": {k: v for k, v in sampler["inputs"].items() if k != "vae"}},
              "nz": {"class_type": "RandomNoise", "inputs": {"noise_seed": 9303}}}
    with pytest.raises(AssertionError) as err:
        comfy.run({**keep, **no_vae})
    msg = str(err.value).split("--- server log tail ---")[0]
    assert "inpainting checkpoint" in msg and "vae" in msg and FIXED in msg, msg
