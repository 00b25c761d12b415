"""PIXELS progressive exemplar editing nodes (pixels-paper.txt, Algorithm 1): thin wrappers over pixels_core.pixels."""
from __future__ import annotations

import math

import torch
from comfy_api.latest import io

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..pixels_core import pixels as core

CATEGORY = "PIXELS/progressive editing"
Exemplars = io.Custom("PIXELS_EXEMPLARS")

POLARITIES = ["white keeps source (paper)", "white takes exemplar (inpaint mask)"]
CURVE_TIP = ("Release-threshold curve over the steps. linear (paper default) releases grey levels evenly; "
             "log releases earlier (more hallucination); quadratic/cubic later (more adherence to the source); "
             "sigmoid holds the darkest and brightest greys longest.")
GAMMA_TIP = ("Exponent on the threshold curve (1 = the curve as is). Raising it releases every grey pixel later "
             "(keeps more of the source); lowering it releases earlier (more change).")


def _map_to_paper(mask: torch.Tensor, polarity: str) -> torch.Tensor:
    if polarity not in POLARITIES:
        raise ValueError(f"map_polarity must be one of {POLARITIES}, got {polarity!r}")
    return mask if polarity == POLARITIES[0] else 1.0 - mask


def encode_exemplars(vae, exemplars, size=None):
    """VAE-encode each exemplar image (optionally centre-cropped and resized to ``size`` = (H, W) pixels)."""
    out = []
    for k, ex in enumerate(exemplars):
        img = ex["image"][..., :3]
        if size is not None and tuple(img.shape[1:3]) != tuple(size):
            img = core.fit_to(img.movedim(-1, 1), *size).movedim(1, -1)
        out.append({"latent": vae.encode(img), "map": ex["map"]})
    return out


def exemplar_noise(shape, seed: int, k: int) -> torch.Tensor:
    """The one noise draw of exemplar ``k`` (different from the source's, fixed by the seed)."""
    g = torch.Generator(device="cpu").manual_seed((int(seed) * 1000003 + 7919 * (k + 1)) % (2 ** 63))
    return torch.randn(shape, generator=g, device="cpu")


def make_sampler(inner, encoded, curve: str, gamma: float):
    """A ComfyUI SAMPLER (KSAMPLER) running PIXELS around ``inner`` (a KSAMPLER such as KSamplerSelect's)."""
    inner_fn = inner.sampler_function
    inner_opts = dict(getattr(inner, "extra_options", {}) or {})

    def pixels_sampler(model, x, sigmas, extra_args=None, callback=None, disable=None):
        # model is ComfyUI's KSamplerX0Inpaint: it carries the clean source latent and the one noise draw.
        base = model.inner_model.inner_model
        ms = base.model_sampling
        source, noise = model.latent_image, model.noise
        b, _, h, w = source.shape
        seed = int((extra_args or {}).get("seed", 0) or 0)
        max_denoise = math.isclose(float(ms.sigma_max), float(sigmas[0]), rel_tol=1e-5) or float(sigmas[0]) > float(ms.sigma_max)

        def add_noise(sigma, nz, x0):
            first = torch.is_tensor(sigma) and bool(torch.isclose(sigma.float(), sigmas[0].float()).all())
            return ms.noise_scaling(torch.as_tensor(sigma, device=x0.device), nz, x0, max_denoise=max_denoise and first)

        latents, maps, noises = [], [], []
        for k, ex in enumerate(encoded):
            lat = base.process_latent_in(ex["latent"].to(x.device, x.dtype))
            if lat.shape[0] not in (1, b):
                raise ValueError(f"exemplar {k + 1} has batch {lat.shape[0]} but the source has batch {b}: "
                                 "give one exemplar image or one per source image")
            if lat.shape[-2:] != (h, w):
                raise ValueError(f"exemplar {k + 1} is {lat.shape[-1] * 8}x{lat.shape[-2] * 8} px but the source is "
                                 f"{w * 8}x{h * 8}: scale it to the source size (e.g. ImageScale with crop=center) "
                                 "or use PIXELS Progressive Edit, which does it for you")
            lat = lat.expand(b, -1, -1, -1)
            latents.append(lat)
            maps.append(core.prepare_map(ex["map"], b, h, w, name=f"edit_map of exemplar {k + 1}").to(x.device, x.dtype))
            noises.append(exemplar_noise(lat.shape, seed, k).to(x.device, x.dtype))
        g = torch.Generator(device=x.device).manual_seed(seed + 1)
        noise_sampler = lambda s, sn: torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)  # noqa: E731
        return core.sample_pixels(model, x, sigmas, extra_args, callback, disable, source=source, noise=noise,
                                  exemplars=latents, exemplar_noises=noises, edit_maps=maps, add_noise=add_noise,
                                  sampler=inner_fn, sampler_options=inner_opts, curve=curve, gamma=gamma,
                                  noise_sampler=noise_sampler)

    # No inpaint_options: "random" (ddim) would swap model.noise for another draw, and Algorithm 1 re-noises
    # the source with the very noise it started from.
    return comfy.samplers.KSAMPLER(pixels_sampler)


