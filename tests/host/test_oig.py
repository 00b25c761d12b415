"""OIG guider in a real ComfyUI (tiny SD1.5 checkpoint, random CLIP ViT-L/14 vision + CLIP-L text from models_oig.py).

The workflow runs headless with the backward pass (VAE decode, CLIP vision and UNet under autograd inside ComfyUI's
inference mode); bad inputs give clear messages; the node's host adapters are checked in a ComfyUI subprocess.
A guided step costs a CLIP ViT-L forward + backward (seconds on a CPU): most runs use 1-2 steps; one runs the
workflow's full step count (the generic workflow test shortens it).
"""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import comfy_client

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
WORKFLOW = REPO / "example_workflows" / "api" / "oig_text_edit.json"
INPUTS = REPO / "example_workflows" / "inputs"


def graph(steps: int | None = 2, size: int = 64, **guider) -> dict:
    """The example workflow at ``size`` px with ``steps`` steps (None: the workflow's own count)."""
    g = json.loads(WORKFLOW.read_text())
    g["20"]["inputs"].update(width=size, height=size)
    if steps is not None:
        g["10"]["inputs"]["steps"] = steps
    g["8"]["inputs"].update(guider)
    return g


@pytest.fixture(scope="module")
def cat(comfy):
    comfy.upload(INPUTS / "oig_cat.png")
    return "oig_cat.png"


def error_text(comfy, g) -> str:
    with pytest.raises(AssertionError) as err:
        comfy.run(g)
    return str(err.value).split("--- server log tail ---")[0]


def test_oig_guider_is_registered_with_tooltips(comfy):
    spec = comfy.object_info()["PixelsOIGGuider"]
    assert spec["output"] == ["GUIDER"]
    req = spec["input"]["required"]
    for name in ("model", "source", "target", "clip", "clip_vision", "vae", "clip_decode", "start", "gradient"):
        assert name in req and req[name][-1].get("tooltip"), name
    assert req["clip_decode"][-1]["default"] == "full resolution (paper)"  # cheaper decode is opt-in
    kind, opts = req["clip_decode"][0], req["clip_decode"][-1]
    assert opts.get("options", kind) == ["full resolution (paper)", "CLIP resolution (faster)",  # appended values
                                         "TAESD preview decoder (faster)", "TAESD at CLIP resolution (fastest)"]
    assert "vae_approx" in req["clip_decode"][-1]["tooltip"]
    assert req["clip_weight"][-1]["default"] == 0.1 and req["struct_weight"][-1]["default"] == 1.0
    assert req["beta_p"][-1]["default"] == 0.5 and req["beta_f"][-1]["default"] == 2.5


def test_oig_workflow_runs_with_backward_and_moves_the_latent(comfy, cat):
    """Authors' settings (inversion, full decode, negative-branch gradient) versus lambda1 = lambda2 = 0."""
    guided = comfy.run(graph(steps=2))
    plain = comfy.run(graph(steps=2, clip_weight=0.0, struct_weight=0.0))
    a, b = comfy_client.output_images(guided), comfy_client.output_images(plain)
    assert len(a) == 1 and len(b) == 1
    assert comfy.download(a[0]) != comfy.download(b[0]), "the OIG gradient step changed nothing"
    log = comfy.log()
    assert "Inference tensors cannot be saved for backward" not in log
    assert "element 0 of tensors does not require grad" not in log


def test_oig_workflow_at_its_full_step_count(comfy, cat):
    g = graph(steps=None, cfg=5.5)
    assert g["10"]["inputs"]["steps"] == 25
    assert len(comfy_client.output_images(comfy.run(g))) == 1


