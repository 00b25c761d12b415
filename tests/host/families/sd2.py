"""SD2.x 768-v (v-prediction) from the tiny checkpoint ``checkpoints/v2-1_768-ema-pruned.safetensors``
(``tests/host/models_sdxl.py``): ``CheckpointLoaderSimple`` detects its UNet as ComfyUI's ``SD20`` (SD1.x latent
format, 4 channels, 8x) and gives its TAESD VAE. ComfyUI decides v-prediction for SD2 from the std of a norm bias in
the 12th output block, which only a UNet of about 68 M parameters has (too big to build for a test), so the tiny file
loads as EPS and ComfyUI's own ``ModelSamplingDiscrete`` node (``sampling=v_prediction``) makes it a v model, as users
do with v models ComfyUI does not recognise. OpenCLIP-H cannot be made tiny: ``PixelsTestConditioning`` gives its
penultimate-layer shape, (1, 77, 1024), no pooled output (SD2 takes none)."""


def nodes(prompts):
    g = {"100": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v2-1_768-ema-pruned.safetensors"}},
         "101": {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["100", 0], "sampling": "v_prediction",
                                                                   "zsnr": False}}}
    for nid, key in (("110", "src"), ("111", "tgt"), ("112", "neg")):
        g[nid] = {"class_type": "PixelsTestConditioning", "inputs": {"text": prompts[key], "tokens": 77, "dim": 1024}}
    return g


def skip(object_info):
    missing = [n for n in ("ModelSamplingDiscrete", "PixelsTestConditioning") if n not in object_info]
    return f"this ComfyUI lacks the node(s) {', '.join(missing)}" if missing else None


FAMILIES = [
    dict(id="sd2v", title="SD2.x 768-v (v-prediction)", skip=skip, nodes=nodes, model=["101", 0], vae=["100", 2],
         cond={"src": ["110", 0], "tgt": ["111", 0], "neg": ["112", 0]}, frames=1, size=64, latent=(1, 4, 8, 8),
         cfg=5.0, methods=("pixels", "syncsde", "ito", "oig"), refused={}),
]
