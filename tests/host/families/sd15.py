"""SD1.x (eps) and SD3 (flow) from the tiny checkpoints of ``tests/host/tiny_models.py``: CheckpointLoaderSimple and
the real (random-weight) CLIP-L text encoder, so these two rows run ComfyUI's own text encode too."""


def _checkpoint(ckpt):
    def nodes(prompts):
        g = {"100": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}}
        for nid, key in (("110", "src"), ("111", "tgt"), ("112", "neg")):
            g[nid] = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["100", 1], "text": prompts[key]}}
        return g
    return nodes


COND = {"src": ["110", 0], "tgt": ["111", 0], "neg": ["112", 0]}

FAMILIES = [
    dict(id="sd15", title="SD1.x (eps)", skip=lambda oi: None, nodes=_checkpoint("v1-5-pruned-emaonly.safetensors"),
         model=["100", 0], vae=["100", 2], cond=COND, frames=1, size=64, latent=(1, 4, 8, 8), cfg=4.0,
         methods=("pixels", "syncsde", "ito", "oig"), refused={}),
    dict(id="sd3", title="SD3.x (flow)", skip=lambda oi: None, nodes=_checkpoint("sd3_medium_incl_clips.safetensors"),
         model=["100", 0], vae=["100", 2], cond=COND, frames=1, size=64, latent=(1, 16, 8, 8), cfg=4.0,
         methods=("pixels", "syncsde", "ito"),
         refused={"oig": "OIG supports SD1.x, SD2 and SDXL UNet models"}),
]
