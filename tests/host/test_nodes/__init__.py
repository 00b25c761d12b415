"""Test-only ComfyUI nodes for the host tests (linked into ``custom_nodes`` by ``conftest.py``; never part of the pack).

``PixelsTestKnownAnswer`` turns any loaded MODEL into a denoiser whose right answer is known: the exact posterior mean
of a small set of latents (equally likely points), so the real samplers, schedulers, CFG and each family's
``model_sampling`` run around a model whose correct output can be computed. Up to two sets, each chosen per batch row
by the row's text conditioning (nearest of ``cond_a`` / ``cond_b``), so a prompt change has a known target.

With one latent in a set the posterior mean is that latent at every noise level (a model that "predicts X everywhere").
With ``per_cell`` every latent cell is its own posterior over the set's vectors at that cell (the per-pixel finite-set
denoiser of the core tests), so what a sampler does to one region cannot change another's answer.

``PixelsTestMask`` makes a MASK of any constant value, NaN included (ComfyUI's SolidMask cannot), optionally with
another value on the right part of the width, and
``PixelsTestLatentBatch`` stacks latents into one batch (for known sets of several points).
"""
from __future__ import annotations

import torch


def posterior_mean(x: torch.Tensor, sigma: torch.Tensor, points: torch.Tensor, ms,
                   per_cell: bool = False) -> torch.Tensor:
    """Exact E[x0 | x_sigma = x] for x0 uniform over ``points`` (K, ...), noise added as the model family does
    (``ms.noise_scaling``: VE ``x0 + s eps`` or flow ``(1-s) x0 + s eps``). ``x`` (B, ...), ``sigma`` (B,).
    ``per_cell``: every latent cell (its channel vector) on its own, uniform over the K points' vectors there."""
    b = x.shape[0]
    pts = points.to(x.device, torch.float64)
    out = []
    for r in range(b):
        s = sigma[r].to(torch.float64)
        zero = torch.zeros_like(pts)
        mean = ms.noise_scaling(s.reshape(1), zero, pts) if hasattr(ms, "noise_scaling") else pts
        # squared distance of x to each scaled point, over the noise variance s^2
        sq = (x[r].to(torch.float64)[None] - mean) ** 2
        d2 = sq.sum(1, keepdim=True) if per_cell else sq.reshape(pts.shape[0], -1).sum(-1)
        w = torch.softmax(-d2 / (2.0 * s * s), dim=0)
        out.append((w.reshape(*w.shape, *([1] * (pts.ndim - w.ndim))) * pts).sum(0))
    return torch.stack(out).to(x.dtype)


def _feature(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1, t.shape[-1]).to(torch.float64).mean(1) if t.ndim >= 2 else t.reshape(1, -1)


class PixelsTestKnownAnswer:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "set_a": ("LATENT",)},
                "optional": {"cond_a": ("CONDITIONING",), "set_b": ("LATENT",), "cond_b": ("CONDITIONING",),
                             "per_cell": ("BOOLEAN", {"default": False})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "PIXELS/testing"

    def patch(self, model, set_a, cond_a=None, set_b=None, cond_b=None, per_cell=False):
        sets = [set_a["samples"].clone()]
        refs = [None if cond_a is None else _feature(cond_a[0][0])[0]]
        if set_b is not None:
            if cond_a is None or cond_b is None:
                raise ValueError("PixelsTestKnownAnswer: two sets need cond_a and cond_b to tell them apart")
            sets.append(set_b["samples"].clone())
            refs.append(_feature(cond_b[0][0])[0])
        m = model.clone()

        def wrapper(apply_model, args):
            base = apply_model.__self__
            x, sigma, c = args["input"], args["timestep"], args["c"]
            ms = base.model_sampling
            which = torch.zeros(x.shape[0], dtype=torch.long)
            if len(sets) > 1:
                feats = _feature(c["c_crossattn"]).cpu()
                dist = torch.stack([((feats - r[None].cpu()) ** 2).sum(-1) for r in refs], dim=1)
                which = dist.argmin(1)
            out = torch.empty_like(x)
            for k, pts in enumerate(sets):
                rows = (which == k).nonzero().flatten().tolist()
                if not rows:
                    continue
                p = base.process_latent_in(pts.to(x.device, torch.float32))
                out[rows] = posterior_mean(x[rows], sigma[rows], p, ms, per_cell)
            return out

        m.set_model_unet_function_wrapper(wrapper)
        return (m,)


class PixelsTestMask:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"default": "1.0"}), "width": ("INT", {"default": 64, "min": 1}),
                             "height": ("INT", {"default": 64, "min": 1})},
                "optional": {"batch": ("INT", {"default": 1, "min": 1}),
                             "right_value": ("STRING", {"default": ""}),
                             "right_fraction": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0})}}

    RETURN_TYPES = ("MASK",)
    FUNCTION = "make"
    CATEGORY = "PIXELS/testing"

    def make(self, value, width, height, batch=1, right_value="", right_fraction=0.5):
        m = torch.full((batch, height, width), float(value))
        if right_value != "":  # the right part of the width gets another value
            m[..., width - int(round(width * right_fraction)):] = float(right_value)
        return (m,)


class PixelsTestLatentBatch:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("LATENT",)}, "optional": {"b": ("LATENT",), "c": ("LATENT",), "d": ("LATENT",)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "stack"
    CATEGORY = "PIXELS/testing"

    def stack(self, a, b=None, c=None, d=None):
        return ({"samples": torch.cat([t["samples"] for t in (a, b, c, d) if t is not None])},)


NODE_CLASS_MAPPINGS = {"PixelsTestKnownAnswer": PixelsTestKnownAnswer, "PixelsTestMask": PixelsTestMask,
                       "PixelsTestLatentBatch": PixelsTestLatentBatch}


def _load_siblings() -> None:
    """Merge the ``NODE_CLASS_MAPPINGS`` of every other module in this folder (``test_nodes/<topic>.py``)."""
    import importlib
    import pathlib
    for f in sorted(pathlib.Path(__file__).parent.glob("[a-z]*.py")):
        mod = importlib.import_module(f"{__name__}.{f.stem}")
        NODE_CLASS_MAPPINGS.update(getattr(mod, "NODE_CLASS_MAPPINGS", {}))


_load_siblings()
