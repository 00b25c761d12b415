"""PIXELS on video latents in a real ComfyUI: a tiny random-weight Wan 2.1 T2V model and Wan 2.1 VAE in ComfyUI's own
layout (``models_wan.py``, loaded by UNETLoader and VAELoader), 5 image frames of 64x64 px -> a latent
(1, 16, 2, 8, 8), the text encoder replaced by ``PixelsTestConditioning`` (umT5-XXL cannot be made tiny).

What is asserted: the 5-D latent goes through the PIXELS sampler (SamplerCustomAdvanced) and the all-in-one edit, the
kept (white) latent cells of every frame end at the source latent, and the black cells take the exemplar the
known-answer model predicts (or, with the real network, at least move away from the source); one map per latent
frame and one per image frame are read as frames. The all-in-one edit's IMAGE output for a clip is a batch of
frames, as ComfyUI's own VAE Decode gives (Save Image takes it). ComfyUI 0.3.64 cannot load a small Wan 2.1 VAE, so there every test here skips.
"""
import pytest
import torch

import comfy_client

UNET = "wan2.1_t2v_tiny.safetensors"
VAE = "wan2.1_vae_tiny.safetensors"
PAPER = "white keeps source (paper)"
# latent columns of an 8-cell-wide grid that the half / quarter maps keep whole (white) or release whole (black);
# the cells on the edge get a grey from the antialiased resize
KEEP_HALF, BLACK_HALF = slice(0, 3), slice(5, 8)
KEEP_QUARTER, BLACK_QUARTER = slice(0, 4), slice(7, 8)
# the host's latent format round trip (Wan21: shift by a mean and scale by a std of order 1) in float32
ROUND_TRIP = 1e-6


@pytest.fixture(scope="module")
def wan(comfy):
    """Skips where this ComfyUI cannot load the tiny Wan 2.1 VAE (0.3.64 fixes the Wan 2.1 VAE's width at the
    released 96 channels, about 254 MB in fp16, instead of reading it from the weights)."""
    g = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
         "2": {"class_type": "PixelsTestFrames", "inputs": {"frames": 5, "width": 64, "height": 64, "seed": 1}},
         "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 0]}},
         "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "wan_probe"}}}
    try:
        out = comfy_client.Client.run(comfy, g)
    except comfy_client.WorkflowError as e:
        if "size mismatch" in str(e) or "size mismatch" in comfy.log()[-20000:]:
            pytest.skip("this ComfyUI cannot load a small Wan 2.1 VAE: its VAE loader fixes the Wan 2.1 width at 96 "
                        "channels (the released VAE, about 254 MB in fp16) instead of reading it from the weights")
        raise
    lat = comfy.latent(out, "4")
    assert lat.shape == (1, 16, 2, 8, 8), lat.shape
    return comfy


def video_graph(seed: int, maps: str = "clip", known: bool = True, sampler: str = "euler") -> dict:
    """Source and exemplar clips of 5 frames at 64x64, a map made in the graph (``clip``: one map, left half white,
    right half black; ``latent``: one per latent frame, half black then quarter black; ``image``: the same as one map
    per image frame), the PIXELS sampler in SamplerCustomAdvanced, and SaveLatent of result, source and exemplar."""
    g = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET, "weight_dtype": "default"}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
        "3": {"class_type": "PixelsTestConditioning", "inputs": {"text": "a beach at dusk", "tokens": 8, "dim": 4096}},
        "4": {"class_type": "PixelsTestConditioning", "inputs": {"text": "", "tokens": 8, "dim": 4096}},
        "5": {"class_type": "PixelsTestFrames", "inputs": {"frames": 5, "width": 64, "height": 64, "seed": 1}},
        "6": {"class_type": "PixelsTestFrames", "inputs": {"frames": 5, "width": 64, "height": 64, "seed": 2}},
        "7": {"class_type": "PixelsTestMask", "inputs": {"value": "1.0", "width": 64, "height": 64,
                                                        "right_value": "0.0", "right_fraction": 0.5}},
        "8": {"class_type": "PixelsExemplar", "inputs": {"exemplar": ["6", 0], "edit_map": ["7", 0],
                                                        "map_polarity": PAPER}},
        "10": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["2", 0]}},
        "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["6", 0], "vae": ["2", 0]}},
        "20": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
        "21": {"class_type": "PixelsProgressiveSampler", "inputs": {"sampler": ["20", 0], "exemplars": ["8", 0],
                                                                    "vae": ["2", 0], "curve": "linear", "gamma": 1.0}},
        "23": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": 6,
                                                          "denoise": 0.6}},
        "24": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "25": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["3", 0], "negative": ["4", 0],
                                                     "cfg": 4.0}},
        "26": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["24", 0], "guider": ["25", 0],
                                                               "sampler": ["21", 0], "sigmas": ["23", 0],
                                                               "latent_image": ["10", 0]}},
        "30": {"class_type": "SaveLatent", "inputs": {"samples": ["26", 0], "filename_prefix": "wan_edit"}},
        "31": {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "wan_src"}},
        "32": {"class_type": "SaveLatent", "inputs": {"samples": ["11", 0], "filename_prefix": "wan_ex"}},
    }
    if maps != "clip":
        later = 1 if maps == "latent" else 4  # latent frame 1 = the mean of image frames 1..4
        g["40"] = {"class_type": "PixelsTestMask", "inputs": {"value": "1.0", "width": 64, "height": 64, "batch": later,
                                                             "right_value": "0.0", "right_fraction": 0.25}}
        g["41"] = {"class_type": "PixelsTestMaskBatch", "inputs": {"a": ["7", 0], "b": ["40", 0]}}
        g["8"]["inputs"]["edit_map"] = ["41", 0]
    if known:  # a model whose answer is the exemplar clip's latent at every noise level
        g["13"] = {"class_type": "PixelsTestKnownAnswer", "inputs": {"model": ["1", 0], "set_a": ["11", 0]}}
        g["25"]["inputs"]["model"] = ["13", 0]
    return g