def test_oig_cheaper_decode_full_gradient_and_generated_source(comfy):
    g = graph(steps=1, clip_decode="CLIP resolution (faster)", gradient="both CFG branches",
              start="latent + noise (generated source)")
    g["11"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 61}}
    g["21"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    assert len(comfy_client.output_images(comfy.run(g))) == 1


def test_oig_taesd_decode_runs_with_backward_through_the_preview_decoder(comfy, cat):
    """The TAESD options (models/vae_approx/taesd_decoder.safetensors from models_oig.py) move the latent, and not as
    the VAE decode does: the CLIP term's gradient came through ComfyUI's TAESD decoder."""
    plain = comfy.download(comfy_client.output_images(comfy.run(graph(steps=1, struct_weight=0.0, clip_weight=0.0)))[0])
    images = {}
    for decode in ("full resolution (paper)", "TAESD preview decoder (faster)", "TAESD at CLIP resolution (fastest)"):
        out = comfy_client.output_images(comfy.run(graph(steps=1, struct_weight=0.0, clip_weight=50.0,
                                                         clip_decode=decode)))
        assert len(out) == 1
        images[decode] = comfy.download(out[0])
    assert len({plain, *images.values()}) == 4, "a TAESD decode changed nothing, or the same as another decode"
    log = comfy.log()
    assert "Inference tensors cannot be saved for backward" not in log
    assert "element 0 of tensors does not require grad" not in log


def test_inverting_an_empty_latent_is_a_clear_error(comfy):
    g = graph(steps=1, cfg=4.5)
    g["21"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    msg = error_text(comfy, g)
    assert "VAEEncode" in msg and "generated source" in msg, msg


def test_flow_model_is_rejected_clearly(comfy, cat):
    g = graph(steps=1)
    g["30"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd3_medium_incl_clips.safetensors"}}
    g["8"]["inputs"]["model"] = ["30", 0]
    msg = error_text(comfy, g)
    assert "OIG supports SD1.x, SD2 and SDXL" in msg and "Flow models" in msg, msg


def test_vae_of_another_family_is_rejected_clearly(comfy, cat):
    g = graph(steps=1)
    g["30"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd3_medium_incl_clips.safetensors"}}
    g["8"]["inputs"]["vae"] = ["30", 2]
    msg = error_text(comfy, g)
    assert "16-channel latents" in msg and "uses 4" in msg, msg


def test_missing_vae_is_named(comfy, cat):
    g = graph(steps=1)
    del g["8"]["inputs"]["vae"]
    msg = error_text(comfy, g)
    assert "vae" in msg.lower() and "PixelsOIGGuider" in msg, msg


ADAPTERS = textwrap.dedent('''
    import importlib.util, json, sys, types
    import torch
    from comfy.cli_args import args
    args.cpu = True
    repo = sys.argv[1]
    spec = importlib.util.spec_from_file_location("pixels_pack", repo + "/__init__.py", submodule_search_locations=[repo])
    pack = importlib.util.module_from_spec(spec); sys.modules["pixels_pack"] = pack; spec.loader.exec_module(pack)
    import pixels_pack.nodes._oig as n
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    out = {}

    def err(fn, *a):
        try:
            fn(*a)
        except ValueError as e:
            return str(e)
        return None

    def tower(dim, weight=None):
        proj = torch.nn.Linear(dim, dim, bias=False)
        if weight is not None:
            proj.weight.data.fill_(weight)
        return types.SimpleNamespace(transformer=types.SimpleNamespace(text_projection=proj))

    sd1 = types.SimpleNamespace(cond_stage_model=types.SimpleNamespace(clip_l=tower(768)))
    out["mismatch"] = err(n.text_tower, sd1, 1280)
    out["match"] = n.text_tower(sd1, 768)[0]
    zeroed = types.SimpleNamespace(cond_stage_model=types.SimpleNamespace(clip_l=tower(768, 0.0)))
    out["zeroed"] = err(n.text_tower, zeroed, 768)
    out["no_proj"] = err(n.vision_embed_dim, types.SimpleNamespace(model=types.SimpleNamespace()))
    out["no_vae"] = err(n.check_vae, None, None)

    def layers(**cfg):
        with torch.device("meta"):
            unet = UNetModel(in_channels=4, out_channels=4, num_heads=8, use_spatial_transformer=True,
                             use_linear_in_transformer=False, operations=comfy.ops.disable_weight_init, **cfg)
        return len(n.resblock_modules(unet))

    out["sd15"] = layers(image_size=32, model_channels=320, num_res_blocks=[2] * 4, channel_mult=[1, 2, 4, 4],
                         transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_middle=1,
                         transformer_depth_output=[0] * 3 + [1] * 9, context_dim=768)
    out["tiny"] = layers(image_size=32, model_channels=320, num_res_blocks=[1], channel_mult=[1],
                         transformer_depth=[1], transformer_depth_middle=-2, transformer_depth_output=[1, 1],
                         context_dim=768)

    # the APPLY_MODEL wrapper: gradient only through the negative (label 1) rows, plus identity on the others
    x = torch.randn(4, 1, 2, 2, requires_grad=True)
    def executor(xi, t, c_concat, c_crossattn, control, transformer_options, **kw):
        return xi * 3.0
    y = n.negative_branch_wrapper(executor, x, None, transformer_options={"cond_or_uncond": [0, 1]})
    (g,) = torch.autograd.grad(y.sum(), x)
    out["wrapper_grad"] = [g[:2].unique().tolist(), g[2:].unique().tolist()]
    y = n.negative_branch_wrapper(executor, x, None, transformer_options={"cond_or_uncond": [0]})  # split calls
    (g,) = torch.autograd.grad(y.sum(), x)
    out["wrapper_positive_only"] = g.unique().tolist()
    # with sliceable per-row inputs: positive chunk in its own no-grad call, negative chunk recorded
    calls = []
    def executor2(xi, t, c_concat, c_crossattn, control, transformer_options, **kw):
        calls.append([transformer_options["cond_or_uncond"], transformer_options["uuids"], torch.is_grad_enabled(),
                      t.tolist(), c_crossattn[:, 0].tolist(), kw["y"][:, 0].tolist()])
        return xi * 3.0 + (t + c_crossattn[:, 0] + kw["y"][:, 0])[:, None, None, None]
    x = torch.randn(4, 1, 2, 2, requires_grad=True)
    t, ctx, y_adm = torch.tensor([1., 2., 3., 4.]), torch.tensor([[10.], [20.], [30.], [40.]]), torch.arange(4.)[:, None]
    y = n.negative_branch_wrapper(executor2, x, t, None, ctx, None, {"cond_or_uncond": [0, 1], "uuids": ["p", "n"]},
                                  y=y_adm)
    (g,) = torch.autograd.grad(y.sum(), x)
    out["split_calls"] = calls
    out["split_value_error"] = float((y - (x * 3 + (t + ctx[:, 0] + y_adm[:, 0])[:, None, None, None])).abs().max())
    out["split_grad"] = [g[:2].unique().tolist(), g[2:].unique().tolist()]
    # ComfyUI's TAESD preview decoder: found in vae_approx as latent_preview finds it, or a clear message
    import folder_paths, tempfile
    import comfy.latent_formats
    def fmt_model(fmt):
        return types.SimpleNamespace(model=types.SimpleNamespace(latent_format=fmt))
    exts = folder_paths.folder_names_and_paths["vae_approx"][1]
    folder_paths.folder_names_and_paths["vae_approx"] = ([tempfile.mkdtemp()], exts)
    folder_paths.filename_list_cache.clear()
    out["taesd_missing_sdxl"] = err(n.taesd_decoder, fmt_model(comfy.latent_formats.SDXL()))
    out["taesd_missing_sd15"] = err(n.taesd_decoder, fmt_model(comfy.latent_formats.SD15()))
    folder_paths.folder_names_and_paths["vae_approx"] = ([sys.argv[2] + "/vae_approx"], exts)
    folder_paths.filename_list_cache.clear()
    taesd = n.taesd_decoder(fmt_model(comfy.latent_formats.SD15()))
    copy = n.GradCopy(taesd, n.taesd_decode, "cpu")
    z = torch.randn(1, 4, 8, 8, requires_grad=True)
    img = copy(z)
    (gz,) = torch.autograd.grad(img.square().sum(), z)
    out["taesd_shape"] = list(img.shape)
    out["taesd_grad"] = float(gz.abs().sum())
    out["taesd_matches_comfy"] = float((img.detach() - taesd.decode(z.detach())).abs().max())
    opts = {"model_options": {"transformer_options": {}}}
    n.with_negative_branch_gradient(opts)
    out["shared_untouched"] = opts["model_options"] == {"transformer_options": {}}
    print("RESULT" + json.dumps(out))
''')


@pytest.fixture(scope="module")
def adapters(comfy, models_dir):
    """Run the adapter checks in a ComfyUI subprocess (the pack imported as a package, as ComfyUI does)."""
    env = dict(os.environ)
    comfyui = os.environ["COMFYUI_PATH"]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (comfyui, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", ADAPTERS, str(REPO), str(models_dir)], cwd=comfyui, env=env, capture_output=True,
                          text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")]
    assert proc.returncode == 0 and line, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(line[-1][len("RESULT"):])


def test_adapter_messages(adapters):
    assert "embeds images into 1280" in adapters["mismatch"] and "ViT-L/14 (768) with CLIP-L" in adapters["mismatch"]
    assert adapters["match"] == "l"
    assert "missing or uninitialised" in adapters["zeroed"] and "CLIPLoader" in adapters["zeroed"]
    assert "no projection" in adapters["no_proj"]
    assert "connect the checkpoint's VAE" in adapters["no_vae"]


def test_taesd_decoder_is_comfyuis_and_a_missing_file_is_named(adapters):
    sdxl = adapters["taesd_missing_sdxl"]
    assert "taesdxl_decoder.safetensors" in sdxl and "models/vae_approx" in sdxl, sdxl
    assert "https://github.com/madebyollin/taesd/raw/main/taesdxl_decoder.pth" in sdxl, sdxl
    assert "taesd_decoder.safetensors" in adapters["taesd_missing_sd15"]
    assert adapters["taesd_shape"] == [1, 3, 64, 64]  # 8x upsampling, RGB
    assert adapters["taesd_grad"] > 0  # the gradient flows through the decoder to the latent
    assert adapters["taesd_matches_comfy"] < 1e-5  # the private copy decodes as ComfyUI's TAESD.decode


def test_resblock_taps_cover_sd15_and_the_one_level_test_unet(adapters):
    assert adapters["sd15"] == 20  # the authors' 20 layers: down and up ResBlocks, mid block excluded
    assert adapters["tiny"] == 3


def test_negative_branch_wrapper(adapters):
    assert adapters["wrapper_grad"] == [[1.0], [3.0]]  # positive rows: identity only; negative rows: through the net
    assert adapters["wrapper_positive_only"] == [1.0]  # a host call with the positive branch alone: identity only
    assert adapters["split_calls"] == [[[0], ["p"], False, [1.0, 2.0], [10.0, 20.0], [0.0, 1.0]],
                                       [[1], ["n"], True, [3.0, 4.0], [30.0, 40.0], [2.0, 3.0]]]
    assert adapters["split_value_error"] < 1e-6
    assert adapters["split_grad"] == [[1.0], [3.0]]
    assert adapters["shared_untouched"]


def test_cancel_is_honoured_and_the_next_run_works(comfy, cat):
    """Interrupt during the passes (ComfyUI raises from the progress callback); hooks and copies are dropped in
    finally, and the next run on the same model works."""
    text, _ = comfy.interrupted_run(graph(steps=60, cfg=4.0), after=12.0, timeout=300)
    assert "interrupted" in text
    assert len(comfy_client.output_images(comfy.run(graph(steps=1, cfg=3.5)))) == 1
