"""PIXELS: Shristi Das Biswas, Matthew Shreve, Xuelu Li, Prateek Singhal, Kaushik Roy, "PIXELS: Progressive Image
Xemplar-based Editing with Latent Surgery", AAAI 2025, arXiv:2501.09826 (code: amazon-science/PIXELS). Algorithm 1:
progressive exemplar-driven editing with per-pixel release.

Polarity is the paper's: an edit map value of 1 (white) keeps the source, 0 (black) takes the
exemplar, grey sets *when* a pixel is released to the denoiser (darker = earlier = more change).

With no exemplar (K = 0) the same loop is progressive soft inpainting: the denoiser fills the released pixels, the
held ones are re-inserted as the noised source (Algorithm 1, line 15), never-released ones end at the source.
"""
from __future__ import annotations

import inspect
import logging
import math
import warnings

import torch

from . import masks
from .parameterization import get as _param
from .schedule import check_sigmas

CURVES = ("linear", "quadratic", "cubic", "log", "sigmoid")
FINALS = ("source", "model")
log = logging.getLogger("pixels")


def threshold(i: int, n: int, curve: str = "linear", gamma: float = 1.0) -> float:
    """Release threshold ``thr_i`` at step ``i`` of ``n`` (Algorithm 1 uses ``i/N``: the linear curve).

    Curves carried (commented) in the official code: quadratic ``(i/N)^2``, cubic ``(i/N)^3``
    (more adherence), log ``log1p(i)/log1p(N)`` (more hallucination), sigmoid ``sigmoid(6 i/N - 3)``.
    ``gamma`` is applied last, ``thr ** gamma``: above 1 lowers the thresholds, so each grey pixel is
    released later (more of the source kept); below 1 releases earlier (more change).
    """
    if n <= 0:
        raise ValueError("threshold: the schedule needs at least one step")
    if gamma <= 0:
        raise ValueError(f"threshold: gamma must be > 0, got {gamma}")
    t = i / n
    if curve == "linear":
        v = t
    elif curve == "quadratic":
        v = t * t
    elif curve == "cubic":
        v = t ** 3
    elif curve == "log":
        v = math.log1p(i) / math.log1p(n)
    elif curve == "sigmoid":
        v = 1.0 / (1.0 + math.exp(-(6.0 * t - 3.0)))
    else:
        raise ValueError(f"unknown threshold curve {curve!r}; choose one of {', '.join(CURVES)}")
    return v ** gamma


def thresholds(n: int, curve: str = "linear", gamma: float = 1.0) -> torch.Tensor:
    """All ``n`` thresholds ``thr_0 .. thr_{n-1}`` as a float64 tensor."""
    return torch.tensor([threshold(i, n, curve, gamma) for i in range(n)], dtype=torch.float64)


def release_step(edit_map: torch.Tensor, n: int, curve: str = "linear", gamma: float = 1.0) -> torch.Tensor:
    """Step index at which each pixel is released to the denoiser (``n`` = never: kept as source).

    A pixel is held while ``map > thr_i`` (strict, Algorithm 1), so it is released at the first step
    ``i`` with ``map <= thr_i``. Returns a long tensor shaped like ``edit_map``.
    """
    thr = thresholds(n, curve, gamma).to(edit_map.device)
    held = edit_map.double().unsqueeze(-1) > thr  # (..., n)
    # held is monotone non-increasing in i for non-decreasing curves: count held steps
    return held.sum(-1)


# ----------------------------------------------------------------------------------------------
# Edit maps and exemplars
# ----------------------------------------------------------------------------------------------

def prepare_map(edit_map: torch.Tensor, batch: int, h: int, w: int, name: str = "edit_map",
                black_point: float = 0.0) -> torch.Tensor:
    """Validate an edit map and bring it to ``(batch or 1, 1, h, w)`` on the latent grid (the pack's resize rule,
    :func:`pixels_core.masks.fit`: centre crop to the aspect ratio, then bilinear, antialiased when shrinking).

    Accepts ``(H, W)``, ``(B, H, W)`` (ComfyUI MASK) or ``(B, 1, H, W)``; values must lie in [0, 1].
    ``black_point``: values at or below it count as 0 (black) on the latent grid, so a dark region whose edge the
    resize softened, or a near-black paint, still takes the exemplar (Algorithm 1 fills only where the map is 0).
    """
    bp = float(black_point)
    if not 0.0 <= bp < 1.0:
        raise ValueError(f"black_point of {name} must be in [0, 1), got {black_point}")
    m = masks.to_grid(edit_map, batch, h, w, name)
    return torch.where(m <= bp, torch.zeros_like(m), m) if bp > 0 else m


