"""PIXELS nodes in a real ComfyUI: clear errors for bad maps, cancel honoured, SAMPLER node in SamplerCustomAdvanced."""
import pathlib
import pytest

import comfy_client

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
SINGLE = REPO / "workflows" / "api" / "pixels_single_exemplar_sd15.json"


def base_graph(seed: int, steps: int = 8) -> dict:
    """Source, exemplar and a drawn map made inside the graph at 64 px (no uploads needed)."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a beach"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": ""}},
        "4": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x5080C0}},
        "5": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0xE0C080}},
        "6": {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 64, "height": 64}},
        "8": {"class_type": "PixelsExemplar", "inputs": {"exemplar": ["5", 0], "edit_map": ["6", 0],
                                                        "map_polarity": "white keeps source (paper)"}},
        "9": {"class_type": "PixelsProgressiveEdit", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "vae": ["1", 2], "source": ["4", 0],
            "exemplars": ["8", 0], "seed": seed, "steps": steps, "cfg": 5.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 0.6, "curve": "linear", "gamma": 1.0}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "pixels_host"}},
    }


def test_all_white_map_is_a_clear_error(comfy):
    g = base_graph(seed=11)
    g["6"]["inputs"]["value"] = 1.0
    with pytest.raises(AssertionError) as err:
        comfy.run(g)
    msg = str(err.value).split("--- server log tail ---")[0]
    assert "all white" in msg and "PixelsProgressiveEdit" in msg, msg


def test_map_bigger_than_source_is_resized_not_an_error(comfy):
    g = base_graph(seed=12)
    g["6"]["inputs"].update(width=96, height=80)
    assert comfy_client.output_images(comfy.run(g))


def test_sources_batch_of_two(comfy):
    g = base_graph(seed=13)
    g["4"]["inputs"]["batch_size"] = 2
    assert len(comfy_client.output_images(comfy.run(g))) == 2


def test_sampler_node_in_sampler_custom_advanced(comfy):
    g = base_graph(seed=14)
    del g["9"], g["10"]
    g.update({
        "20": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m"}},
        "21": {"class_type": "PixelsProgressiveSampler", "inputs": {"sampler": ["20", 0], "exemplars": ["8", 0],
                                                                    "vae": ["1", 2], "curve": "cubic", "gamma": 1.0}},
        "22": {"class_type": "VAEEncode", "inputs": {"pixels": ["4", 0], "vae": ["1", 2]}},
        "23": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras", "steps": 6, "denoise": 0.5}},
        "24": {"class_type": "RandomNoise", "inputs": {"noise_seed": 14}},
        "25": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "cfg": 4.0}},
        "26": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["24", 0], "guider": ["25", 0], "sampler": ["21", 0],
                                                               "sigmas": ["23", 0], "latent_image": ["22", 0]}},
        "27": {"class_type": "VAEDecode", "inputs": {"samples": ["26", 0], "vae": ["1", 2]}},
        "28": {"class_type": "SaveImage", "inputs": {"images": ["27", 0], "filename_prefix": "pixels_host_sca"}},
    })
    assert comfy_client.output_images(comfy.run(g))


def test_cancel_is_honoured(comfy):
    """A long run interrupted after it starts ends as 'interrupted', long before it could have finished."""
    g = base_graph(seed=15, steps=4000)
    g["9"]["inputs"]["denoise"] = 1.0
    text, seconds = comfy.interrupted_run(g, after=3.0, timeout=120)
    assert "interrupted" in text
    assert seconds < 100
