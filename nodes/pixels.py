"""PIXELS progressive exemplar editing nodes (Shristi Das Biswas, Matthew Shreve, Xuelu Li, Prateek Singhal, Kaushik
Roy, "PIXELS: Progressive Image Xemplar-based Editing with Latent Surgery", Algorithm 1): thin wrappers over
pixels_core.pixels, with the sampler plumbing in nodes/_pixels.py."""
from __future__ import annotations

import torch
from comfy_api.latest import io, ui

import comfy.sample
import comfy.samplers
import comfy.utils

from ..pixels_core import masks
from ..pixels_core import pixels as core
from . import _session as session
from ._common import check_image, check_latent, decode_frames, latent_ratio
from ._pixels import (DEFAULT_BLACK_POINT, INPAINT_CONCAT, INPAINT_CONCAT_TIP, INPAINT_POLARITIES, POLARITIES,
                      encode_exemplars, inpaint_map_to_paper, make_sampler, map_to_paper)

CATEGORY = "PIXELS/progressive editing"
Exemplars = io.Custom("PIXELS_EXEMPLARS")

CURVE_TIP = ("Release-threshold curve over the steps. linear (paper default) releases grey levels evenly; "
             "log releases earlier (more hallucination); quadratic/cubic later (more adherence to the source); "
             "sigmoid holds the darkest and brightest greys longest.")
KEPT_OPTIONS = ["end at source", "denoised at last step (paper-literal)"]
KEPT_TIP = ("What pixels that the map never releases (white, and greys above the last threshold) end as. 'end at source' "
            "(default): exactly the source latent, as the paper's 'white keeps the source' says. 'denoised at last step': "
            "Algorithm 1 read literally, which holds them until the last step and then lets the model denoise them "
            "(they can drift toward what the model predicts).")
BLACK_POINT_TIP = ("Map values at or below this count as black (take the exemplar) on the latent grid. Algorithm 1 fills "
                   "the exemplar only where the map is exactly 0 at the first step; a near-black paint or a dark region "
                   "whose edge the resize softened has no exact zeros there, and the exemplar would do nothing (the sampler "
                   "refuses that with a message). Raising it lets darker greys take the exemplar. The default, 0.002 (half "
                   "an 8-bit grey level), only absorbs rounding; 0 is Algorithm 1 to the letter.")
GAMMA_TIP = ("Exponent on the threshold curve (1 = the curve as is). Raising it releases every grey pixel later "
             "(keeps more of the source); lowering it releases earlier (more change).")


def _curve_inputs():
    return [
        io.Combo.Input("curve", options=list(core.CURVES), default="linear", tooltip=CURVE_TIP),
        io.Float.Input("gamma", default=1.0, min=0.05, max=20.0, step=0.05, tooltip=GAMMA_TIP),
    ]


def _kept_input():
    return io.Combo.Input("kept_pixels", options=KEPT_OPTIONS, default=KEPT_OPTIONS[0], optional=True, tooltip=KEPT_TIP)


EDIT_MAP_TIP = ("Progressive soft inpainting (PIXELS with no exemplar, a drop-in for Differential Diffusion): the map "
                "used when no exemplars are connected. Read by map_polarity; in the paper's polarity white keeps the "
                "source exactly, black is handed to the model from the first step, grey part-way (darker = earlier = "
                "more change). Fitted to the latent grid like exemplar maps. Leave it unconnected when exemplars "
                "are connected (each exemplar has its own map).")
MAP_POLARITY_TIP = ("How to read edit_map: the paper's (white keeps the source) or the inpaint / Differential "
                    "Diffusion convention (white = change: the mask you would give Set Latent Noise Mask).")


def _inpaint_inputs(noise_mask: bool):
    tip = EDIT_MAP_TIP + (" Unconnected and no exemplars: the latent's noise mask (Set Latent Noise Mask, white = "
                          "change) is the map." if noise_mask else "")
    return [
        io.Mask.Input("edit_map", optional=True, tooltip=tip),
        io.Combo.Input("map_polarity", options=INPAINT_POLARITIES, default=INPAINT_POLARITIES[0], optional=True,
                       tooltip=MAP_POLARITY_TIP),
    ]


def _concat_input():
    return io.Combo.Input("inpaint_concat", options=INPAINT_CONCAT, default=INPAINT_CONCAT[0], optional=True,
                          tooltip=INPAINT_CONCAT_TIP)


