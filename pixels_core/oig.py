"""OIG: Lee, Kang, Han, "Diffusion-Based Conditional Image Editing through Optimized Inference with Guidance",
WACV 2025 (authors' code Hleephilip/OIG, built on pix2pix-zero).

Text-driven image-to-image editing. From one starting latent x_T (a DDIM inversion of the source image, or
noise for a generated source) two deterministic DDIM passes run:

1. the *source pass* (no gradients) with the source prompt, caching the UNet's ResBlock features per step;
2. the *target pass* with the target prompt (the negative being the source prompt in the authors' runs), where
   every step is ``x <- DDIM_step(x) - eta_i * grad_x L`` with the representation-guidance loss
   ``L = lambda1 * L_clip + lambda2 * L_struct`` (authors' defaults lambda1 = 0.1, lambda2 = 1.0):

   - ``L_clip = max(0, cos(e, T_src) - cos(e, T_tgt) + beta_p)``, beta_p = 0.5: a hinge triplet in CLIP space;
     e is the CLIP image embedding of the VAE-decoded predicted x0 (with gradients), T the CLIP text embeddings;
   - ``L_struct = sum_l max(0, beta_f * MSE(F_tgt,t, F_src,t) - MSE(F_tgt,t, F_tgt,t+1))``, beta_f = 2.5 (a weight,
     not a margin): positive = the source pass's features at the same step, negative = the target's own features of
     the previous (noisier) step, detached; the first step has no negative (``beta_f * MSE`` alone).

The authors start real-image edits from pix2pix-zero's DDIM inversion of the source (guidance 1, source prompt);
``sample_oig(..., invert=True)`` does it here with :func:`pixels_core.ddim.ddim_invert` (``inversion="authors"``,
the default, or the pack's ``"exact"`` one). Their gradient is taken with respect to the
*first copy* of the CFG-doubled latent only (``_x_tgt.grad.chunk(2)[0]``: the negative/unconditional branch,
including the ``x`` in ``x0 = (x - sqrt(1-a) eps) / sqrt(a)``); :func:`negative_branch_only` reproduces that inside
a host's batched model call, and ``grad_extra_args`` carries it to the model.

Everything host-specific comes in as callables (k-diffusion convention, as ComfyUI uses it):
``model(x, sigma, **extra_args) -> x0``, ``decode(x0 latent) -> image in [0, 1] (B, 3, H, W)``,
``embed_image(image) -> (B, D)`` and ``features() -> list of per-layer tensors recorded since the last call``
(:class:`FeatureTaps` records them with forward hooks). Only VP diffusion models (SD1.x, SD2, SDXL) are in scope:
the step sizes are the authors' and act on the VP latent, so they are carried into k-diffusion's
``x = x0 + sigma * eps`` form exactly (:func:`vp_gradient_scale`).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .ddim import ddim_invert, ddim_step
from .parameterization import EPS
from .schedule import check_sigmas

LAMBDA_CLIP = 0.1
LAMBDA_STRUCT = 1.0
BETA_P = 0.5
BETA_F = 2.5
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ----------------------------------------------------------------------------------------------
# Step sizes
# ----------------------------------------------------------------------------------------------

def step_size(i: int, n: int) -> float:
    """The authors' eta_i for loop index ``i`` of ``n`` DDIM steps (their ``get_lr``).

    ``2 (i+1) / (n//10)`` while ``i + 1 < n//10`` (a linear warm-up over the first tenth), then ``2 * 1.05^-(i+1)``.
    """
    if n <= 0:
        raise ValueError(f"step_size: the schedule needs at least one step, got n={n}")
    if not 0 <= i < n:
        raise ValueError(f"step_size: step index {i} is outside 0..{n - 1}")
    warm = n // 10
    if i + 1 < warm:
        return 2.0 * (i + 1) / warm
    return 2.0 * 1.05 ** -(i + 1)


def step_sizes(n: int) -> list[float]:
    """eta applied to each of the ``n`` DDIM steps, as the authors' code applies them.

    Their target loop performs step k (from t_k) at loop index k + 1 and the last two steps both at index n - 1,
    so step k uses ``step_size(min(k + 1, n - 1), n)``; with one step it is ``step_size(0, 1)``.
    """
    if n <= 0:
        raise ValueError(f"step_sizes: the schedule needs at least one step, got n={n}")
    return [step_size(min(k + 1, n - 1), n) for k in range(n)]


def vp_gradient_scale(sigma, sigma_next) -> float:
    """Factor that carries ``x_vp <- DDIM(x_vp) - eta * grad_{x_vp} L`` into k-diffusion's ``x = x_vp * sqrt(1 + sigma^2)``.

    With ``x = x_vp / sqrt(abar)``, ``abar = 1 / (1 + sigma^2)``: ``x' = DDIM(x) - eta * sqrt(1+sigma'^2) sqrt(1+sigma^2) grad_x L``.
    """
    s, sn = float(sigma), float(sigma_next)
    return math.sqrt(1.0 + s * s) * math.sqrt(1.0 + sn * sn)


# ----------------------------------------------------------------------------------------------
# Losses (pure functions; per-sample vectors so that a batch of B behaves as B independent edits)
# ----------------------------------------------------------------------------------------------

def _embeds(t: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.is_tensor(t):
        raise ValueError(f"{name}: expected a tensor of CLIP embeddings, got {type(t).__name__}")
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or t.shape[-1] == 0:
        raise ValueError(f"{name}: expected CLIP embeddings shaped (D,) or (B, D), got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values: check the CLIP model that produced it")
    return t


def clip_triplet_loss(image_emb: torch.Tensor, text_src: torch.Tensor, text_tgt: torch.Tensor,
                      beta_p: float = BETA_P) -> torch.Tensor:
    """OIG's CLIP hinge triplet, per sample: ``max(0, cos(e, T_src) - cos(e, T_tgt) + beta_p)`` (the paper's CLIP loss).

    ``image_emb`` (B, D); ``text_src``/``text_tgt`` (D,), (1, D) or (B, D). Returns (B,).
    """
    e = _embeds(image_emb, "image embedding")
    ts, tt = _embeds(text_src, "source text embedding"), _embeds(text_tgt, "target text embedding")
    for name, t in (("source text embedding", ts), ("target text embedding", tt)):
        if t.shape[-1] != e.shape[-1]:
            raise ValueError(f"{name} has {t.shape[-1]} values but the CLIP image embedding has {e.shape[-1]}: "
                             "the CLIP vision model must share its embedding space with the text encoder "
                             "(ViT-L/14 for CLIP-L, ViT-H/14 for CLIP-H, ViT-bigG/14 for CLIP-G)")
        if t.shape[0] not in (1, e.shape[0]):
            raise ValueError(f"{name} has batch {t.shape[0]} but the image batch is {e.shape[0]}: give one or one per image")
    e = e.float()
    cs = F.cosine_similarity(e, ts.to(e), dim=-1)
    ct = F.cosine_similarity(e, tt.to(e), dim=-1)
    return torch.relu(cs - ct + float(beta_p))


def _per_sample_mse(a: torch.Tensor, b: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    """Mean squared difference per sample. Rows are branch-major ``(k, B)`` (k CFG branches of B samples, as a
    host batches them); a side with one branch is compared with every branch of the other."""
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"{what}: feature shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}: the source and target "
                         "passes must run the same model at the same size")
    if a.shape[0] % batch or b.shape[0] % batch:
        raise ValueError(f"{what}: {a.shape[0]} and {b.shape[0]} feature rows do not split into batches of {batch}")
    ka, kb = a.shape[0] // batch, b.shape[0] // batch
    if ka != kb and 1 not in (ka, kb):
        raise ValueError(f"{what}: {ka} and {kb} conditioning branches cannot be paired")
    a = a.float().reshape(ka, batch, -1)
    b = b.float().reshape(kb, batch, -1)
    return ((a - b) ** 2).mean(dim=(0, 2))


def feature_triplet_loss(f_tgt: Sequence[torch.Tensor], f_src: Sequence[torch.Tensor],
                         f_prev: Sequence[torch.Tensor] | None, beta_f: float = BETA_F, batch: int = 1) -> torch.Tensor:
    """OIG's structural triplet, per sample: ``sum_l max(0, beta_f MSE(F_tgt, F_src) - MSE(F_tgt, F_prev))``.

    ``f_prev=None`` (first step: no negative) gives ``sum_l beta_f MSE(F_tgt, F_src)``, as the authors' code does.
    Each list holds one tensor per tapped layer, rows ``(branches * batch, C, H, W)``. Returns (batch,).
    """
    if len(f_tgt) == 0:
        raise ValueError("feature_triplet_loss: no target features (the feature taps recorded nothing)")
    if len(f_src) != len(f_tgt) or (f_prev is not None and len(f_prev) != len(f_tgt)):
        raise ValueError(f"feature_triplet_loss: {len(f_tgt)} target layers but {len(f_src)} source layers"
                         + ("" if f_prev is None else f" and {len(f_prev)} previous-step layers"))
    total = None
    for layer, ft in enumerate(f_tgt):
        pos = _per_sample_mse(ft, f_src[layer], batch, f"layer {layer} (source)")
        if f_prev is None:
            term = float(beta_f) * pos
        else:
            neg = _per_sample_mse(ft, f_prev[layer].detach(), batch, f"layer {layer} (previous step)")
            term = torch.relu(float(beta_f) * pos - neg)
        total = term if total is None else total + term
    return total


def guidance_loss(clip_term: torch.Tensor | None, struct_term: torch.Tensor | None,
                  clip_weight: float = LAMBDA_CLIP, struct_weight: float = LAMBDA_STRUCT) -> torch.Tensor:
    """The representation-guidance loss ``lambda1 L_clip + lambda2 L_struct`` (per sample)."""
    terms = [w * t for w, t in ((clip_weight, clip_term), (struct_weight, struct_term)) if t is not None]
    if not terms:
        raise ValueError("guidance_loss: neither a CLIP nor a structure term was given")
    return sum(terms[1:], terms[0])


# ----------------------------------------------------------------------------------------------
# Image side of the CLIP term
# ----------------------------------------------------------------------------------------------

def clip_preprocess(image: torch.Tensor, size: int = 224, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """Differentiable CLIP preprocessing of ``image`` (B, 3, H, W) in [0, 1]: shorter side to ``size`` (bicubic,
    antialiased), centre crop ``size x size``, normalise. No clamping or rounding, so gradients pass everywhere."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"decoded image: expected (B, 3, H, W), got {tuple(image.shape)}")
    h, w = image.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        image = F.interpolate(image, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        top, left = (nh - size) // 2, (nw - size) // 2
        image = image[:, :, top:top + size, left:left + size]
    m = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image - m) / s


