"""PIXELS host side: exemplar encoding and the SAMPLER that runs Algorithm 1 around any ComfyUI sampler.

The paper: Shristi Das Biswas, Matthew Shreve, Xuelu Li, Prateek Singhal, Kaushik Roy, "PIXELS: Progressive Image
Xemplar-based Editing with Latent Surgery" (Algorithm 1); the maths is in ``pixels_core.pixels``.
"""
from __future__ import annotations

import logging
import math

import torch

import comfy.model_base
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


# How an inpainting checkpoint's concat conditioning (mask + masked image) is treated (the pack's own rule, beyond
# the paper): re-made each step for the pixels that step releases, or left as the conditioning made it.
INPAINT_CONCAT = ["follow the release (per step)", "as conditioned (fixed)",
                  "follow the release, blended latents (faster)"]
FOLLOWS = (INPAINT_CONCAT[0], INPAINT_CONCAT[2])
INPAINT_CONCAT_TIP = ("For inpainting checkpoints (SD1.5 / SD2 / SDXL inpainting UNets, Flux Fill), which see a mask "
                      "and the masked image besides the latent. 'follow the release' (default): at every step the "
                      "mask is exactly the pixels PIXELS has released so far and the masked image is the source "
                      "with those pixels greyed out (as InpaintModelConditioning would make them, VAE-encoded once "
                      "per distinct mask), so the model fills what is released and sees the rest as the source. "
                      "'as conditioned': the mask and image your conditioning carries (e.g. from "
                      "InpaintModelConditioning) stay fixed for all steps. 'blended latents': the same mask, but "
                      "the masked image's latent is blended per latent cell from two encodes (the source, and the "
                      "source all grey) instead of one encode per distinct mask: much cheaper on SD1.5/SDXL (a VAE "
                      "encode costs about a UNet step there), approximate at the edge of the released region. "
                      "Ignored for other models.")


def inpaint_checkpoint(base) -> bool:
    """True for a model whose concat conditioning is an inpaint mask and masked image: SD1.x/SD2/SDXL inpainting
    UNets (ComfyUI's ``concat_keys`` ``mask``/``masked_image``, from a 9-channel input) and Flux Fill (a Flux whose
    ``img_in`` takes the latent, the masked image's latent and 64 mask channels)."""
    keys = tuple(getattr(base, "concat_keys", ()) or ())
    if "mask" in keys and "masked_image" in keys:
        return True
    if isinstance(base, comfy.model_base.Flux):
        cfg = base.model_config.unet_config
        try:
            dm = base.diffusion_model
            channels = dm.img_in.weight.shape[1] // (dm.patch_size * dm.patch_size)
        except AttributeError:
            channels = cfg.get("in_channels", 0)
        return channels > 2 * cfg.get("out_channels", 16)
    return False


