"""PIXELS with no exemplar (K = 0) = progressive soft inpainting, in a real ComfyUI, side by side with core
``DifferentialDiffusion`` + KSampler on the same grey mask and the same known-answer model (issue 13, part 1).

The graph pattern is test_side_by_side.py's: the tiny checkpoint wrapped by ``PixelsTestKnownAnswer`` with the set
``{target}`` (the model predicts the target latent everywhere, at every noise level: any cell handed to the model comes
back as the target, so a keep-region leak shows at full size and the inpainted cells have one right answer). The map
(paper polarity): white (keep) on the left 3 latent columns, grey 0.5 on the next 2, black (inpaint) on the right 3.
Differential Diffusion gets what its users give it: the source latent (VAE Encode) with Set Latent Noise Mask of the
inverted map (white = change), the model patched by DifferentialDiffusion, KSampler. PIXELS gets the same grey mask
three ways: PIXELS Progressive Edit with ``edit_map`` in the paper's polarity, the same with the inverted mask and
``map_polarity`` = white = change, and PIXELS Progressive Sampler (no exemplars, no VAE) in SamplerCustomAdvanced
reading the latent's noise mask (Set Latent Noise Mask), the DD graph with its KSampler swapped.
Same sampler (euler), scheduler (normal), steps (8), denoise (0.6), seeds, CFG 1. ``-s`` prints the figures.
"""
from __future__ import annotations

import pytest
import torch

SD15 = "v1-5-pruned-emaonly.safetensors"
SD3 = "sd3_medium_incl_clips.safetensors"
KIND = {SD15: "eps (SD1.5 tiny)", SD3: "flow (SD3 tiny)"}
PAPER = "white keeps source (paper)"
CHANGE = "white = change (inpaint / Differential Diffusion mask)"
SEEDS = [1, 2, 3]
KEEP, GREY, BLACK = (Ellipsis, slice(0, 3)), (Ellipsis, slice(3, 5)), (Ellipsis, slice(5, 8))


