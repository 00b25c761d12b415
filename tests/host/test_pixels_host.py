"""PIXELS nodes in a real ComfyUI: clear errors for bad maps and images, cancel honoured, the SAMPLER node in
SamplerCustomAdvanced, and (with the test-only known-answer model) what the method promises: white keeps the source
bit for bit, exemplars that would do nothing are refused, batch items reproduce alone."""
import pytest
import torch

import comfy_client

SD15 = "v1-5-pruned-emaonly.safetensors"
SD3 = "sd3_medium_incl_clips.safetensors"
PAPER = "white keeps source (paper)"


def base_graph(seed: int, steps: int = 8, ckpt: str = SD15, map_value: str = "1.0", black: str = "0.0") -> dict:
    """Source, exemplar and a map made inside the graph at 64 px (no uploads): by default white on the left half
    (keeps the source) and black on the right half (takes the exemplar)."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a beach"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x5080C0}},
        "5": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0xE0C080}},
        "6": {"class_type": "PixelsTestMask", "inputs": {"value": map_value, "width": 64, "height": 64,
                                                        "right_value": black, "right_fraction": 0.5}},
        "8": {"class_type": "PixelsExemplar", "inputs": {"exemplar": ["5", 0], "edit_map": ["6", 0],
                                                        "map_polarity": PAPER}},
        "9": {"class_type": "PixelsProgressiveEdit", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "vae": ["1", 2], "source": ["4", 0],
            "exemplars": ["8", 0], "seed": seed, "steps": steps, "cfg": 5.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 0.6, "curve": "linear", "gamma": 1.0}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "pixels_host"}},
    }


def error_text(comfy, g) -> str:
    with pytest.raises(AssertionError) as err:
        comfy.run(g)
    return str(err.value).split("--- server log tail ---")[0]


def test_all_white_map_is_a_clear_error(comfy):
    g = base_graph(seed=11, black="1.0")
    msg = error_text(comfy, g)
    assert "all white" in msg and "PixelsProgressiveEdit" in msg, msg


def test_map_of_another_size_and_aspect_is_fitted_and_logged(comfy):
    g = base_graph(seed=12)
    g["6"]["inputs"].update(width=96, height=80)
    assert comfy_client.output_images(comfy.run(g))
    assert "edit_map of exemplar 1 is 96x80, another aspect ratio than the 8x8 it must fit" in comfy.log()


def test_sources_batch_of_two(comfy):
    g = base_graph(seed=13)
    g["4"]["inputs"]["batch_size"] = 2
    assert len(comfy_client.output_images(comfy.run(g))) == 2


def sampler_graph(seed: int, sampler: str = "dpmpp_2m", kept: str | None = None) -> dict:
    g = base_graph(seed=seed)
    del g["9"], g["10"]
    g.update({
        "20": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
        "21": {"class_type": "PixelsProgressiveSampler", "inputs": {"sampler": ["20", 0], "exemplars": ["8", 0],
                                                                    "vae": ["1", 2], "curve": "cubic", "gamma": 1.0}},
        "22": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}},
        "23": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras", "steps": 6, "denoise": 0.5}},
        "24": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "25": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "cfg": 4.0}},
        "26": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["24", 0], "guider": ["25", 0], "sampler": ["21", 0],
                                                               "sigmas": ["23", 0], "latent_image": ["22", 0]}},
        "27": {"class_type": "VAEDecode", "inputs": {"samples": ["26", 0], "vae": ["1", 2]}},
        "28": {"class_type": "SaveImage", "inputs": {"images": ["27", 0], "filename_prefix": "pixels_host_sca"}},
    })
    if kept is not None:
        g["21"]["inputs"]["kept_pixels"] = kept
    return g


def test_sampler_node_in_sampler_custom_advanced(comfy):
    assert comfy_client.output_images(comfy.run(sampler_graph(seed=14)))


def test_cancel_is_honoured(comfy):
    """A long run interrupted after it starts ends as 'interrupted', long before it could have finished."""
    g = base_graph(seed=15, steps=4000)
    g["9"]["inputs"]["denoise"] = 1.0
    text, seconds = comfy.interrupted_run(g, after=3.0, timeout=120)
    assert "interrupted" in text
    assert seconds < 100


# ---------------------------------------------------------------------------------------------
# Exemplars that would do nothing (issue: near-black maps, resized edges)
# ---------------------------------------------------------------------------------------------

def test_near_black_map_is_refused_with_the_way_out(comfy):
    g = base_graph(seed=30, black=str(1 / 255))
    msg = error_text(comfy, g)
    assert "edit_map of exemplar 1: the exemplar fills no latent pixel" in msg, msg
    assert "raise black_point on its PIXELS Exemplar node to at least 0.00392" in msg, msg


def test_black_point_lets_near_black_take_the_exemplar(comfy):
    def run(color):
        g = base_graph(seed=31, black=str(1 / 255))
        g["8"]["inputs"]["black_point"] = 0.01
        g["5"]["inputs"]["color"] = color
        g["11"] = {"class_type": "SaveLatent", "inputs": {"samples": ["9", 1], "filename_prefix": "pixels_bp"}}
        return comfy.latent(comfy.run(g), "11")
    a, b = run(0xE0C080), run(0x204010)
    assert not torch.equal(a, b)  # the exemplar now changes the edit


def test_release_schedule_with_maps_of_different_sizes(comfy):
    g = base_graph(seed=32)
    del g["9"], g["10"]
    g["40"] = {"class_type": "PixelsTestMask", "inputs": {"value": "1.0", "width": 48, "height": 96,
                                                         "right_value": "0.0", "right_fraction": 0.25}}
    g["41"] = {"class_type": "PixelsExemplar", "inputs": {"exemplar": ["5", 0], "edit_map": ["40", 0],
                                                         "map_polarity": PAPER, "previous": ["8", 0]}}
    g["42"] = {"class_type": "PixelsReleaseSchedule", "inputs": {"exemplars": ["41", 0], "steps": 10, "curve": "linear",
                                                                "gamma": 1.0, "downscale": 8}}
    g["43"] = {"class_type": "SaveImage", "inputs": {"images": ["42", 1], "filename_prefix": "pixels_owners"}}
    assert len(comfy_client.output_images(comfy.run(g))) == 1
    assert "edit_map of exemplar 2 is 48x96" in comfy.log()


def test_release_schedule_and_map_preview_ask_the_vae_for_the_latent_grid(comfy):
    """With a VAE connected the latent grid is the VAE's (8 px per cell here), whatever the downscale widget says."""
    g = base_graph(seed=33)
    del g["9"], g["10"]
    g["42"] = {"class_type": "PixelsReleaseSchedule", "inputs": {"exemplars": ["8", 0], "steps": 10, "curve": "linear",
                                                                "gamma": 1.0, "downscale": 4, "vae": ["1", 2]}}
    g["43"] = {"class_type": "PreviewAny", "inputs": {"source": ["42", 2]}}
    g["44"] = {"class_type": "PixelsMapPreview", "inputs": {
        "map": ["6", 0], "map_polarity": PAPER, "steps": 10, "curve": "linear", "gamma": 1.0, "downscale": 4,
        "upscale_preview": False, "vae": ["1", 2]}}
    g["45"] = {"class_type": "PreviewAny", "inputs": {"source": ["44", 2]}}
    out = comfy.run(g)
    assert out["43"]["text"][0].startswith("8x8 latent grid"), out["43"]
    preview = out["44"]["images"][0]
    from PIL import Image
    import io
    assert Image.open(io.BytesIO(comfy.download(preview))).size == (8, 8)