def _inpaint_map(exemplars, edit_map, map_polarity, node: str):
    """The K = 0 map (paper polarity) or None; refuses exemplars and an edit_map together."""
    if edit_map is None:
        return None
    if exemplars:
        raise ValueError(f"edit_map on {node} is for PIXELS without exemplars (progressive soft inpainting), but "
                         "exemplars are connected too: give each exemplar its map on its PIXELS Exemplar node and "
                         "disconnect edit_map, or disconnect the exemplars")
    masks.as_mask(edit_map, "edit_map")
    return inpaint_map_to_paper(edit_map, map_polarity or INPAINT_POLARITIES[0])


def _map_hint(map_polarity) -> str:
    if (map_polarity or INPAINT_POLARITIES[0]) == INPAINT_POLARITIES[0]:
        return (f", or set map_polarity to '{INPAINT_POLARITIES[1]}' if the mask's white marks the region to change")
    return " (with this map_polarity, white marks the region to change)"


def _final(kept_pixels) -> str:
    if kept_pixels is None:
        return "source"
    session.choice("kept_pixels", kept_pixels, KEPT_OPTIONS)
    return "source" if kept_pixels == KEPT_OPTIONS[0] else "model"


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
                              "Fitted to the latent grid: centre-cropped to the source's aspect ratio (logged when it "
                              "crops), then resized (bilinear, antialiased when shrinking)."),
                io.Combo.Input("map_polarity", options=POLARITIES, default=POLARITIES[0],
                               tooltip="How to read the map: the paper's (white keeps the source) or ComfyUI's inpaint-mask "
                                       "convention (white = the region to change)."),
                io.Custom("PIXELS_EXEMPLARS").Input("previous", optional=True,
                                                    tooltip="Exemplars added before this one (chain nodes for K exemplars). "
                                                            "Where two maps are equally dark, the earlier exemplar wins."),
                io.Float.Input("black_point", default=DEFAULT_BLACK_POINT, min=0.0, max=0.99, step=0.001, optional=True,
                               tooltip=BLACK_POINT_TIP),
            ],
            outputs=[Exemplars.Output(display_name="exemplars")],
        )

    @classmethod
    def execute(cls, exemplar, edit_map, map_polarity, previous=None, black_point=DEFAULT_BLACK_POINT) -> io.NodeOutput:
        masks.as_mask(edit_map, "edit_map")
        bp = DEFAULT_BLACK_POINT if black_point is None else float(black_point)
        if not 0.0 <= bp < 1.0:
            raise ValueError(f"black_point must be in [0, 1), got {black_point}")
        entry = {"image": exemplar, "map": map_to_paper(edit_map, map_polarity), "black_point": bp}
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
                        "and set the start strength with the scheduler's denoise. Without exemplars it is progressive "
                        "soft inpainting (a drop-in for Differential Diffusion): the map comes from edit_map or the "
                        "latent's noise mask, the model fills what the map releases, white-kept pixels end exactly at "
                        "the source.",
            inputs=[
                io.Sampler.Input("sampler", tooltip="The sampler to run (e.g. from KSamplerSelect). Samplers without history "
                                 "between steps (euler, euler_ancestral, ddim, heun, ...; found by a test run, not by "
                                 "name) follow Algorithm 1 exactly; multistep ones (dpmpp_2m, uni_pc, ...) get the "
                                 "pack's own rule, the blend through their denoiser (see the README)."),
                Exemplars.Input("exemplars", optional=True,
                                tooltip="One or more exemplars with maps, from PIXELS Exemplar nodes. Leave unconnected "
                                        "for progressive soft inpainting (edit_map or the latent's noise mask)."),
                io.Vae.Input("vae", optional=True,
                             tooltip="VAE that encodes the exemplar images (the one that encoded the source). "
                                     "Exemplars must already be the source's size here. Not needed without exemplars, "
                                     "except for inpainting checkpoints (SD inpainting, Flux Fill), whose masked "
                                     "image it re-encodes as the release proceeds."),
                *_curve_inputs(),
                _kept_input(),
                *_inpaint_inputs(noise_mask=True),
                _concat_input(),
            ],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, sampler, curve, gamma, exemplars=None, vae=None, kept_pixels=None, edit_map=None,
                map_polarity=None, inpaint_concat=None) -> io.NodeOutput:
        emap = _inpaint_map(exemplars, edit_map, map_polarity, "PIXELS Progressive Sampler")
        if exemplars and vae is None:
            raise ValueError("vae: connect the model's VAE (the one that encoded the source) to encode the exemplars")
        encoded = encode_exemplars(vae, exemplars) if exemplars else []
        return io.NodeOutput(make_sampler(sampler, encoded, curve, gamma, _final(kept_pixels), edit_map=emap,
                                          map_hint=_map_hint(map_polarity), vae=vae,
                                          inpaint_concat=inpaint_concat or INPAINT_CONCAT[0]))