class ConcatFollower:
    """Makes an inpainting checkpoint's concat conditioning follow PIXELS' release.

    Before each model evaluation of step ``i`` (``on_step``, called by ``pixels_core.pixels.sample_pixels``) the
    mask becomes that step's released latent pixels on the pixel grid, the masked image the source with them greyed
    out (``pixels_core.pixels.inpaint_inputs``, what InpaintModelConditioning makes of a 0/1 mask), VAE-encoded once
    per distinct mask and laid out by the model's own ``concat_cond`` (so SD's [mask, image] and Flux Fill's
    [image, 8x8-packed mask] both come out as ComfyUI builds them). ``wrap`` installs a ``model_function_wrapper``
    that swaps ``c_concat`` in (around any wrapper the model already has)."""

    def __init__(self, base, vae, pixels: torch.Tensor, latent_shape, blend: bool = False):
        self.base, self.vae, self.pixels = base, vae, pixels
        self.noise = torch.zeros(tuple(latent_shape))  # concat_cond reads only its shape
        self.blend = blend  # the masked image's latent blended per cell from the source's and the all-grey encode
        self.ends = None
        self.released = None
        self.concat = None
        self.encodes = 0

    def _latent(self, masked, released):
        if not self.blend:
            self.encodes += 1
            return self.vae.encode(masked)
        if self.ends is None:  # the two ends, with InpaintModelConditioning's arithmetic: nothing and all released
            self.ends = [self.vae.encode(core.inpaint_inputs(self.pixels, torch.full_like(released, v))[0]).float()
                         for v in (0.0, 1.0)]
            self.encodes += 2
        keep, grey = self.ends
        return torch.lerp(keep, grey, released.to(keep.device, keep.dtype))

    def on_step(self, i, held):
        released = (1.0 - held).float().cpu()
        if self.released is not None and torch.equal(self.released, released):
            return
        masked, mask = core.inpaint_inputs(self.pixels, released)
        self.concat = self.base.concat_cond(noise=self.noise, concat_latent_image=self._latent(masked, released),
                                            concat_mask=mask, device=torch.device("cpu"))
        self.released = released

    def wrap(self, model_options: dict) -> dict:
        prev = model_options.get("model_function_wrapper")

        def follow_release(apply_model, args):
            c = args["c"]
            if self.concat is not None and "c_concat" in c:
                old = c["c_concat"]
                b = self.concat.shape[0]
                new = self.concat.to(old.device, old.dtype)
                if old.shape[0] % b == 0:
                    new = torch.cat([new] * (old.shape[0] // b))
                if new.shape != old.shape:
                    raise ValueError(f"PIXELS: the inpainting model's concat conditioning is {tuple(old.shape)} but the "
                                     f"release gives {tuple(new.shape)}; area-limited conditioning (Conditioning Set "
                                     f"Area) is not supported with inpainting checkpoints: set inpaint_concat to "
                                     f"'{INPAINT_CONCAT[1]}' or remove the area")
                args = {**args, "c": {**c, "c_concat": new}}
            if prev is not None:
                return prev(apply_model, args)
            return apply_model(args["input"], args["timestep"], **args["c"])

        return {**model_options, "model_function_wrapper": follow_release}


def _source_pixels(base, vae, source, pixels):
    """The source image for an inpainting checkpoint's masked image, on the latent grid times the VAE ratio: the
    node's source image (centre-cropped as VAE Encode crops it) or, without one, the source latent decoded once."""
    if vae is None:
        raise ValueError("vae: this model is an inpainting checkpoint (it is conditioned on a mask and the masked "
                         "image), and PIXELS re-makes that image at every step from the source: connect the model's "
                         "VAE to the PIXELS sampler's vae input, or set inpaint_concat to "
                         f"'{INPAINT_CONCAT[1]}'")
    h, w = source.shape[-2], source.shape[-1]
    if pixels is None:
        pixels = vae.decode(base.process_latent_out(source.float().cpu()))
    pixels = pixels[..., :3].float().cpu()
    r = pixels.shape[1] // h
    H, W = h * r, w * r
    y0, x0 = (pixels.shape[1] - H) // 2, (pixels.shape[2] - W) // 2
    pixels = pixels[:, y0:y0 + H, x0:x0 + W]
    if pixels.shape[0] == 1 and source.shape[0] > 1:
        pixels = pixels.expand(source.shape[0], -1, -1, -1)
    return pixels


def make_sampler(inner, encoded, curve: str, gamma: float, final: str = "source", record=None, edit_map=None,
                 map_name: str = "edit_map", map_hint: str = "", vae=None, source_pixels=None,
                 inpaint_concat: str = INPAINT_CONCAT[0]):
    """A ComfyUI SAMPLER (KSAMPLER) running PIXELS around ``inner`` (a KSAMPLER such as KSamplerSelect's).

    ``record``: an optional dict that receives ``"kept"``, the never-released latent pixels of the last run.
    No exemplars (``encoded`` empty): K = 0, progressive soft inpainting with ``edit_map`` (a MASK, already in the
    paper's polarity; ``map_name``/``map_hint`` name it in errors) or, when that is None, the latent's noise mask
    (Set Latent Noise Mask: white = change, read as ``1 - mask``, on the latent grid ComfyUI fitted it to). The noise
    mask is then taken out of ComfyUI's inpaint blend (and out of any DifferentialDiffusion patch on the model): the
    map is Algorithm 1's alone.

    Inpainting checkpoints (:func:`inpaint_checkpoint`) with ``inpaint_concat`` "follow the release": their mask and
    masked image follow the release at every step (:class:`ConcatFollower`), from ``source_pixels`` (the node's
    source image) or the source latent decoded once by ``vae``."""
    session.choice("inpaint_concat", inpaint_concat, INPAINT_CONCAT)
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
        follower = None
        if inpaint_concat in FOLLOWS and frames is None and inpaint_checkpoint(base):
            follower = ConcatFollower(base, vae, _source_pixels(base, vae, source, source_pixels), source.shape,
                                      blend=inpaint_concat == INPAINT_CONCAT[2])
            extra_args = dict(extra_args or {})
            extra_args["model_options"] = follower.wrap(extra_args.get("model_options") or {})
        noise_sampler = pxnoise.ItemNoiseSampler(noise, seed, "pixels ancestral")
        z = core.sample_pixels(model, x, sigmas, extra_args, callback, disable, source=source, noise=noise,
                               exemplars=latents, exemplar_noises=noises, edit_maps=maps, add_noise=add_noise,
                               sampler=inner_fn, sampler_options=inner_opts, curve=curve, gamma=gamma,
                               noise_sampler=noise_sampler, final=final, map_name=name, map_hint=hint,
                               on_step=None if follower is None else follower.on_step)
        if follower is not None:
            logging.info("PIXELS: inpainting model (%s): its mask and masked image followed the release (%d VAE "
                         "encodes)", type(base).__name__, follower.encodes)
            if record is not None:
                record["concat_encodes"] = follower.encodes
        if record is not None:
            record["kept"] = core.never_released(core.compose_maps(maps)[0], len(sigmas) - 1, curve, gamma).cpu()
        return z

    # No inpaint_options: "random" (ddim) would swap model.noise for another draw, and Algorithm 1 re-noises
    # the source with the very noise it started from.
    return comfy.samplers.KSAMPLER(pixels_sampler)