def run_latents(comfy, g, result: str = "30"):
    out = comfy.run(g)
    return comfy.latent(out, result), comfy.latent(out, "31"), comfy.latent(out, "32")


def assert_kept(edit, src, cols):
    """Every frame's kept cells are the source latent, to the host's latent-format round trip."""
    err = (edit[..., cols] - src[..., cols]).abs().max()
    assert err <= ROUND_TRIP, f"kept cells moved by {float(err):.3g}"


def test_video_latent_shapes(wan):
    edit, src, ex = run_latents(wan, video_graph(seed=50))
    assert src.shape == ex.shape == edit.shape == (1, 16, 2, 8, 8)
    assert torch.isfinite(edit).all()


def test_video_white_keeps_the_source_and_black_takes_the_exemplar(wan):
    edit, src, ex = run_latents(wan, video_graph(seed=51))
    gap = (ex - src).abs()
    assert gap[..., BLACK_HALF].mean() > 0.1  # the two clips encode apart
    for f in range(src.shape[2]):
        assert_kept(edit[:, :, f], src[:, :, f], KEEP_HALF)
        assert torch.allclose(edit[:, :, f, :, BLACK_HALF], ex[:, :, f, :, BLACK_HALF], rtol=0,
                              atol=float(1e-3 * gap.max())), f"frame {f}: black cells did not take the exemplar"


@pytest.mark.parametrize("seed", [60, 61])
def test_video_two_point_known_answer_ends_at_one_of_them(wan, seed):
    """The known answer over the source and exemplar clips together (two equally likely latents): the kept cells
    end at the source; the released ones at one of the two points, the whole clip alike (the posterior collapses onto
    the nearer point; which one depends on the noise)."""
    g = video_graph(seed=seed)
    g["12"] = {"class_type": "PixelsTestLatentBatch", "inputs": {"a": ["10", 0], "b": ["11", 0]}}
    g["13"]["inputs"]["set_a"] = ["12", 0]
    edit, src, ex = run_latents(wan, g)
    tol = float(1e-3 * (ex - src).abs().max())
    for f in range(src.shape[2]):
        assert_kept(edit[:, :, f], src[:, :, f], KEEP_HALF)
    black = edit[..., BLACK_HALF]
    at_src = torch.allclose(black, src[..., BLACK_HALF], rtol=0, atol=tol)
    at_ex = torch.allclose(black, ex[..., BLACK_HALF], rtol=0, atol=tol)
    assert at_src != at_ex, "released cells are neither the source's nor the exemplar's latent"


