"""PIXELS host side: exemplar encoding and the SAMPLER that runs Algorithm 1 around any ComfyUI sampler.

The paper: Shristi Das Biswas, Matthew Shreve, Xuelu Li, Prateek Singhal, Kaushik Roy, "PIXELS: Progressive Image
Xemplar-based Editing with Latent Surgery" (Algorithm 1); the maths is in ``pixels_core.pixels``.
"""
from __future__ import annotations

import math

import torch

import comfy.samplers

from ..pixels_core import masks
from ..pixels_core import noise as pxnoise
from ..pixels_core import pixels as core
from . import _session as session
from ._common import check_image

POLARITIES = ["white keeps source (paper)", "white takes exemplar (inpaint mask)"]
# the edit_map of K = 0 (progressive soft inpainting): the same two readings, worded without an exemplar
INPAINT_POLARITIES = ["white keeps source (paper)", "white = change (inpaint / Differential Diffusion mask)"]
# Half of one 8-bit grey level: what a user paints as black stays black through the float rounding of the resize.
DEFAULT_BLACK_POINT = 0.002


def map_to_paper(mask: torch.Tensor, polarity: str) -> torch.Tensor:
    session.choice("map_polarity", polarity, POLARITIES)
    return mask if polarity == POLARITIES[0] else 1.0 - mask


def encode_exemplars(vae, exemplars, size=None):
    """VAE-encode each exemplar image (optionally fitted to ``size`` = (H, W) pixels by the pack's resize rule:
    centre crop to the aspect ratio, then resize)."""
    out = []
    for k, ex in enumerate(exemplars):
        img = ex["image"][..., :3]
        if size is not None and tuple(img.shape[1:3]) != tuple(size):
            img = masks.fit(img.movedim(-1, 1), *size, name=f"exemplar {k + 1} image").movedim(1, -1)
        check_image(img, f"exemplar {k + 1} image", vae)
        out.append({"latent": vae.encode(img), "map": ex["map"], "black_point": ex.get("black_point", DEFAULT_BLACK_POINT)})
    return out


def exemplar_noise(source_noise: torch.Tensor, seed: int, k: int) -> torch.Tensor:
    """The one noise draw of exemplar ``k`` (different from the source's), per batch item from the seed and that
    item's own source noise: an item gets the same draw alone (LatentFromBatch keeps its batch_index) as in a batch."""
    return pxnoise.per_item_randn(source_noise, seed, "pixels exemplar", k)


def inpaint_map_to_paper(mask: torch.Tensor, polarity: str) -> torch.Tensor:
    session.choice("map_polarity", polarity, INPAINT_POLARITIES)
    return mask if polarity == INPAINT_POLARITIES[0] else 1.0 - mask