def compose_maps(maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Composition rule for K exemplars: ``combined = min_k map_k``, ``owner = argmin_k map_k``.

    A pixel stays with the source until the *earliest* release any exemplar asks for, and at step 0
    the pixels whose combined map is 0 are filled from the exemplar that owns them (the first wired
    exemplar wins ties). With K = 1 this is exactly Algorithm 1; the per-step cost uses only the
    combined map, so it does not grow with K.
    """
    if len(maps) == 0:
        raise ValueError("PIXELS needs at least one exemplar with its edit map (K = 0 given)")
    shape = torch.broadcast_shapes(*[m.shape for m in maps])
    stack = torch.stack([m.expand(shape) for m in maps])  # (K, B, 1, h, w)
    combined, owner = stack.min(dim=0)
    return combined, owner


def check_releases(combined: torch.Tensor, n: int, curve: str, gamma: float, name: str | None = None,
                   hint: str = "") -> None:
    """Clear errors for maps that would edit nothing. ``name``: the input the map came from, given for K = 0
    (progressive soft inpainting), where the message speaks of inpainting instead of exemplars; ``hint``: what to do,
    appended to the all-white message (e.g. how to flip that input's polarity)."""
    steps = release_step(combined, n, curve, gamma)
    if bool((combined >= 1.0).all()):
        if name is not None:
            raise ValueError(f"{name} is all white in the paper's polarity (white keeps the source), so there is "
                             f"nothing to inpaint. Paint the region to change darker{hint}")
        raise ValueError("edit map is all white: white keeps the source, so nothing would change. "
                         "Paint darker regions where the exemplar should come in (or flip map_polarity)")
    if bool((steps >= n).all()):
        raise ValueError(f"{name or 'edit map'} is too bright for {n} steps: no pixel is ever released "
                         f"(the highest threshold is {threshold(n - 1, n, curve, gamma):.3f}). "
                         "Darken the map, use more steps or another curve")


def exemplar_coverage(combined: torch.Tensor, owner: torch.Tensor, k: int, thr0: float = 0.0) -> list[int]:
    """Latent pixels each of the ``k`` exemplars fills at step 0 (Algorithm 1, line 10: where ``map <= thr_0``)."""
    filled = combined.double() <= thr0
    return [int((filled & (owner == j)).sum()) for j in range(k)]


def check_coverage(maps: list[torch.Tensor], combined: torch.Tensor, owner: torch.Tensor, thr0: float) -> list[int]:
    """Raise a clear error when an exemplar would fill no latent pixel (it would then have no effect at all)."""
    counts = exemplar_coverage(combined, owner, len(maps), thr0)
    total = combined[:, 0].numel()
    for j, c in enumerate(counts):
        log.info("PIXELS: exemplar %d fills %d of %d latent pixels at step 0", j + 1, c, total)
        if c == 0:
            own = maps[j].expand_as(combined)
            darkest = float(own.min())
            why = (f"its map's darkest value on the {combined.shape[-1]}x{combined.shape[-2]} latent grid is "
                   f"{darkest:.3g}, above the step-0 threshold {thr0:.3g}") if darkest > thr0 else (
                "every pixel where its map is black is taken by an earlier exemplar")
            raise ValueError(
                f"edit_map of exemplar {j + 1}: the exemplar fills no latent pixel, so it would have no effect. "
                f"Algorithm 1 puts the exemplar only where the map is black (0) at the first step, and {why}. "
                f"Paint pure black where the exemplar should come in, or raise black_point on its PIXELS Exemplar "
                f"node to at least {darkest:.3g} (values at or below it count as black)")
    return counts


def never_released(combined: torch.Tensor, n: int, curve: str = "linear", gamma: float = 1.0) -> torch.Tensor:
    """Pixels the map holds through every one of the ``n`` steps (``map > thr_{n-1}``): they keep the source."""
    return combined.double() > threshold(n - 1, n, curve, gamma)


# ----------------------------------------------------------------------------------------------
# Sampler
# ----------------------------------------------------------------------------------------------

# Which samplers run exact Algorithm 1: decided by what the sampler does, not by its name.
#
# A sampler keeps no history between steps exactly when running a schedule in one call gives the same result as
# running it one step per call, each call restarted from the state the previous one returned. The probe checks
# that on a tiny float64 tensor with a deterministic, nonlinear stand-in denoiser, a deterministic noise sampler
# (a function of ``(sigma, sigma_next)`` only, so both runs see the same noise at the same interval) and a short
# all-positive schedule inside (0, 1) (valid for EPS and flow models, and away from the samplers' special last
# step to 0). History-free samplers agree bit for bit; multistep ones (their history restarts with every call)
# differ by far more than rounding.
_PROBE_SIGMAS = (0.92, 0.77, 0.61, 0.47, 0.35, 0.26, 0.18)  # 6 steps: enough to switch on any 4th-order history
_PROBE_ULPS = 100  # tolerance in units of the dtype's epsilon (float64: 2e-14); ComfyUI's multistep samplers: > 1e-3
_PROBE_SEED = 20250101  # for samplers that seed their own noise from extra_args["seed"]
_probe_cache: dict = {}


def _probe_patterns(shape, dtype=torch.float64):
    n = 1
    for d in shape:
        n *= d
    t = torch.arange(n, dtype=dtype).reshape(shape)
    return torch.sin(0.37 * t + 0.2), torch.cos(0.61 * t + 1.1), torch.sin(1.13 * t + 2.3)


def _probe_model(host, shape, dtype):
    """The stand-in denoiser: ``host``'s attributes (samplers read e.g. ComfyUI's ``model.inner_model...``), a
    deterministic nonlinear prediction, and ComfyUI's post-CFG hooks (``model_options["sampler_post_cfg_function"]``,
    through which the CFG++ samplers read the unconditional prediction) called as the host's CFG calls them."""
    p1, p2, _ = _probe_patterns(shape, dtype)

    def denoise(x, sigma, **kw):
        s = torch.as_tensor(sigma, dtype=dtype).reshape(-1, *([1] * (x.ndim - 1)))
        x = x.to(dtype)
        cond = 0.8 * torch.tanh((1.0 + s) * x + p1) + 0.3 * torch.sin(3.0 * s) * p2 - 0.2 * s * x
        uncond = 0.5 * torch.tanh(0.7 * x - s) + 0.1 * torch.cos(2.0 * s) * p1
        denoised = uncond + (cond - uncond) * 2.5
        model_options = kw.get("model_options") or {}
        for fn in model_options.get("sampler_post_cfg_function", []):
            denoised = fn({"denoised": denoised, "cond": None, "uncond": None, "cond_scale": 2.5, "model": host,
                           "uncond_denoised": uncond, "cond_denoised": cond, "sigma": sigma,
                           "model_options": model_options, "input": x})
        return denoised

    return _DenoiserProxy(denoise, host)


def _probe_noise(shape, dtype):
    _, _, p3 = _probe_patterns(shape, dtype)

    def noise_sampler(sigma, sigma_next=None):
        a = float(torch.as_tensor(sigma).reshape(-1)[0]) if sigma is not None else 0.0
        b = float(torch.as_tensor(sigma_next).reshape(-1)[0]) if sigma_next is not None else 0.0
        return torch.cos(5.0 * p3 + 7.0 * a + 3.0 * b)

    return noise_sampler


def probe_sampler(sampler_fn, options=None, host=None, noise_sampler: bool = True, dtype=torch.float64) -> float:
    """Relative difference between running the probe schedule in one call of ``sampler_fn`` and running it one
    step per call (each restarted from the state the last returned); ``inf`` when the sampler raises or returns
    something non-finite. 0 (to rounding) for a sampler without history. ``options``: the sampler's extra options;
    ``host``: the model the sampler will be given (its attributes are forwarded); ``noise_sampler``: whether the run
    passes a noise sampler (else the sampler's own default noise is probed, which restarts with every call);
    ``dtype`` of the probe tensors. Raises what the sampler raises."""
    options = dict(options or {})
    shape = (1, 4, 3, 3)
    sig = torch.tensor(_PROBE_SIGMAS, dtype=dtype)
    x0 = 0.9 * _probe_patterns(shape, dtype)[2] + 0.3
    if noise_sampler and _accepts(sampler_fn, "noise_sampler"):
        options["noise_sampler"] = _probe_noise(shape, dtype)
    model = _probe_model(host, shape, dtype)

    def call(x, s):
        return sampler_fn(model, x, s, extra_args={"seed": _PROBE_SEED, "model_options": {}}, callback=None,
                          disable=True, **options)

    # a sampler drawing from the global RNG must not shift it; library warnings about the tiny schedule are noise
    with torch.random.fork_rng(devices=[]), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = call(x0.clone(), sig)
        z = x0.clone()
        for i in range(len(sig) - 1):
            z = call(z, sig[i:i + 2])
    whole, z = torch.as_tensor(whole, dtype=torch.float64), torch.as_tensor(z, dtype=torch.float64)
    if whole.shape != z.shape or not bool(torch.isfinite(whole).all() and torch.isfinite(z).all()):
        return math.inf
    return float((whole - z).abs().max() / whole.abs().max().clamp_min(1e-12))


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def is_single_step(sampler_fn, options=None, host=None, noise_sampler: bool = True) -> bool:
    """True when ``sampler_fn`` keeps no history between steps, so that driving it one step at a time is exact
    (:func:`probe_sampler` within 100 rounding units: float64, or float32 for a sampler that refuses float64). Cached
    per sampler function, options, host type and whether a noise sampler is passed. A sampler that raises on the
    probe gets the safe answer, False (the multistep rule), with a log line."""
    try:
        opts_key = tuple(sorted((str(k), repr(v)) for k, v in dict(options or {}).items()))
        key = (sampler_fn, opts_key, type(host), bool(noise_sampler))
        hash(key)
    except Exception:
        key = None
    if key is not None and key in _probe_cache:
        return _probe_cache[key]
    diff, tol, why = math.inf, 0.0, ""
    for dtype in (torch.float64, torch.float32):  # some samplers build float32 tensors of their own
        try:
            diff = probe_sampler(sampler_fn, options, host, noise_sampler, dtype)
            tol = _PROBE_ULPS * torch.finfo(dtype).eps
            why = f"one-call and step-by-step {dtype} runs differ by {diff:.3g} (relative)"
            break
        except Exception as e:  # a sampler the probe cannot run: the multistep rule is safe for every sampler
            why = f"the probe raised {type(e).__name__}: {e}"
    else:
        log.warning("PIXELS: could not probe sampler %s (%s); using the multistep rule", _name(sampler_fn), why)
    single = diff <= tol
    log.info("PIXELS: sampler %s is %s (%s)", _name(sampler_fn),
             "history-free: exact Algorithm 1 step by step" if single else "multistep: the blend enters through its "
             "denoiser", why)
    if key is not None:
        _probe_cache[key] = single
    return single


def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def euler_step_sampler(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """Plain Euler (k-diffusion's ``sample_euler`` with no churn): the default inner sampler."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
    return x


@torch.no_grad()
def sample_pixels(model, x, sigmas, extra_args=None, callback=None, disable=None, *, source, noise,
                  exemplars, exemplar_noises, edit_maps, add_noise=None, param="eps", sampler=None,
                  sampler_options=None, curve="linear", gamma=1.0, mode="auto", noise_sampler=None, final="source",
                  map_name="edit map", map_hint="", on_step=None):
    """PIXELS progressive sampling (Algorithm 1) with K exemplars in one pass.

    **K = 0** (``exemplars`` and ``exemplar_noises`` empty, ``edit_maps`` one map): progressive soft inpainting.
    Algorithm 1 without its exemplar term: line 10 leaves the noised source everywhere (as if the exemplar were the
    source; so released pixels start from the source noised to ``sigmas[0]``, as Differential Diffusion's do), line 15
    re-inserts the source noised to the current sigma where the map still holds, the model fills the released pixels.
    ``map_name``/``map_hint`` name the map's input and what to do in the errors for a map that inpaints nothing.

    ``on_step``: an optional ``on_step(i, held)`` called before every model evaluation of step ``i`` with that step's
    held mask (1 = the pixel is re-inserted from the source, 0 = released to the model; latent grid, ``x``'s dtype).
    A host uses it to make conditioning follow the release (an inpainting checkpoint's mask and masked image).

    ``x`` is the noised source at ``sigmas[0]`` (as the host made it); ``source``/``noise`` are the clean
    source latent and its one noise draw; ``exemplars``/``exemplar_noises``/``edit_maps`` are K clean
    exemplar latents, their own noise draws and maps (latent resolution, paper polarity). ``sampler`` is
    any k-diffusion sampler (default Euler); ``mode`` is ``"stepwise"`` (exact Algorithm 1: the state is
    overwritten between single steps of ``sampler``), ``"wrapped"`` (for multistep samplers: see
    :func:`_wrapped`) or ``"auto"`` (stepwise when :func:`is_single_step` finds that ``sampler`` keeps no history
    between steps, decided by running it, not by its name; else wrapped).

    ``final``: what the pixels the map never releases (``map > thr_{N-1}``) end as. ``"source"`` (default): exactly
    the source latent (noised to ``sigmas[-1]``, so the clean source when the schedule ends at 0), as the paper's
    "white keeps the source" says. ``"model"``: Algorithm 1 read literally, where nothing is held after the last
    step, so those pixels end at the model's last denoising of the re-inserted source.

    Raises ``ValueError`` when an exemplar would fill no latent pixel at step 0 (it would have no effect): see
    :func:`check_coverage` and ``prepare_map``'s ``black_point``.
    """
    extra_args = {} if extra_args is None else extra_args
    sampler = euler_step_sampler if sampler is None else sampler
    sampler_options = dict(sampler_options or {})
    flow = add_noise is None and _param(param).is_flow  # a host's add_noise knows its own sigma range
    add_noise = add_noise or _param(param).add_noise
    n = len(sigmas) - 1
    if n < 1:
        return x
    check_sigmas(sigmas, method="PIXELS", flow=flow)
    k0 = len(exemplars) == 0 and len(exemplar_noises) == 0
    if k0 and len(edit_maps) != 1:
        raise ValueError(f"PIXELS without exemplars (K = 0: progressive soft inpainting) takes exactly one edit map, got "
                         f"{len(edit_maps)}")
    if not k0 and (len(exemplars) != len(edit_maps) or len(exemplars) != len(exemplar_noises)):
        raise ValueError(f"got {len(exemplars)} exemplars, {len(edit_maps)} edit maps and "
                         f"{len(exemplar_noises)} exemplar noises: give one map and one noise per exemplar")
    if final not in FINALS:
        raise ValueError(f"final must be one of {FINALS}, got {final!r}")
    thr = [threshold(i, n, curve, gamma) for i in range(n)]
    if k0:
        combined = inpaint_map(edit_maps[0], n, curve, gamma, map_name, map_hint)
        owner = None
    else:
        combined, owner = compose_maps(list(edit_maps))
        check_releases(combined, n, curve, gamma)
        check_coverage(list(edit_maps), combined, owner, thr[0])
    # compared in float64, as release_step does (a float32 map would round a threshold such as log's 0.49999... to 0.5)
    held = [(combined.double() > t).to(x.dtype) for t in thr]
    # held[n]: after the last step. "source" keeps the never-released pixels on the source; "model" holds nothing.
    held.append(held[n - 1] if final == "source" else torch.zeros_like(held[0]))

    # Step 0: latent surgery (Algorithm 1, line 10), nested over exemplars through ``owner``. K = 0: no exemplar
    # term, every pixel starts from the noised source ``x`` (``fill`` = ``x``).
    fill = x if k0 else torch.zeros_like(x)
    for k, (ex, en) in enumerate(zip(exemplars, exemplar_noises)):
        if ex.shape[-3:] != x.shape[-3:]:
            raise ValueError(f"exemplar {k + 1} latent is {tuple(ex.shape[-3:])} but the source latent is "
                             f"{tuple(x.shape[-3:])}: resize the exemplar image to the source size")
        fill = fill + add_noise(sigmas[0], en, ex) * (owner == k).to(x.dtype)
    z = x * held[0] + fill * (1 - held[0])

    def renoise(i):  # noised source at step i (Algorithm 1, line 15): the same noise every step
        return x if i == 0 else add_noise(sigmas[i], noise, source)

    if mode == "auto":
        mode = "stepwise" if is_single_step(sampler, sampler_options, model, noise_sampler is not None) else "wrapped"
    if mode == "stepwise":
        z = _stepwise(model, z, sigmas, extra_args, callback, sampler, sampler_options, held, renoise, noise_sampler,
                      on_step)
    elif mode == "wrapped":
        z = _wrapped(model, z, sigmas, extra_args, callback, disable, sampler, sampler_options, held, renoise,
                     source, noise, add_noise, noise_sampler, on_step)
    else:
        raise ValueError(f"mode must be 'auto', 'stepwise' or 'wrapped', got {mode!r}")
    if final == "source":  # bit for bit: the never-released pixels are the source at the schedule's end
        z = torch.where(held[n].bool(), add_noise(sigmas[-1], noise, source).to(z.dtype), z)
    return z


def inpaint_map(edit_map: torch.Tensor, n: int, curve: str = "linear", gamma: float = 1.0, name: str = "edit map",
                hint: str = "") -> torch.Tensor:
    """The one map of K = 0 (progressive soft inpainting), paper polarity, on the latent grid: checked for NaN and
    range (:func:`pixels_core.masks.check_values`) and refused when it would inpaint nothing (all white, or too
    bright for ``n`` steps), naming ``name``. Returns it unchanged."""
    masks.check_values(edit_map, name)
    check_releases(edit_map, n, curve, gamma, name=name, hint=hint)
    return edit_map


def sample_inpaint(model, x, sigmas, extra_args=None, callback=None, disable=None, *, source, noise, edit_map,
                   **options):
    """PIXELS with K = 0: progressive soft inpainting (:func:`sample_pixels` without exemplars). ``edit_map`` in the
    paper's polarity: 1 keeps the source (bit for bit with the default ``final="source"``), 0 is released at step 0,
    grey later. ``options``: those of :func:`sample_pixels`."""
    return sample_pixels(model, x, sigmas, extra_args, callback, disable, source=source, noise=noise, exemplars=[],
                         exemplar_noises=[], edit_maps=[edit_map], **options)


class _DenoiserProxy:
    """A denoiser that behaves like ``fn`` when called and like ``host`` otherwise (samplers read attributes
    such as ComfyUI's ``model.inner_model.inner_model.model_sampling`` from the model they are given)."""

    def __init__(self, fn, host):
        self._fn, self._host = fn, host

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._host, name)


def _stepwise(model, z, sigmas, extra_args, callback, sampler, options, held, renoise, noise_sampler, on_step=None):
    """Exact Algorithm 1: re-insert the noised source, then one step of ``sampler``."""
    if noise_sampler is not None and _accepts(sampler, "noise_sampler"):
        options = {**options, "noise_sampler": noise_sampler}
    for i in range(len(sigmas) - 1):
        if i > 0:
            z = renoise(i) * held[i] + z * (1 - held[i])
        if on_step is not None:
            on_step(i, held[i])
        cb = None
        if callback is not None:
            cb = lambda d, i=i: callback({**d, "i": i})  # noqa: E731
        # a fresh dict each step: samplers may add to it (ComfyUI's CFG++ samplers add a post-CFG hook per call)
        z = sampler(model, z, sigmas[i:i + 2], extra_args=dict(extra_args), callback=cb, disable=True, **options)
    return z


def _wrapped(model, z, sigmas, extra_args, callback, disable, sampler, options, held, renoise, source, noise,
             add_noise, noise_sampler, on_step=None):
    """Multistep rule (the pack's own, not the authors': Algorithm 1 is stated for single denoising steps, and
    overwriting the state under a multistep solver would mix its stored history with a state it never produced):
    the blend enters through the denoiser, the sampler keeps its own history.

    At a model call at sigma in step ``i`` the input is ``noised_src * M_i + x * (1 - M_i)`` and the output
    is ``D * (1 - M_{i+1}) + source * M_{i+1}``. A pixel that the next step holds anyway gets the clean
    source as its prediction, so any sampler that is exact for a constant prediction (all the usual ones:
    Euler, DPM-Solver++, UniPC, DEIS, LMS) keeps it on ``noised(source, sigma)`` with the same noise; the
    step before a pixel's release uses the model's real prediction, which is what Algorithm 1 does. For
    first-order Euler this equals Algorithm 1 exactly (tested).
    """
    sig = sigmas.to(torch.float64)

    def step_of(sigma):
        s = float(sigma.reshape(-1)[0]) if torch.is_tensor(sigma) else float(sigma)
        # the step whose interval (sigma_{i+1}, sigma_i] holds s; calls at sigma_i exactly map to i
        i = int((sig[1:] >= s * (1 - 1e-6)).sum().item())
        return min(i, len(sig) - 2)

    def wrapped(x, sigma, **kw):
        i = step_of(sigma)
        s = sigma.reshape(-1)[0] if torch.is_tensor(sigma) else sigma
        x_src = renoise(i) if torch.isclose(torch.as_tensor(float(s), dtype=sig.dtype), sig[i]) else add_noise(s, noise, source)
        x_in = x_src * held[i] + x * (1 - held[i])
        if on_step is not None:
            on_step(i, held[i])
        d = model(x_in, sigma, **kw)
        return d * (1 - held[i + 1]) + source * held[i + 1]

    wrapped_model = _DenoiserProxy(wrapped, model)
    if noise_sampler is not None and _accepts(sampler, "noise_sampler"):
        options = {**options, "noise_sampler": noise_sampler}
    return sampler(wrapped_model, z, sigmas, extra_args=extra_args, callback=callback, disable=disable, **options)


def release_schedule_image(combined: torch.Tensor, n: int, curve: str = "linear", gamma: float = 1.0) -> torch.Tensor:
    """Release step of each pixel as a grey image in [0, 1]: black = released at step 0, white = never."""
    return release_step(combined, n, curve, gamma).to(torch.float32) / n


def owner_image(combined: torch.Tensor, owner: torch.Tensor, k: int, thr0: float = 0.0) -> torch.Tensor:
    """RGB image of which exemplar fills each pixel at step 0 (distinct hues; grey where the source starts)."""
    hues = torch.arange(k, dtype=torch.float32) / max(k, 1)
    rgb = torch.stack([(0.5 + 0.5 * torch.cos(2 * math.pi * (hues + o))) for o in (0.0, 1 / 3, 2 / 3)], dim=1)  # (k, 3)
    img = rgb[owner.squeeze(1).long()].movedim(-1, 1)  # (B, 3, h, w)
    starts_from_source = (combined.double() > thr0).to(img.dtype)
    return img * (1 - starts_from_source) + 0.5 * starts_from_source


def inpaint_inputs(pixels: torch.Tensor, released: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What an inpainting checkpoint is conditioned on for one step's release: ``(masked, mask)``.

    ``pixels`` (B, H, W, C) in [0, 1] is the source image, already cropped to the latent grid times the VAE ratio;
    ``released`` (B or 1, 1, h, w) is 1 where the step hands the latent pixel to the model (``1 - held``). ``mask``
    (B, 1, H, W) is ``released`` on the pixel grid (each latent cell's block of pixels, nearest), and ``masked`` the
    source with the released pixels set to grey 0.5: exactly what ComfyUI's InpaintModelConditioning makes of a
    0/1 mask, for the VAE to encode."""
    b, H, W = pixels.shape[0], pixels.shape[1], pixels.shape[2]
    h, w = released.shape[-2], released.shape[-1]
    if H % h or W % w or H // h != W // w:
        raise ValueError(f"inpaint_inputs: a {W}x{H} image does not tile a {w}x{h} latent grid")
    r = H // h
    mask = released.reshape(-1, 1, h, w).to(pixels.dtype).repeat_interleave(r, -2).repeat_interleave(r, -1)
    mask = mask.expand(b, 1, H, W) if mask.shape[0] == 1 else mask
    if mask.shape[0] != b:
        raise ValueError(f"inpaint_inputs: {mask.shape[0]} release masks for {b} images")
    keep = (1.0 - mask.round()).movedim(1, -1)
    return (pixels - 0.5) * keep + 0.5, mask
