"""SDXL base from the tiny SDXL-layout UNet ``diffusion_models/sdxl_tiny_unet.safetensors`` and the 4-channel TAESD
``vae/sdxl_taesd_tiny.safetensors`` (``tests/host/models_sdxl.py``). ComfyUI's model list fixes SDXL's UNet config,
so a tiny SDXL cannot be detected: the test-only ``PixelsTestSDXLLoader`` (``tests/host/test_nodes/sdxl.py``) reads
the architecture with ComfyUI's ``detect_unet_config`` and builds it as ComfyUI's own ``supported_models.SDXL`` /
``model_base.SDXL`` (EPS, discrete schedule, ``SDXL`` latent format with scale 0.13025); ``VAELoader`` loads the VAE.
CLIP-L + OpenCLIP-bigG cannot be made tiny: ``PixelsTestConditioning`` gives their shapes, (1, 77, 2048) cross
attention and a (1, 1280) pooled output, and ``PixelsTestSDXLSize`` adds the size keys ``CLIPTextEncodeSDXL`` sets
(1024 px, its defaults), so ``model_base.SDXL.encode_adm`` builds the real 2816-wide ``y``."""


def nodes(prompts):
    g = {"100": {"class_type": "PixelsTestSDXLLoader", "inputs": {"unet_name": "sdxl_tiny_unet.safetensors"}},
         "101": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_taesd_tiny.safetensors"}}}
    for nid, key in (("110", "src"), ("111", "tgt"), ("112", "neg")):
        g[nid] = {"class_type": "PixelsTestConditioning", "inputs": {"text": prompts[key], "tokens": 77, "dim": 2048,
                                                                    "pooled": 1280}}
        g[str(int(nid) + 10)] = {"class_type": "PixelsTestSDXLSize", "inputs": {
            "conditioning": [nid, 0], "width": 1024, "height": 1024, "crop_w": 0, "crop_h": 0,
            "target_width": 1024, "target_height": 1024}}
    return g


def skip(object_info):
    missing = [n for n in ("PixelsTestSDXLLoader", "PixelsTestSDXLSize", "PixelsTestConditioning")
               if n not in object_info]
    return f"this ComfyUI lacks the node(s) {', '.join(missing)}" if missing else None


FAMILIES = [
    dict(id="sdxl", title="SDXL base (eps)", skip=skip, nodes=nodes, model=["100", 0], vae=["101", 0],
         cond={"src": ["120", 0], "tgt": ["121", 0], "neg": ["122", 0]}, frames=1, size=64, latent=(1, 4, 8, 8),
         cfg=5.0, methods=("pixels", "syncsde", "ito", "oig"), refused={}),
]