def test_release_schedule_previews_a_map_without_exemplars(comfy):
    """K = 0 (progressive soft inpainting): the schedule of the edit_map alone, in either polarity, and a white map
    flagged in the summary."""
    def schedule(value, right, polarity=PAPER, seed=0):
        g = {"1": {"class_type": "PixelsTestMask", "inputs": {"value": value, "width": 8, "height": 8,
                                                             "right_value": right, "right_fraction": 0.25}},
             "2": {"class_type": "PixelsReleaseSchedule", "inputs": {
                 "steps": 10 + seed, "curve": "linear", "gamma": 1.0, "downscale": 1, "edit_map": ["1", 0],
                 "map_polarity": polarity}},
             "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}}}
        return comfy.run(g)["3"]["text"][0]

    text = schedule("1.0", "0.0")
    assert "no exemplar (progressive soft inpainting): 16 of 64 latent pixels released at step 0, 16 (25.0 %)" in text
    assert "kept as source (never released): 48 of 64" in text and "exemplar 1" not in text, text
    inverted = schedule("0.0", "1.0", "white = change (inpaint / Differential Diffusion mask)", seed=1)
    assert "16 of 64 latent pixels released at step 0" in inverted, inverted
    assert "NOTHING TO INPAINT" in schedule("1.0", "1.0", seed=2)


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral"])
def test_largest_widget_seed_runs(comfy, sampler):
    g = base_graph(seed=2 ** 64 - 1)
    g["9"]["inputs"]["sampler_name"] = sampler
    g["9"]["inputs"]["steps"] = 4 if sampler == "euler" else 5
    assert comfy_client.output_images(comfy.run(g))


# ---------------------------------------------------------------------------------------------
# Shapes and families: clear errors naming the input
# ---------------------------------------------------------------------------------------------

def test_vae_of_another_family_is_named(comfy):
    g = base_graph(seed=33, ckpt=SD3)
    g["50"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD15}}
    g["9"]["inputs"]["vae"] = ["50", 2]
    msg = error_text(comfy, g)
    assert "vae (the source it encodes): it has 4 latent channels but this model works on 16-channel latents" in msg, msg
    g = sampler_graph(seed=34)
    g["50"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD3}}
    g["21"]["inputs"]["vae"] = ["50", 2]
    msg = error_text(comfy, g)
    assert "exemplar 1 encodes to 16-channel latents but the source latent has 4 channels" in msg, msg