class PixelsProgressiveEdit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsProgressiveEdit",
            display_name="PIXELS Progressive Edit",
            category=CATEGORY,
            description="All-in-one PIXELS edit: encodes the source and exemplars (exemplars are centre-cropped and resized "
                        "to the source), runs the progressive sampler with the host's CFG and decodes the result. "
                        "Without exemplars it is progressive soft inpainting with edit_map (a drop-in for Differential "
                        "Diffusion + KSampler): the model fills what the map releases, white-kept pixels stay exactly "
                        "the source.",
            inputs=[
                io.Model.Input("model", tooltip="Diffusion model (SD1.x, SD2, SDXL, SD3, Flux, ...)."),
                io.Conditioning.Input("positive", tooltip="Prompt. The paper's default is the empty prompt; text adds to the exemplars (multimodal)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt."),
                io.Vae.Input("vae", tooltip="VAE of the model: encodes source and exemplars, decodes the result."),
                io.Image.Input("source", tooltip="The image to edit. White regions of the edit maps keep it."),
                Exemplars.Input("exemplars", optional=True,
                                tooltip="One or more exemplars with maps, from PIXELS Exemplar nodes. Leave unconnected "
                                        "for progressive soft inpainting with edit_map."),
                session.seed_input("Seed of the source's and exemplars' noise draws: same seed, same result."),
                session.steps_input("Steps actually run (the official code runs 40 of 100). More steps give finer "
                                    "grey-level releases.", 40),
                session.cfg_input("Classifier-free guidance, as in KSampler. Raising it follows the prompt more strongly "
                                  "(no effect with an empty prompt; the official code uses 17.5 on the SDXL refiner).", 7.0),
                io.Combo.Input("sampler_name", options=comfy.samplers.SAMPLER_NAMES, default="euler",
                               tooltip="Sampler. Those without history between steps (euler, ddim, euler_ancestral, "
                                       "heun, ...) follow Algorithm 1 exactly; multistep ones get the pack's own rule "
                                       "(README)."),
                session.scheduler_input("Sigma schedule."),
                io.Float.Input("denoise", default=0.4, min=0.01, max=1.0, step=0.01,
                               tooltip="Start strength t_ds (the official code's denoising_start 0.6 = 0.4). Raising it lets "
                                       "the model traverse further from the surgical latent: more realism, less adherence to the exemplar."),
                *_curve_inputs(),
                _kept_input(),
                *_inpaint_inputs(noise_mask=False),
                _concat_input(),
            ],
            outputs=[io.Image.Output(display_name="image"), io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, model, positive, negative, vae, source, seed, steps, cfg, sampler_name, scheduler, denoise, curve,
                gamma, exemplars=None, kept_pixels=None, edit_map=None, map_polarity=None,
                inpaint_concat=None) -> io.NodeOutput:
        emap = _inpaint_map(exemplars, edit_map, map_polarity, "PIXELS Progressive Edit")
        if not exemplars and emap is None:
            raise ValueError("exemplars: connect at least one PIXELS Exemplar, or connect an edit_map for progressive "
                             "soft inpainting (no exemplar)")
        final = _final(kept_pixels)
        check_image(source, "source", vae)
        src = check_latent(model, vae.encode(source[..., :3]), "vae (the source it encodes)")
        encoded = encode_exemplars(vae, exemplars, size=tuple(source.shape[1:3])) if exemplars else []
        record = {}
        sampler = make_sampler(comfy.samplers.sampler_object(sampler_name), encoded, curve, gamma, final, record,
                               edit_map=emap, map_hint=_map_hint(map_polarity), vae=vae, source_pixels=source,
                               inpaint_concat=inpaint_concat or INPAINT_CONCAT[0])
        src = comfy.sample.fix_empty_latent_channels(model, src)
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        samples = session.sample(guider, comfy.sample.prepare_noise(src, seed), src, sampler,
                                 session.schedule(model, scheduler, steps, denoise), seed=seed,
                                 callback=session.preview(model, steps))
        if final == "source" and "kept" in record:  # the source latent itself, past the latent format's round trip
            samples = torch.where(record["kept"].to(samples.device), src.to(samples), samples)
        return io.NodeOutput(decode_frames(vae, samples), {"samples": samples})