def enc(text):
    return {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": text}}


def save(node, index=0):
    return {"class_type": "SaveLatent", "inputs": {"samples": [node, index], "filename_prefix": f"k0_{node}"}}


def mask(value, right_value, right_fraction, width=64, height=64):
    return {"class_type": "PixelsTestMask", "inputs": {"value": value, "width": width, "height": height,
                                                      "right_value": right_value, "right_fraction": right_fraction}}


def edit(map_node, polarity, seed, steps=8, denoise=0.6):
    return {"class_type": "PixelsProgressiveEdit", "inputs": {
        "model": ["12", 0], "positive": ["2", 0], "negative": ["3", 0], "vae": ["1", 2], "source": ["4", 0],
        "seed": seed, "steps": steps, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal",
        "denoise": denoise, "curve": "linear", "gamma": 1.0, "edit_map": [map_node, 0], "map_polarity": polarity}}


def graph(ckpt, steps=8, denoise=0.6):
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": enc(""), "3": enc(""),
        "4": {"class_type": "PixelsTestFrames", "inputs": {"frames": 1, "width": 64, "height": 64, "seed": 7}},
        "5": {"class_type": "PixelsTestFrames", "inputs": {"frames": 1, "width": 64, "height": 64, "seed": 8}},
        "6": mask("1.0", "0.5", 0.625), "7": mask("1.0", "0.0", 0.375),
        "8": {"class_type": "MaskComposite", "inputs": {"destination": ["6", 0], "source": ["7", 0], "x": 0, "y": 0,
                                                       "operation": "multiply"}},
        "10": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}},
        "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["1", 2]}},
        "12": {"class_type": "PixelsTestKnownAnswer", "inputs": {"model": ["1", 0], "set_a": ["11", 0]}},
        "13": {"class_type": "InvertMask", "inputs": {"mask": ["8", 0]}},  # white = change
        "16": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["10", 0], "mask": ["13", 0]}},
        "17": {"class_type": "DifferentialDiffusion", "inputs": {"model": ["12", 0]}},
        "18": save("10"), "19": save("11"),
        "30": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "31": {"class_type": "PixelsProgressiveSampler", "inputs": {"sampler": ["30", 0], "curve": "linear",
                                                                    "gamma": 1.0}},
        "32": {"class_type": "BasicScheduler", "inputs": {"model": ["12", 0], "scheduler": "normal", "steps": steps,
                                                          "denoise": denoise}},
        "33": {"class_type": "CFGGuider", "inputs": {"model": ["12", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                     "cfg": 1.0}},
    }
    for s in SEEDS:
        g[f"p{s}"] = edit("8", PAPER, s, steps, denoise)
        g[f"p{s}s"] = save(f"p{s}", 1)
        g[f"i{s}"] = edit("13", CHANGE, s, steps, denoise)
        g[f"i{s}s"] = save(f"i{s}", 1)
        g[f"d{s}"] = {"class_type": "KSampler", "inputs": {
            "model": ["17", 0], "seed": s, "steps": steps, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal",
            "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["16", 0], "denoise": denoise}}
        g[f"d{s}s"] = save(f"d{s}")
        g[f"n{s}"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": s}}
        g[f"c{s}"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": [f"n{s}", 0], "guider": ["33", 0], "sampler": ["31", 0], "sigmas": ["32", 0],
            "latent_image": ["16", 0]}}
        g[f"c{s}s"] = save(f"c{s}")
    return g


def figures(edits, src, tgt):
    """(keep-region change, its max, inpainted-region error, grey-region change), means over the seeds, relative to the
    source-target gap of the same cells."""
    gap = lambda r: (tgt - src)[r].abs().mean()  # noqa: E731
    keep = torch.stack([(e - src)[KEEP].abs().mean() for e in edits]).mean() / gap(KEEP)
    keep_max = torch.stack([(e - src)[KEEP].abs().max() for e in edits]).max() / (tgt - src)[KEEP].abs().max()
    black = torch.stack([(e - tgt)[BLACK].abs().mean() for e in edits]).mean() / gap(BLACK)
    grey = torch.stack([(e - src)[GREY].abs().mean() for e in edits]).mean() / gap(GREY)
    return float(keep), float(keep_max), float(black), float(grey)


@pytest.mark.parametrize("ckpt", [pytest.param(SD15, id="sd15"), pytest.param(SD3, id="sd3")])
def test_soft_inpainting_against_differential_diffusion(comfy, ckpt):
    out = comfy.run(graph(ckpt))
    src, tgt = comfy.latent(out, "18"), comfy.latent(out, "19")
    assert (tgt - src)[KEEP].abs().mean() > 0 and (tgt - src)[BLACK].abs().mean() > 0
    lat = {k: [comfy.latent(out, f"{k}{s}s") for s in SEEDS] for k in "pidc"}
    rows = {"PIXELS Progressive Edit, K = 0, edit_map (paper polarity)": figures(lat["p"], src, tgt),
            "PIXELS Progressive Edit, K = 0, inverted edit_map (white = change)": figures(lat["i"], src, tgt),
            "PIXELS Progressive Sampler, K = 0, latent noise mask": figures(lat["c"], src, tgt),
            "DifferentialDiffusion + Set Latent Noise Mask + KSampler": figures(lat["d"], src, tgt)}
    for name, f in rows.items():
        print(f"\n[{KIND[ckpt]}] {name}: keep-region change {f[0]:.3g} (max {f[1]:.3g}), inpainted-region error "
              f"{f[2]:.3g}, grey-region change {f[3]:.3g} (relative to the source-target gap)")
    for p, i in zip(lat["p"], lat["i"]):
        assert torch.equal(p[KEEP], src[KEEP])  # map-1 cells: the source latent itself, bit for bit
        assert torch.equal(p, i)  # both polarities, inverted maps: the same edit
    pix, sca, dd = (rows[k] for k in list(rows)[0:1] + list(rows)[2:4])
    assert pix[2] < 1e-2, pix  # the inpainted cells end on what the model knows
    # the SAMPLER path: the source noised to the last sigma and back through the latent format (float rounding only)
    assert sca[1] < 1e-5 and sca[2] < 1e-2, sca
    if KIND[ckpt].startswith("eps"):
        # DD's threshold reaches 0 at the last step (sigma_min): it hands every cell, the keep cells too, to the model
        assert dd[0] > 0.5, dd


def test_errors_name_the_input(comfy):
    g = graph(SD15)
    # no outputs but the ones each case adds (ComfyUI runs only what an output needs)
    base = {k: v for k, v in g.items() if v["class_type"] != "SaveLatent"}

    def err(extra):
        with pytest.raises(AssertionError) as e:
            comfy.run({**base, **extra})
        return str(e.value).split("--- server log tail ---")[0]

    white = mask("1.0", "1.0", 0.5)
    msg = err({"w": white, "e": edit("w", PAPER, 1), "es": save("e", 1)})
    assert "edit_map is all white" in msg and "nothing to inpaint" in msg and CHANGE in msg, msg
    nan = mask("nan", "0.0", 0.5)
    msg = err({"w": nan, "e": edit("w", PAPER, 1), "es": save("e", 1)})
    assert "edit_map contains NaN" in msg, msg
    # the noise-mask path: an all-black Set Latent Noise Mask changes nothing
    msg = err({"k": mask("0.0", "0.0", 0.5), "l": {"class_type": "SetLatentNoiseMask", "inputs": {
        "samples": ["10", 0], "mask": ["k", 0]}}, "c": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["n1", 0], "guider": ["33", 0], "sampler": ["31", 0], "sigmas": ["32", 0], "latent_image": ["l", 0]}},
        "cs": save("c")})
    assert "noise_mask of the latent" in msg and "nothing to inpaint" in msg, msg
    # no map at all
    msg = err({"c": {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["n1", 0], "guider": ["33", 0], "sampler": ["31", 0], "sigmas": ["32", 0], "latent_image": ["10", 0]}},
        "cs": save("c")})
    assert "needs a map" in msg and "Set Latent Noise Mask" in msg, msg
    # a map of another size is fitted (the pack's resize rule)
    small = mask("1.0", "0.0", 0.5, width=40, height=48)
    out = comfy.run({**base, "w": small, "e": edit("w", PAPER, 1), "es": save("e", 1)})
    assert comfy.latent(out, "es").shape[-2:] == (8, 8)