def _curve_inputs():
    return [
        io.Combo.Input("curve", options=list(core.CURVES), default="linear", tooltip=CURVE_TIP),
        io.Float.Input("gamma", default=1.0, min=0.05, max=20.0, step=0.05, tooltip=GAMMA_TIP),
    ]


class PixelsExemplar(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsExemplar",
            display_name="PIXELS Exemplar",
            category=CATEGORY,
            description="Adds one exemplar image with its grey-level edit map to a list of exemplars. Chain several "
                        "to blend K exemplars into the source in one sampling pass.",
            inputs=[
                io.Image.Input("exemplar", tooltip="The exemplar image whose look is brought into the source where its map is dark."),
                io.Mask.Input("edit_map", tooltip="Grey-level edit map. Paper polarity: white keeps the source, black takes "
                              "this exemplar, grey releases the pixel to the denoiser part-way (darker = earlier = more change). "
                              "Resized to the latent grid (bilinear)."),
                io.Combo.Input("map_polarity", options=POLARITIES, default=POLARITIES[0],
                               tooltip="How to read the map: the paper's (white keeps the source) or ComfyUI's inpaint-mask "
                                       "convention (white = the region to change)."),
                io.Custom("PIXELS_EXEMPLARS").Input("previous", optional=True,
                                                    tooltip="Exemplars added before this one (chain nodes for K exemplars). "
                                                            "Where two maps are equally dark, the earlier exemplar wins."),
            ],
            outputs=[Exemplars.Output(display_name="exemplars")],
        )

    @classmethod
    def execute(cls, exemplar, edit_map, map_polarity, previous=None) -> io.NodeOutput:
        entry = {"image": exemplar, "map": _map_to_paper(edit_map, map_polarity)}
        return io.NodeOutput(tuple(previous or ()) + (entry,))


class PixelsProgressiveSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsProgressiveSampler",
            display_name="PIXELS Progressive Sampler",
            category=CATEGORY,
            description="Wraps any sampler into the PIXELS progressive sampler for SamplerCustomAdvanced: per-pixel "
                        "denoising strength from the exemplars' edit maps, source re-inserted each step (Algorithm 1). "
                        "Connect the source latent (VAE Encode of the source) to SamplerCustomAdvanced's latent_image "
                        "and set the start strength with the scheduler's denoise.",
            inputs=[
                io.Sampler.Input("sampler", tooltip="The sampler to run (e.g. from KSamplerSelect). First-order samplers "
                                 "(euler, euler_ancestral, ddim, heun, ...) follow Algorithm 1 exactly; multistep ones "
                                 "(dpmpp_2m, uni_pc, ...) get the blend through their denoiser (see the README)."),
                Exemplars.Input("exemplars", tooltip="One or more exemplars with maps, from PIXELS Exemplar nodes."),
                io.Vae.Input("vae", tooltip="VAE that encodes the exemplar images (the one that encoded the source). "
                             "Exemplars must already be the source's size here."),
                *_curve_inputs(),
            ],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, sampler, exemplars, vae, curve, gamma) -> io.NodeOutput:
        if not exemplars:
            raise ValueError("exemplars: connect at least one PIXELS Exemplar (K = 0 given)")
        return io.NodeOutput(make_sampler(sampler, encode_exemplars(vae, exemplars), curve, gamma))


class PixelsProgressiveEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsProgressiveEdit",
            display_name="PIXELS Progressive Edit",
            category=CATEGORY,
            description="All-in-one PIXELS edit: encodes the source and exemplars (exemplars are centre-cropped and resized "
                        "to the source), runs the progressive sampler with the host's CFG and decodes the result.",
            inputs=[
                io.Model.Input("model", tooltip="Diffusion model (SD1.x, SD2, SDXL, SD3, Flux, ...)."),
                io.Conditioning.Input("positive", tooltip="Prompt. The paper's default is the empty prompt; text adds to the exemplars (multimodal)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt."),
                io.Vae.Input("vae", tooltip="VAE of the model: encodes source and exemplars, decodes the result."),
                io.Image.Input("source", tooltip="The image to edit. White regions of the edit maps keep it."),
                Exemplars.Input("exemplars", tooltip="One or more exemplars with maps, from PIXELS Exemplar nodes."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the source's and exemplars' noise draws: same seed, same result."),
                io.Int.Input("steps", default=40, min=1, max=10000,
                             tooltip="Steps actually run (the official code runs 40 of 100). More steps give finer grey-level releases."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance, as in KSampler. Raising it follows the prompt more strongly "
                                       "(no effect with an empty prompt; the official code uses 17.5 on the SDXL refiner)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="euler",
                               tooltip="Sampler. euler/ddim follow Algorithm 1 exactly."),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="normal", tooltip="Sigma schedule."),
                io.Float.Input("denoise", default=0.4, min=0.01, max=1.0, step=0.01,
                               tooltip="Start strength t_ds (the official code's denoising_start 0.6 = 0.4). Raising it lets "
                                       "the model traverse further from the surgical latent: more realism, less adherence to the exemplar."),
                *_curve_inputs(),
            ],
            outputs=[io.Image.Output(display_name="image"), io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, model, positive, negative, vae, source, exemplars, seed, steps, cfg, sampler_name, scheduler,
                denoise, curve, gamma) -> io.NodeOutput:
        if not exemplars:
            raise ValueError("exemplars: connect at least one PIXELS Exemplar (K = 0 given)")
        src = vae.encode(source[..., :3])
        encoded = encode_exemplars(vae, exemplars, size=tuple(source.shape[1:3]))
        sampler = make_sampler(comfy.samplers.sampler_object(sampler_name), encoded, curve, gamma)
        total = max(steps, int(steps / denoise)) if denoise < 1.0 else steps
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, total).cpu()[-(steps + 1):]
        src = comfy.sample.fix_empty_latent_channels(model, src)
        noise = comfy.sample.prepare_noise(src, seed)
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        callback = latent_preview.prepare_callback(model, steps)
        samples = guider.sample(noise, src, sampler, sigmas, callback=callback,
                                disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
        samples = samples.to(comfy.model_management.intermediate_device())
        return io.NodeOutput(vae.decode(samples), {"samples": samples})


class PixelsReleaseSchedule(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsReleaseSchedule",
            display_name="PIXELS Release Schedule",
            category=CATEGORY,
            description="Shows when each pixel is released to the denoiser for the composed exemplar maps, as the "
                        "sampler sees them at latent resolution: black = released at the first step, white = never "
                        "(kept as source). Also outputs which exemplar owns each pixel at step 0.",
            inputs=[
                Exemplars.Input("exemplars", tooltip="The exemplars with maps you will sample with."),
                io.Int.Input("steps", default=40, min=1, max=10000, tooltip="Steps actually run (as in the sampler)."),
                *_curve_inputs(),
                io.Int.Input("downscale", default=8, min=1, max=64,
                             tooltip="Latent downscale factor of the model (8 for SD/SDXL/SD3/Flux)."),
            ],
            outputs=[io.Image.Output(display_name="schedule"), io.Image.Output(display_name="owners")],
        )

    @classmethod
    def execute(cls, exemplars, steps, curve, gamma, downscale) -> io.NodeOutput:
        if not exemplars:
            raise ValueError("exemplars: connect at least one PIXELS Exemplar (K = 0 given)")
        H, W = exemplars[0]["map"].shape[-2:]
        h, w = max(1, H // downscale), max(1, W // downscale)
        b = max(e["map"].reshape(-1, H, W).shape[0] if e["map"].ndim > 2 else 1 for e in exemplars)
        maps = [core.prepare_map(e["map"], b, h, w, name=f"edit_map of exemplar {k + 1}") for k, e in enumerate(exemplars)]
        combined, owner = core.compose_maps(maps)
        sched = core.release_schedule_image(combined, steps, curve, gamma)
        owners = core.owner_image(combined, owner, len(maps), core.threshold(0, steps, curve, gamma))
        up = lambda t: comfy.utils.common_upscale(t, W, H, "nearest-exact", "disabled").movedim(1, -1)  # noqa: E731
        return io.NodeOutput(up(sched.expand(-1, 3, -1, -1)), up(owners))


NODES = [PixelsExemplar, PixelsProgressiveSampler, PixelsProgressiveEdit, PixelsReleaseSchedule]