class PixelsReleaseSchedule(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="PixelsReleaseSchedule",
            display_name="PIXELS Release Schedule",
            category=CATEGORY,
            is_output_node=True,
            description="Shows when each pixel is released to the denoiser for the composed exemplar maps, as the "
                        "sampler sees them at latent resolution (black points applied): black = released at the first "
                        "step, white = never (kept as source). Also outputs which exemplar fills each pixel at step 0 "
                        "(grey: the source) and a summary of how many latent pixels each exemplar fills. The schedule shows "
                        "on the node itself (no Preview Image node needed). Without exemplars it previews the edit_map "
                        "of progressive soft inpainting (PIXELS with no exemplar).",
            inputs=[
                Exemplars.Input("exemplars", optional=True,
                                tooltip="The exemplars with maps you will sample with. Maps of other sizes are fitted "
                                        "to the first map's size (centre crop, then resize). Leave unconnected to "
                                        "preview an edit_map for progressive soft inpainting."),
                io.Int.Input("steps", default=40, min=1, max=10000, tooltip="Steps actually run (as in the sampler)."),
                *_curve_inputs(),
                io.Int.Input("downscale", default=8, min=1, max=64,
                             tooltip="Pixels per latent cell of the model's VAE (8 for SD/SDXL/SD3/Flux, 16 for Flux.2 "
                                     "and Wan 2.2); ignored when a VAE is connected."),
                io.Vae.Input("vae", optional=True,
                             tooltip="The model's VAE (optional): the latent grid is then the one it encodes to, "
                                     "whatever the family (the downscale widget is ignored)."),
                *_inpaint_inputs(noise_mask=False),
            ],
            outputs=[io.Image.Output(display_name="schedule"), io.Image.Output(display_name="owners"),
                     io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, steps, curve, gamma, downscale, exemplars=None, vae=None, edit_map=None,
                map_polarity=None) -> io.NodeOutput:
        emap = _inpaint_map(exemplars, edit_map, map_polarity, "PIXELS Release Schedule")
        if not exemplars and emap is None:
            raise ValueError("exemplars: connect at least one PIXELS Exemplar, or an edit_map to preview progressive "
                             "soft inpainting (no exemplar)")
        if not exemplars:  # K = 0: the edit_map alone, no black point (as the sampler reads it)
            exemplars = [{"map": emap, "black_point": 0.0}]
        k0 = emap is not None
        checked = [masks.as_mask(e["map"], f"edit_map of exemplar {k + 1}" if not k0 else "edit_map")
                   for k, e in enumerate(exemplars)]
        H, W = checked[0].shape[-2:]
        r = latent_ratio(vae=vae, default=downscale)
        h, w = max(1, H // r), max(1, W // r)
        batches = {m.shape[0] for m in checked} - {1}
        if len(batches) > 1:
            raise ValueError(f"edit maps of the exemplars have batches {sorted(batches)}: give each exemplar one map "
                             "or one per source image (the same batch for all)")
        b = batches.pop() if batches else 1
        maps = [core.prepare_map(m, b, h, w, name=f"edit_map of exemplar {k + 1}",
                                 black_point=exemplars[k].get("black_point", DEFAULT_BLACK_POINT)) for k, m in enumerate(checked)]
        combined, owner = core.compose_maps(maps)
        thr0 = core.threshold(0, steps, curve, gamma)
        sched = core.release_schedule_image(combined, steps, curve, gamma)
        owners = core.owner_image(combined, owner, len(maps), thr0)
        counts = core.exemplar_coverage(combined, owner, len(maps), thr0)
        total = combined[:, 0].numel()
        lines = [f"{w}x{h} latent grid, {steps} steps, curve {curve}, gamma {gamma:g}"]
        if k0:  # no exemplar: the model fills what is released, there is no owner
            owners = torch.full_like(owners, 0.5)
            released = total - int(core.never_released(combined, steps, curve, gamma).sum())
            note = "" if released else "  <- NOTHING TO INPAINT: the map is white or too bright for these steps"
            lines.append(f"no exemplar (progressive soft inpainting): {counts[0]} of {total} latent pixels released at "
                         f"step 0, {released} ({100.0 * released / total:.1f} %) by the last step{note}")
        else:
            for k, c in enumerate(counts):
                note = "" if c else "  <- NO EFFECT: no pixel is black at the first step (paint black or raise black_point)"
                lines.append(f"exemplar {k + 1}: fills {c} of {total} latent pixels ({100.0 * c / total:.1f} %) at "
                             f"step 0{note}")
        kept = int(core.never_released(combined, steps, curve, gamma).sum())
        lines.append(f"kept as source (never released): {kept} of {total} ({100.0 * kept / total:.1f} %)")
        up = lambda t: comfy.utils.common_upscale(t, W, H, "nearest-exact", "disabled").movedim(1, -1)  # noqa: E731
        schedule = up(sched.expand(-1, 3, -1, -1))
        return io.NodeOutput(schedule, up(owners), "\n".join(lines), ui=ui.PreviewImage(schedule, cls=cls))


NODES = [PixelsExemplar, PixelsProgressiveSampler, PixelsProgressiveEdit, PixelsReleaseSchedule]