def latent_for_clip(x0: torch.Tensor, latent_size: int | None) -> torch.Tensor:
    """The cheaper CLIP-term decode (beyond the paper): shrink the predicted latent so its shorter side is
    ``latent_size`` (e.g. 28 = 224 px / 8) before decoding; ``None`` or a larger size keeps it (the authors' full decode)."""
    if latent_size is None:
        return x0
    h, w = x0.shape[-2:]
    if min(h, w) <= latent_size:
        return x0
    scale = latent_size / min(h, w)
    size = (max(latent_size, round(h * scale)), max(latent_size, round(w * scale)))
    return F.interpolate(x0, size=size, mode="bilinear", align_corners=False, antialias=True)


def clip_term_gradient(x0: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor],
                       embed_image: Callable[[torch.Tensor], torch.Tensor], text_src: torch.Tensor,
                       text_tgt: torch.Tensor, beta_p: float = BETA_P,
                       clip_latent_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d L_clip / d x0, L_clip)`` per sample at the predicted latent ``x0``, through the decoder ``decode``.

    The CLIP term of :func:`sample_oig` on its own (same shrink, decode, embedding and hinge), to compare decoders:
    the full VAE decoder (the paper) against a cheaper one such as ComfyUI's TAESD preview decoder (beyond the paper).
    An inactive hinge gives a zero gradient."""
    with torch.enable_grad():
        z = x0.detach().clone().requires_grad_(True)
        loss = clip_triplet_loss(embed_image(decode(latent_for_clip(z, clip_latent_size))), text_src, text_tgt, beta_p)
        grad = torch.autograd.grad(loss.sum(), z, allow_unused=True)[0] if loss.requires_grad else None
    return (torch.zeros_like(z) if grad is None else grad.detach()), loss.detach()


def direction_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample cosine between two guidance directions (e.g. :func:`clip_term_gradient` through two decoders):
    1 = the same direction. A zero direction on either side gives 0."""
    if a.shape != b.shape:
        raise ValueError(f"direction_cosine: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    return F.cosine_similarity(a.detach().flatten(1).double(), b.detach().flatten(1).double(), dim=1, eps=1e-30)


# ----------------------------------------------------------------------------------------------
# Feature taps
# ----------------------------------------------------------------------------------------------

class FeatureTaps:
    """Forward hooks that record the outputs of ``modules`` (one layer each) while active.

    Calling the object returns one tensor per layer (the outputs of every call since the last read, concatenated
    along the batch in call order, so a host that runs the CFG branches in separate calls still gives ``(k*B, ...)``)
    and clears the record. Use as a context manager, or call :meth:`remove` in ``finally``.
    """

    def __init__(self, modules: Sequence[torch.nn.Module]):
        self.modules = list(modules)
        if not self.modules:
            raise ValueError("FeatureTaps: no modules to tap")
        self._store: list[list[torch.Tensor]] = [[] for _ in self.modules]
        self._handles = [m.register_forward_hook(self._hook(k)) for k, m in enumerate(self.modules)]

    def _hook(self, k):
        def hook(_module, _inputs, output):
            self._store[k].append(output)
        return hook

    def __call__(self) -> list[torch.Tensor]:
        recorded = self._store
        self._store = [[] for _ in self.modules]
        if not any(recorded):
            return []
        missing = [k for k, r in enumerate(recorded) if not r]
        if missing:
            raise RuntimeError(f"FeatureTaps: layers {missing} recorded nothing while others did")
        return [r[0] if len(r) == 1 else torch.cat(r, dim=0) for r in recorded]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._store = [[] for _ in self.modules]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


# ----------------------------------------------------------------------------------------------
# The two-pass sampler
# ----------------------------------------------------------------------------------------------

def _check_weights(**weights) -> None:
    for name, v in weights.items():
        if not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")


def negative_branch_only(run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                         negative_rows: Sequence[bool],
                         run_chunks: Callable[[torch.Tensor, list[int]], torch.Tensor] | None = None) -> torch.Tensor:
    """The authors' gradient inside one batched CFG model call: ``run(x) -> x0`` on rows ``(k, B)`` branch-major.

    Rows of the positive branches see a detached input, so no gradient passes through their network; their ``x0``
    gets ``x - x.detach()`` added (value unchanged, Jacobian identity), because the authors' ``x0_hat`` uses the
    first (negative) copy's ``x`` for the combined noise. With CFG scale w this gives
    ``d x0_cfg / dx = I - sigma (1 - w) J_neg``, exactly the gradient of their ``_x_tgt.grad.chunk(2)[0]``.
    A call holding only positive rows (a host that runs the branches separately) gets the detached treatment too.
    Without CFG (scale 1, no negative branch at all) the authors take the full gradient: do not use this then.

    ``run_chunks(x_sub, chunk_indices) -> x0_sub`` (optional) runs a subset of the k chunks: then the positive
    chunks run in their own call without autograd and only the negative chunks are recorded, so the backward pass
    covers half the batch (same values and gradient, less time and memory; beyond the authors' code).
    """
    k = len(negative_rows)
    if k == 0 or x.shape[0] % k:
        raise ValueError(f"negative_branch_only: {x.shape[0]} rows do not split into {k} branches")
    if not x.requires_grad or all(negative_rows):
        return run(x)
    chunks = x.chunk(k)
    straight = [torch.zeros_like(c) if neg else c - c.detach() for c, neg in zip(chunks, negative_rows)]
    neg_idx = [j for j, neg in enumerate(negative_rows) if neg]
    if run_chunks is None or not neg_idx:
        out = run(torch.cat([c if neg else c.detach() for c, neg in zip(chunks, negative_rows)]))
        return out + torch.cat(straight).to(out.dtype)
    pos_idx = [j for j, neg in enumerate(negative_rows) if not neg]
    with torch.no_grad():
        out_pos = run_chunks(torch.cat([chunks[j].detach() for j in pos_idx]), pos_idx).chunk(len(pos_idx))
    out_neg = run_chunks(torch.cat([chunks[j] for j in neg_idx]), neg_idx).chunk(len(neg_idx))
    by_chunk = dict(zip(pos_idx, out_pos)) | dict(zip(neg_idx, out_neg))
    out = torch.cat([by_chunk[j] for j in range(k)])
    return out + torch.cat(straight).to(out.dtype)


def sample_oig(model, x, sigmas, extra_args=None, callback=None, disable=None, *,
               decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
               embed_image: Callable[[torch.Tensor], torch.Tensor] | None = None,
               text_src: torch.Tensor | None = None, text_tgt: torch.Tensor | None = None,
               features: Callable[[], list[torch.Tensor]] | None = None,
               source_extra_args: dict | None = None,
               clip_weight: float = LAMBDA_CLIP, struct_weight: float = LAMBDA_STRUCT,
               beta_p: float = BETA_P, beta_f: float = BETA_F, step_scale: float = 1.0,
               clip_latent_size: int | None = None, cache_device=None, source_callback=None,
               invert: bool = False, invert_callback=None, grad_extra_args: dict | None = None,
               inversion: str = "authors", inversion_refine: int = 2, train_sigmas=None):
    """OIG two-pass sampling: a source pass caching features, then the target pass ``x <- DDIM(x) - eta_i grad L``.

    ``x`` is the starting latent x_T (k-diffusion scale); both passes start from it. ``extra_args`` drive the
    target pass (the host's CFG with the target prompt), ``source_extra_args`` the source pass (default: the same).
    With ``clip_weight = struct_weight = 0`` this is plain DDIM/Euler sampling with ``model`` and the source pass is
    skipped. ``callback`` gets the target pass's steps (k-diffusion keys plus ``"loss"``), ``source_callback`` the
    source pass's. ``decode`` is any differentiable decoder of the predicted latent: the model's VAE decoder (the
    paper) or a cheaper stand-in such as ComfyUI's TAESD preview decoder (beyond the paper; compare them with
    :func:`clip_term_gradient`). ``clip_latent_size`` enables the cheaper CLIP decode (:func:`latent_for_clip`);
    ``cache_device`` is where the source features wait for their step (the authors keep them on the CPU).
    ``invert=True``: ``x`` is the clean source latent; it is first DDIM-inverted with ``source_extra_args``
    (guidance 1 as the authors' inversion) and both passes start from the result. ``inversion`` picks how
    (:func:`pixels_core.ddim.ddim_invert`): ``"authors"`` (default) is pix2pix-zero's as OIG ships it, N - 2 steps
    from the clean latent taken as the state at the second-lowest sigma, alphas read one training timestep back when
    ``train_sigmas`` (the model's discrete sigma table, ComfyUI's ``model_sampling.sigmas``) is given; ``"exact"`` is
    the pack's N-step inverse of this sampler, refined by ``inversion_refine`` fixed-point iterations per step
    (default 2, each one more model call per step; ignored by ``"authors"``) so that regenerating with the source
    prompt returns the source (``docs/oig_inversion_error.py``: about 100x closer than either plain inversion).
    ``grad_extra_args`` (default ``extra_args``) drive the target pass's model call when a gradient is taken (the
    node puts :func:`negative_branch_only` there to reproduce the authors' gradient).
    """
    extra_args = {} if extra_args is None else extra_args
    source_extra_args = extra_args if source_extra_args is None else source_extra_args
    grad_extra_args = extra_args if grad_extra_args is None else grad_extra_args
    sigmas = check_sigmas(sigmas, method="OIG")
    if inversion not in ("authors", "exact"):
        raise ValueError(f"inversion must be 'authors' or 'exact', got {inversion!r}")
    if int(inversion_refine) < 0:
        raise ValueError(f"inversion_refine must be >= 0, got {inversion_refine}")
    _check_weights(clip_weight=clip_weight, struct_weight=struct_weight, beta_p=beta_p, beta_f=beta_f,
                   step_scale=step_scale)
    if not torch.is_tensor(x) or x.ndim < 2:
        raise ValueError("x: expected a batched latent tensor")
    if not torch.isfinite(x).all():
        raise ValueError("the starting latent contains NaN or infinite values: check the inversion or noise that made it")
    use_clip, use_struct = clip_weight > 0, struct_weight > 0
    if use_clip:
        missing = [n for n, v in (("decode", decode), ("embed_image", embed_image), ("text_src", text_src),
                                  ("text_tgt", text_tgt)) if v is None]
        if missing:
            raise ValueError(f"clip_weight > 0 needs {', '.join(missing)} (VAE decode, CLIP image and text embeddings); "
                             "give them or set clip_weight to 0")
        text_src = _embeds(text_src, "source text embedding").detach()
        text_tgt = _embeds(text_tgt, "target text embedding").detach()
    if use_struct and features is None:
        raise ValueError("struct_weight > 0 needs the feature taps (features); give them or set struct_weight to 0")

    if invert:
        with torch.no_grad():
            x = ddim_invert(model, x, sigmas, source_extra_args, invert_callback, convention=inversion,
                            fixed_point_iters=int(inversion_refine) if inversion == "exact" else 0,
                            train_sigmas=train_sigmas)[0]
        if not torch.isfinite(x).all():
            raise ValueError("the DDIM inversion of the source latent gave NaN or infinite values")

    n = len(sigmas) - 1
    b = x.shape[0]
    s_in = x.new_ones([b])
    etas = [e * float(step_scale) for e in step_sizes(n)]

    def read_features():
        return features() if features is not None else []

    # Pass 1: the source trajectory, no gradients, caching the ResBlock features of every step.
    cached: list[list[torch.Tensor] | None] = []
    if use_struct:
        xs = x
        with torch.no_grad():
            for i in range(n):
                read_features()  # drop anything recorded outside our calls
                d = model(xs, sigmas[i] * s_in, **source_extra_args)
                f = read_features()
                if not f:
                    raise ValueError("features: the taps recorded nothing during the source pass; they must hook "
                                     "modules that the model runs")
                cached.append([t.detach().to(cache_device) if cache_device is not None else t.detach() for t in f])
                if source_callback is not None:
                    source_callback({"x": xs, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": d})
                xs = ddim_step(d, EPS.eps(xs, sigmas[i], d), sigmas[i + 1])
        del xs

    # Pass 2: the guided target trajectory.
    prev = None
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        loss_value = None
        grad = None
        if not (use_clip or use_struct):
            with torch.no_grad():
                d = model(x, s * s_in, **extra_args)
            read_features()
        else:
            with torch.enable_grad():
                xg = x.detach().clone().requires_grad_(True)
                read_features()
                d = model(xg, s * s_in, **grad_extra_args)
                f = read_features()
                struct_term = clip_term = None
                if use_struct:
                    src = [t.to(f[0].device) for t in cached[i]] if f else []
                    struct_term = feature_triplet_loss(f, src, prev, beta_f, b)
                    prev = [t.detach() for t in f]
                    cached[i] = None
                if use_clip:
                    img = decode(latent_for_clip(d, clip_latent_size))
                    clip_term = clip_triplet_loss(embed_image(img), text_src, text_tgt, beta_p)
                loss = guidance_loss(clip_term, struct_term, clip_weight, struct_weight)
                if loss.requires_grad:
                    (grad,) = torch.autograd.grad(loss.sum(), xg, allow_unused=True)
                loss_value = loss.detach()
                del f, loss, clip_term, struct_term, xg
            d = d.detach()
        if callback is not None:
            callback({"x": x, "i": i, "sigma": s, "sigma_hat": s, "denoised": d, "loss": loss_value})
        x_next = ddim_step(d, EPS.eps(x, s, d), s_next)
        if grad is not None:
            if not torch.isfinite(grad).all():
                raise ValueError(f"the OIG gradient at step {i} is not finite: lower step_scale or the loss weights")
            x_next = x_next - (etas[i] * vp_gradient_scale(s, s_next)) * grad.to(x_next.dtype)
        x = x_next.detach()
    return x
