"""Test-only FlowEdit nodes for the side-by-side host tests (merged into ``pixels-test-nodes`` by ``__init__.py``; never
part of the pack).

FlowEdit: Kulikov, Kleiner, Huberman-Spiegelglas, Michaeli, "FlowEdit: Inversion-Free Text-Based Editing Using
Pre-Trained Flow Models", arXiv:2412.08629, Algorithm 1 with n_avg = 1 and n_min = 0: ``z_edit = x_src``; for each
step t_i of the given sigmas (the first one is n_max): draw fresh noise, ``z_src = (1-t) x_src + t noise``,
``z_tar = z_edit + z_src - x_src``, ``v_delta = v_tar(z_tar) - v_src(z_src)``, ``z_edit += (t_{i+1} - t_i) v_delta``.

``PixelsTestFlowEditGuider`` holds source and target conditioning (each with its CFG); given a batch
``cat([z_src, z_tar])`` it runs the source conds on the first half and the target conds on the second through the
host's own ``comfy.samplers.sampling_function`` (so model wrappers such as the known-answer model apply).
``PixelsTestFlowEditSampler`` is the loop, a KSAMPLER for SamplerCustomAdvanced: give it the schedule from n_max on
(e.g. SplitSigmas) and the source latent as latent_image. The velocity is the host's ODE derivative
``(x - denoised) / sigma``; with the family's own ``noise_scaling`` the same loop also runs on EPS models (VE form
``x0 + sigma noise``), which is how the side-by-side tests run a "FlowEdit-style" loop on SD1.5.
"""
from __future__ import annotations

import torch

import comfy.samplers


class FlowEditGuider(comfy.samplers.CFGGuider):
    """CFG guider on the target conds; a batch of 2b rows is ``[source rows; target rows]``, each half with its side's
    conds and CFG (only meant for the FlowEdit test sampler)."""

    def set_flowedit_conds(self, source_positive, source_negative, target_positive, target_negative, source_cfg,
                           target_cfg):
        self.inner_set_conds({"positive": target_positive, "negative": target_negative,
                              "source_positive": source_positive, "source_negative": source_negative})
        self.set_cfg(target_cfg)
        self.source_cfg = float(source_cfg)

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        if x.shape[0] % 2:
            return super().predict_noise(x, timestep, model_options, seed)
        h = x.shape[0] // 2
        src = comfy.samplers.sampling_function(self.inner_model, x[:h], timestep[:h], self.conds.get("source_negative"),
                                               self.conds.get("source_positive"), self.source_cfg,
                                               model_options=model_options, seed=seed)
        tgt = comfy.samplers.sampling_function(self.inner_model, x[h:], timestep[h:], self.conds.get("negative"),
                                               self.conds.get("positive"), self.cfg, model_options=model_options,
                                               seed=seed)
        return torch.cat([src, tgt])


class PixelsTestFlowEditGuider:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "source_positive": ("CONDITIONING",),
                             "source_negative": ("CONDITIONING",), "target_positive": ("CONDITIONING",),
                             "target_negative": ("CONDITIONING",),
                             "source_cfg": ("FLOAT", {"default": 1.5, "min": 0.0, "max": 100.0, "step": 0.05}),
                             "target_cfg": ("FLOAT", {"default": 5.5, "min": 0.0, "max": 100.0, "step": 0.05})}}

    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "make"
    CATEGORY = "PIXELS/testing"

    def make(self, model, source_positive, source_negative, target_positive, target_negative, source_cfg, target_cfg):
        g = FlowEditGuider(model)
        g.set_flowedit_conds(source_positive, source_negative, target_positive, target_negative, source_cfg,
                             target_cfg)
        return (g,)


def flowedit_sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """Algorithm 1 of arXiv:2412.08629 (n_avg = 1, n_min = 0) over ``sigmas`` (from n_max to 0)."""
    extra_args = dict(extra_args or {})
    extra_args["denoise_mask"] = None
    x_src = model.latent_image.to(x.dtype)
    ms = model.inner_model.inner_model.model_sampling
    gen = torch.Generator().manual_seed(int(extra_args.get("seed") or 0))
    z_edit = x_src.clone()
    for i in range(len(sigmas) - 1):
        t, t_next = sigmas[i], sigmas[i + 1]
        noise = torch.randn(x_src.shape, generator=gen, dtype=torch.float32).to(x_src.device, x_src.dtype)
        z_src = ms.noise_scaling(t.reshape(1), noise, x_src)
        z_tar = z_edit + z_src - x_src
        s_in = t * x_src.new_ones([2 * x_src.shape[0]])
        den = model(torch.cat([z_src, z_tar]), s_in, **extra_args)
        d_src, d_tar = den.chunk(2)
        v_delta = (z_tar - d_tar) / t - (z_src - d_src) / t
        z_edit = z_edit + (t_next - t) * v_delta
        if callback is not None:
            callback({"x": z_edit, "i": i, "sigma": t, "sigma_hat": t, "denoised": d_tar})
    # KSAMPLER.sample maps the result back with inverse_noise_scaling(sigmas[-1]); sigmas end at 0: identity
    return z_edit


class PixelsTestFlowEditSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "make"
    CATEGORY = "PIXELS/testing"

    def make(self):
        return (comfy.samplers.KSAMPLER(flowedit_sample),)


NODE_CLASS_MAPPINGS = {"PixelsTestFlowEditGuider": PixelsTestFlowEditGuider,
                       "PixelsTestFlowEditSampler": PixelsTestFlowEditSampler}
