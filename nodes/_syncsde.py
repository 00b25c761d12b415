"""sync-SDE host side: the guider that runs the source and target predictions of a step in one batched model call
(ComfyUI conds paired row-wise; two host CFG calls only for conds that cannot be batched: different areas, masks,
ControlNets or hooks on the two sides).

The paper: Jianxin Zhang, Clayton Scott, "Semantic Editing with Coupled Stochastic Differential Equations",
arXiv:2509.24223; the maths is in ``pixels_core.syncsde``.
"""
from __future__ import annotations

import logging
import math

import torch

import comfy.conds
import comfy.samplers

from . import _session as session
from ._common import check_latent

# ----------------------------------------------------------------------------------------------
# Pairing ComfyUI conds row-wise so source and target run in one batched model call
# ----------------------------------------------------------------------------------------------

_AREA_KEYS = ("timestep_start", "timestep_end", "area", "strength", "mask", "mask_strength", "hooks", "control",
              "gligen", "default")


class _PairCond:
    """A model cond whose batch of 2h rows is the source cond (h rows) followed by the target cond (h rows)."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def process_cond(self, batch_size, **kwargs):
        h = batch_size // 2
        pa = self.a.process_cond(batch_size=h, **kwargs)
        pb = self.b.process_cond(batch_size=h, **kwargs)
        return pa._copy_with(pa.concat([pb]))


def _same(u, v) -> bool:
    if u is v:
        return True
    if torch.is_tensor(u) or torch.is_tensor(v):
        return torch.is_tensor(u) and torch.is_tensor(v) and u.shape == v.shape and bool(torch.equal(u, v))
    if isinstance(u, (list, tuple)) and isinstance(v, (list, tuple)):
        return len(u) == len(v) and all(_same(x, y) for x, y in zip(u, v))
    if isinstance(u, dict) and isinstance(v, dict):
        return u.keys() == v.keys() and all(_same(u[k], v[k]) for k in u)
    try:
        return bool(u == v)
    except Exception:
        return False


def _pairable(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, comfy.conds.CONDConstant):
        return _same(a.cond, b.cond)
    if isinstance(a, comfy.conds.CONDList):
        return len(a.cond) == len(b.cond) and all(x.shape[1:] == y.shape[1:] for x, y in zip(a.cond, b.cond))
    if isinstance(a, comfy.conds.CONDCrossAttn):
        s1, s2 = a.cond.shape, b.cond.shape
        return (len(s1) == len(s2) == 3 and s1[2] == s2[2]
                and math.lcm(s1[1], s2[1]) // min(s1[1], s2[1]) <= 4)
    if type(a) in (comfy.conds.CONDRegular, comfy.conds.CONDNoiseShape):
        return a.cond.shape[1:] == b.cond.shape[1:]
    return False


def pair_conds(src, tgt):
    """Row-wise pairing of two processed cond lists (entry by entry), or None when they cannot be batched."""
    if src is None or tgt is None or len(src) != len(tgt) or len(src) == 0:
        return None
    out = []
    for a, b in zip(src, tgt):
        if any(k in a or k in b for k in ("hooks", "default", "gligen")):
            return None
        if not all(_same(a.get(k), b.get(k)) for k in _AREA_KEYS):
            return None
        ma, mb = a.get("model_conds", {}), b.get("model_conds", {})
        if ma.keys() != mb.keys() or not all(_pairable(ma[k], mb[k]) for k in ma):
            return None
        entry = dict(a)
        entry["model_conds"] = {k: _PairCond(ma[k], mb[k]) for k in ma}
        out.append(entry)
    return out


def _cond_batch(cond) -> int:
    t = cond[0][0] if cond and cond[0] else None
    return int(t.shape[0]) if torch.is_tensor(t) and t.ndim > 0 else 1


class SyncSDEGuider(session.BranchGuider):
    """GUIDER for the sync-SDE sampler, with a ``source`` and a ``target`` branch (each its own CFG). Given the
    stacked states ``cat([X_src, X_tgt])`` it returns both predictions stacked the same way, from ONE batched model
    call where the conds pair up row-wise; given a plain batch (another sampler) it is a CFG guider on the target."""

    is_syncsde_guider = True

    def set_sync_conds(self, source_positive, source_negative, target_positive, target_negative, source_cfg: float,
                       target_cfg: float):
        self.raw_conds = {"source_positive": source_positive, "source_negative": source_negative,
                          "target_positive": target_positive, "target_negative": target_negative}
        self.set_branches("target", {"target": (target_positive, target_negative, None),
                                     "source": (source_positive, source_negative, float(source_cfg))}, target_cfg)
        self.source_cfg, self.target_cfg = float(source_cfg), float(target_cfg)
        self.identical = (_same(source_positive, target_positive) and _same(source_negative, target_negative)
                          and math.isclose(self.source_cfg, self.target_cfg))
        self._paired_for = None

    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
               seed=None):
        b = int(latent_image.shape[0])
        for name, cond in self.raw_conds.items():
            cb = _cond_batch(cond)
            if cb not in (1, b):
                raise ValueError(f"{name} has batch {cb} but the latent has batch {b}: give one prompt, or one "
                                 f"conditioning per latent image (batch {b})")
        self.latent_batch = b
        check_latent(self.model_patcher, latent_image, "latent_image")
        return super().sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)

    def _paired(self):
        if self._paired_for is not self.conds:
            self._paired_for = self.conds
            (sp, sn), (tp, tn) = self.branch("source"), self.branch("target")
            self.paired = (pair_conds(sp, tp), pair_conds(sn, tn))
            if self.paired[0] is None or self.paired[1] is None:
                logging.info("PIXELS sync-SDE: source and target conds differ in area/mask/ControlNet/hooks; "
                             "running them as two CFG calls per step")
        return self.paired

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        b = getattr(self, "latent_batch", x.shape[0])
        if x.shape[0] != 2 * b:  # used by an ordinary sampler: plain CFG on the target prompt
            return self.predict_branch("target", x, timestep, model_options, seed)
        xs, xt, ts, tt = x[:b], x[b:], timestep[:b], timestep[b:]
        if self.identical:  # D stays exactly 0: one half suffices
            out = self.predict_branch("source", xs, ts, model_options, seed)
            return torch.cat([out, out])
        pos, neg = self._paired()
        custom = any(k in model_options for k in ("sampler_calc_cond_batch_function", "sampler_pre_cfg_function",
                                                  "context_handler"))
        if pos is None or neg is None or custom:
            return torch.cat([self.predict_branch("source", xs, ts, model_options, seed),
                              self.predict_branch("target", xt, tt, model_options, seed)])
        use_neg = model_options.get("disable_cfg1_optimization", False) or not (
            math.isclose(self.source_cfg, 1.0) and math.isclose(self.target_cfg, 1.0))
        cp, cn = comfy.samplers.calc_cond_batch(self.inner_model, [pos, neg if use_neg else None], x, timestep,
                                                model_options)
        (sp, sn), (tp, tn) = self.branch("source"), self.branch("target")
        src = comfy.samplers.cfg_function(self.inner_model, cp[:b], cn[:b], self.source_cfg, xs, ts, model_options,
                                          cond=sp, uncond=sn if use_neg else None)
        tgt = comfy.samplers.cfg_function(self.inner_model, cp[b:], cn[b:], self.target_cfg, xt, tt, model_options,
                                          cond=tp, uncond=tn if use_neg else None)
        return torch.cat([src, tgt])


def make_guider(model, source_positive, source_negative, target_positive, target_negative, source_cfg, target_cfg):
    guider = SyncSDEGuider(model)
    guider.set_sync_conds(source_positive, source_negative, target_positive, target_negative, source_cfg, target_cfg)
    return guider