def test_tiny_image_is_named(comfy):
    g = base_graph(seed=35)
    g["4"]["inputs"].update(width=4, height=4)
    msg = error_text(comfy, g)
    assert "source is 4x4 px: this VAE works in 8x8 px cells and needs at least 16x16 px" in msg, msg


# ---------------------------------------------------------------------------------------------
# Known answers: a model that predicts the exemplar everywhere (tests/host/test_nodes)
# ---------------------------------------------------------------------------------------------

def known_answer(g, set_node: str):
    """Swap the model of the sampling nodes for the known-answer model predicting the latents of ``set_node``."""
    g["60"] = {"class_type": "PixelsTestKnownAnswer", "inputs": {"model": ["1", 0], "set_a": [set_node, 0]}}
    for node in g.values():
        if node["class_type"] in ("PixelsProgressiveEdit", "CFGGuider"):
            node["inputs"]["model"] = ["60", 0]
    return g


@pytest.mark.parametrize("ckpt", [SD15, SD3])
def test_white_ends_at_the_source_bit_for_bit_whatever_the_model_predicts(comfy, ckpt):
    def run(kept):
        g = base_graph(seed=40, ckpt=ckpt)
        g["61"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["1", 2]}}  # exemplar latent
        g["62"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}}  # source latent
        known_answer(g, "61")
        if kept:
            g["9"]["inputs"]["kept_pixels"] = kept
        g["63"] = {"class_type": "SaveLatent", "inputs": {"samples": ["9", 1], "filename_prefix": "pixels_ka"}}
        g["64"] = {"class_type": "SaveLatent", "inputs": {"samples": ["62", 0], "filename_prefix": "pixels_ka_src"}}
        g["65"] = {"class_type": "SaveLatent", "inputs": {"samples": ["61", 0], "filename_prefix": "pixels_ka_ex"}}
        out = comfy.run(g)
        return comfy.latent(out, "63"), comfy.latent(out, "64"), comfy.latent(out, "65")

    edit, src, ex = run(None)
    left, right = (slice(None), slice(None), slice(None), slice(0, 3)), (Ellipsis, slice(5, 8))
    assert torch.equal(edit[left], src[left])  # map-1 latent cells: the source latent itself
    gap = (ex - src).abs().max()  # (random-weight VAEs give small latents: compare relative to their difference)
    assert gap > 0
    assert torch.allclose(edit[right], ex[right], rtol=0, atol=float(1e-3 * gap))  # black: the exemplar the model knows
    literal, _, _ = run("denoised at last step (paper-literal)")
    # Algorithm 1 read literally hands the kept cells to the model at the last step: they become the exemplar
    assert (literal[left] - src[left]).abs().mean() > 0.5 * (ex[left] - src[left]).abs().mean()


def test_sampler_path_keeps_white_at_the_source(comfy):
    """Through SamplerCustomAdvanced the latent format's round trip is the host's: equal to float rounding."""
    g = sampler_graph(seed=41, sampler="euler")
    g["61"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["1", 2]}}
    known_answer(g, "61")
    g["63"] = {"class_type": "SaveLatent", "inputs": {"samples": ["26", 0], "filename_prefix": "pixels_ka_sca"}}
    g["64"] = {"class_type": "SaveLatent", "inputs": {"samples": ["22", 0], "filename_prefix": "pixels_ka_sca_src"}}
    g["65"] = {"class_type": "SaveLatent", "inputs": {"samples": ["61", 0], "filename_prefix": "pixels_ka_sca_ex"}}
    out = comfy.run(g)
    edit, src, ex = comfy.latent(out, "63"), comfy.latent(out, "64"), comfy.latent(out, "65")
    gap = (ex - src).abs()
    assert torch.allclose(edit[..., :3], src[..., :3], rtol=1e-6, atol=float(1e-6 * gap.max()))
    assert (edit[..., 5:] - src[..., 5:]).abs().mean() > 0.5 * gap[..., 5:].mean()


def test_batch_item_reproduces_alone(comfy):
    """Item 1 of a batch of two, and the same item alone (LatentFromBatch keeps its batch_index), give the same edit:
    the exemplar's and the ancestral sampler's noise follow ComfyUI's batch convention."""
    def run(alone):
        g = sampler_graph(seed=42, sampler="euler_ancestral")
        g["22"]["inputs"]["pixels"] = ["70", 0]
        g["70"] = {"class_type": "ImageBatch", "inputs": {"image1": ["4", 0], "image2": ["5", 0]}}
        if alone:
            g["71"] = {"class_type": "LatentFromBatch", "inputs": {"samples": ["22", 0], "batch_index": 1, "length": 1}}
            g["26"]["inputs"]["latent_image"] = ["71", 0]
        g["63"] = {"class_type": "SaveLatent", "inputs": {"samples": ["26", 0], "filename_prefix": "pixels_batch"}}
        return comfy.latent(comfy.run(g), "63")

    both, one = run(False), run(True)
    assert both.shape[0] == 2 and one.shape[0] == 1
    assert torch.allclose(both[1:2], one, rtol=1e-4, atol=1e-4), (both[1:2] - one).abs().max()