def test_video_real_network_keeps_white_and_moves_black(wan):
    """The tiny Wan network itself (no known answer): whatever it predicts, the kept cells end at the source."""
    edit, src, ex = run_latents(wan, video_graph(seed=52, known=False))
    assert torch.isfinite(edit).all()
    for f in range(src.shape[2]):
        assert_kept(edit[:, :, f], src[:, :, f], KEEP_HALF)
        moved = (edit[:, :, f, :, BLACK_HALF] - src[:, :, f, :, BLACK_HALF]).abs().mean()
        assert moved > 0.1 * (ex - src)[:, :, f, :, BLACK_HALF].abs().mean(), f"frame {f}: black cells did not move"


@pytest.mark.parametrize("maps", ["latent", "image"])
def test_video_one_map_per_frame(wan, maps):
    """Frame 0 takes the exemplar on its right half, frame 1 only on its right quarter (given as 2 maps, one per
    latent frame, or as 5, one per image frame: latent frame 1 is the mean of image frames 1..4)."""
    edit, src, ex = run_latents(wan, video_graph(seed=53, maps=maps))
    gap = (ex - src).abs()
    assert_kept(edit[:, :, 0], src[:, :, 0], KEEP_HALF)
    assert_kept(edit[:, :, 1], src[:, :, 1], KEEP_QUARTER)
    tol = float(1e-3 * gap.max())
    assert torch.allclose(edit[:, :, 0, :, BLACK_HALF], ex[:, :, 0, :, BLACK_HALF], rtol=0, atol=tol)
    assert torch.allclose(edit[:, :, 1, :, BLACK_QUARTER], ex[:, :, 1, :, BLACK_QUARTER], rtol=0, atol=tol)
    # frame 1's columns 5..6 are white there (kept) but black in frame 0: the maps really are per frame
    assert_kept(edit[:, :, 1], src[:, :, 1], slice(4, 6))
    assert (edit[:, :, 0, :, 5:7] - src[:, :, 0, :, 5:7]).abs().mean() > 0.5 * gap[:, :, 0, :, 5:7].mean()


def test_video_map_count_that_fits_no_frame_is_named(wan):
    """4 maps for a clip of 9 image frames (3 latent frames) are neither one per latent frame nor one per image frame.
    (With 2 latent frames any count would pass as one per image frame of some time stride: 1 + s maps.)"""
    g = video_graph(seed=54, maps="latent")
    for k in ("5", "6"):
        g[k]["inputs"]["frames"] = 9
    g["40"]["inputs"]["batch"] = 3
    with pytest.raises(AssertionError) as err:
        wan.run(g)
    msg = str(err.value).split("--- server log tail ---")[0]
    assert "edit_map of exemplar 1 has 4 maps but the video latent has 3 frames" in msg, msg


def all_in_one_graph(seed: int) -> dict:
    g = video_graph(seed=seed)
    for k in ("20", "21", "23", "24", "25", "26", "30"):
        del g[k]
    g["13"] = {"class_type": "PixelsTestKnownAnswer", "inputs": {"model": ["1", 0], "set_a": ["11", 0]}}
    g["9"] = {"class_type": "PixelsProgressiveEdit", "inputs": {
        "model": ["13", 0], "positive": ["3", 0], "negative": ["4", 0], "vae": ["2", 0], "source": ["5", 0],
        "exemplars": ["8", 0], "seed": seed, "steps": 6, "cfg": 4.0, "sampler_name": "euler", "scheduler": "simple",
        "denoise": 0.6, "curve": "linear", "gamma": 1.0}}
    return g


def test_video_all_in_one_edit_keeps_white_bit_for_bit(wan):
    """PIXELS Progressive Edit on a clip: IMAGE frames in, the latent out is the source latent exactly where kept."""
    g = all_in_one_graph(seed=55)
    g["30"] = {"class_type": "SaveLatent", "inputs": {"samples": ["9", 1], "filename_prefix": "wan_edit_all"}}
    out = wan.run(g)
    edit, src, ex = wan.latent(out, "30"), wan.latent(out, "31"), wan.latent(out, "32")
    assert edit.shape == src.shape == (1, 16, 2, 8, 8)
    assert torch.equal(edit[..., KEEP_HALF], src[..., KEEP_HALF])
    gap = (ex - src).abs()
    assert torch.allclose(edit[..., BLACK_HALF], ex[..., BLACK_HALF], rtol=0, atol=float(1e-3 * gap.max()))


def test_video_all_in_one_edit_image_is_a_frame_batch(wan):
    g = all_in_one_graph(seed=56)
    g["33"] = {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "wan_edit_all"}}
    out = wan.run(g)
    assert len(comfy_client.output_images(out)) == 5  # the decoded clip: as many frames as the source