def make_sampler(inner, encoded, curve: str, gamma: float, final: str = "source", record=None, edit_map=None,
                 map_name: str = "edit_map", map_hint: str = ""):
    """A ComfyUI SAMPLER (KSAMPLER) running PIXELS around ``inner`` (a KSAMPLER such as KSamplerSelect's).

    ``record``: an optional dict that receives ``"kept"``, the never-released latent pixels of the last run.
    No exemplars (``encoded`` empty): K = 0, progressive soft inpainting with ``edit_map`` (a MASK, already in the
    paper's polarity; ``map_name``/``map_hint`` name it in errors) or, when that is None, the latent's noise mask
    (Set Latent Noise Mask: white = change, read as ``1 - mask``, on the latent grid ComfyUI fitted it to). The noise
    mask is then taken out of ComfyUI's inpaint blend (and out of any DifferentialDiffusion patch on the model): the
    map is Algorithm 1's alone."""
    inner_fn = inner.sampler_function
    inner_opts = dict(getattr(inner, "extra_options", {}) or {})

    def pixels_sampler(model, x, sigmas, extra_args=None, callback=None, disable=None):
        # model is ComfyUI's KSamplerX0Inpaint: it carries the clean source latent and the one noise draw.
        base = model.inner_model.inner_model
        ms = base.model_sampling
        source, noise = model.latent_image, model.noise
        b, h, w = source.shape[0], source.shape[-2], source.shape[-1]
        frames = source.shape[2] if source.ndim == 5 else None  # a video latent (B, C, frames, h, w)
        seed = int((extra_args or {}).get("seed", 0) or 0)
        max_denoise = math.isclose(float(ms.sigma_max), float(sigmas[0]), rel_tol=1e-5) or float(sigmas[0]) > float(ms.sigma_max)

        def add_noise(sigma, nz, x0):
            first = torch.is_tensor(sigma) and bool(torch.isclose(sigma.float(), sigmas[0].float()).all())
            return ms.noise_scaling(torch.as_tensor(sigma, device=x0.device), nz, x0, max_denoise=max_denoise and first)

        latents, maps, noises = [], [], []
        for k, ex in enumerate(encoded):
            raw = ex["latent"]
            if raw.shape[1] != source.shape[1]:
                raise ValueError(f"exemplar {k + 1} encodes to {raw.shape[1]}-channel latents but the source latent has "
                                 f"{source.shape[1]} channels: the VAE does not belong to this model. Use the model's "
                                 "own VAE (the one that encoded the source) on the PIXELS sampler")
            lat = base.process_latent_in(raw.to(x.device, x.dtype))
            if lat.shape[0] not in (1, b):
                raise ValueError(f"exemplar {k + 1} has batch {lat.shape[0]} but the source has batch {b}: "
                                 "give one exemplar image or one per source image")
            if lat.shape[-2:] != (h, w):
                raise ValueError(f"exemplar {k + 1} is {lat.shape[-1]}x{lat.shape[-2]} latent cells but the source is "
                                 f"{w}x{h}: scale the exemplar image to the source image's size (e.g. ImageScale with "
                                 "crop=center) or use PIXELS Progressive Edit, which does it for you")
            if lat.ndim != source.ndim or (frames is not None and lat.shape[2] != frames):
                raise ValueError(f"exemplar {k + 1} encodes to a latent of shape {tuple(lat.shape)} but the source latent "
                                 f"is {tuple(source.shape)}: for a video give the exemplar as a clip of as many frames "
                                 "as the source clip (or one image for an image model)")
            lat = lat.expand(b, *lat.shape[1:])
            latents.append(lat)
            name = f"edit_map of exemplar {k + 1}"
            bp = ex.get("black_point", DEFAULT_BLACK_POINT)
            if frames is None:
                m = core.prepare_map(ex["map"], b, h, w, name=name, black_point=bp)
            else:  # video: the map's batch is its frames (one map for the clip, or one per frame)
                m = masks.to_frames(core.prepare_map(ex["map"], None, h, w, name=name, black_point=bp), frames, name)
            maps.append(m.to(x.device, x.dtype))
            noises.append(exemplar_noise(noise, seed, k).to(x.device, x.dtype))
        name, hint = map_name, map_hint
        if not encoded:  # K = 0: progressive soft inpainting
            extra_args = dict(extra_args or {})
            noise_mask = extra_args.get("denoise_mask")
            if noise_mask is not None:  # the map is Algorithm 1's alone, not also ComfyUI's inpaint blend
                extra_args["denoise_mask"] = None
            if edit_map is not None:
                if frames is None:
                    m = core.prepare_map(edit_map, b, h, w, name=name, black_point=0.0)
                else:
                    m = masks.to_frames(core.prepare_map(edit_map, None, h, w, name=name, black_point=0.0), frames, name)
            elif noise_mask is not None:
                name = "noise_mask of the latent (Set Latent Noise Mask, white = change)"
                hint = " (here: paint the region to change white in the mask)"
                # already on the latent grid (ComfyUI fitted it, as for DifferentialDiffusion), channels repeated
                m = 1.0 - noise_mask[:, :1].float()
            else:
                raise ValueError("PIXELS without exemplars (progressive soft inpainting) needs a map: connect an "
                                 "edit_map to the PIXELS node, or give the latent a noise mask (Set Latent Noise Mask, "
                                 "white = change), or connect PIXELS Exemplar nodes to exemplars")
            maps.append(m.to(x.device, x.dtype))
        noise_sampler = pxnoise.ItemNoiseSampler(noise, seed, "pixels ancestral")
        z = core.sample_pixels(model, x, sigmas, extra_args, callback, disable, source=source, noise=noise,
                               exemplars=latents, exemplar_noises=noises, edit_maps=maps, add_noise=add_noise,
                               sampler=inner_fn, sampler_options=inner_opts, curve=curve, gamma=gamma,
                               noise_sampler=noise_sampler, final=final, map_name=name, map_hint=hint)
        if record is not None:
            record["kept"] = core.never_released(core.compose_maps(maps)[0], len(sigmas) - 1, curve, gamma).cpu()
        return z

    # No inpaint_options: "random" (ddim) would swap model.noise for another draw, and Algorithm 1 re-noises
    # the source with the very noise it started from.
    return comfy.samplers.KSAMPLER(pixels_sampler)
