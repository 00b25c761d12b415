"""Core tests of the sync-SDE coupled sampler (pixels_core/syncsde.py), analytic denoisers only."""
import math

import pytest
import torch

from pixels_core import syncsde as S
from pixels_core.analytic import FiniteSetDenoiser, GaussianDenoiser


def flow_sigmas(n=28, shift=3.0):
    t = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).float()


def karras_sigmas(n=28, smin=0.0292, smax=14.6146, rho=7.0):
    r = torch.linspace(0, 1, n, dtype=torch.float64)
    s = (smax ** (1 / rho) + r * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)]).float()


def finite_set(kind, m=3, shape=(2, 4, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return FiniteSetDenoiser(torch.randn((m,) + shape, generator=g), kind=kind)


def onehot(idx, m=3, b=1):
    w = torch.full((b, m), 1e-4)
    w[:, idx] = 1.0
    return w


# ---------------------------------------------------------------------------------------------
# independent transcription: the source and the target SDE as two Euler-Maruyama loops on one Brownian path
# ---------------------------------------------------------------------------------------------

def two_sde_loops(den, x0, sigmas, z, start, kind, c_src, c_tgt):
    """The authors' scheme written as two separate simulations, float64, plain Python floats for the schedule.

    Path: ``B_N = 0``, ``B_j = B_{j+1} + z_j sqrt(2 m_j (s_j - s_{j+1})) / alpha(m_j)^1.5``, ``m_j`` the midpoint,
    ``alpha = 1`` (eps) or ``1 - s`` (flow). The source lies on it, ``X_src,j = alpha(s_j) (x0 + B_j)``; the reverse
    SDE's Brownian increment of step j is what the source path does beyond its own drift,
    ``dW_j = X_src,j+1 - X_src,j - f_src(X_src,j) h_j``. The target is its own Euler-Maruyama loop
    ``X_tgt,j+1 = X_tgt,j + f_tgt(X_tgt,j) h_j + dW_j`` from ``X_tgt,start = X_src,start``. The drift is written as
    the authors write it, ``g^2 score + [flow] x/(1-s)``: flow ``g2score = 2 v - 2 x/(1-s)`` with the velocity
    ``v = (x0hat - x)/s``; eps (VE) ``g^2 = 2 s`` and ``score = (x0hat - x)/s^2``. Returns the target's final state
    and the (sigma, source state, target state) of every step run."""
    sl = [float(v) for v in sigmas]
    n = len(sl) - 1
    flow = kind == "flow"
    alpha = (lambda s: 1.0 - s) if flow else (lambda s: 1.0)  # noqa: E731
    path = [None] * (n + 1)
    path[n] = torch.zeros_like(x0)
    for j in range(n - 1, -1, -1):
        m = 0.5 * (sl[j] + sl[j + 1])
        path[j] = path[j + 1] + z[j] * math.sqrt(2.0 * m * (sl[j] - sl[j + 1])) / alpha(m) ** 1.5
    src = [alpha(sl[j]) * (x0 + path[j]) for j in range(n + 1)]

    def f(x, s, c):
        x0hat = den(x, torch.full((x.shape[0],), s, dtype=x.dtype), cond=c)
        if flow:
            v = (x0hat - x) / s
            return (2.0 * v - 2.0 * x / (1.0 - s)) + x / (1.0 - s)
        return (2.0 * s) * ((x0hat - x) / s ** 2)

    x_tgt, seen = src[start].clone(), []
    for j in range(start, n):
        h = sl[j] - sl[j + 1]
        seen.append((sl[j], src[j], x_tgt))
        dw = src[j + 1] - src[j] - f(src[j], sl[j], c_src) * h
        x_tgt = x_tgt + f(x_tgt, sl[j], c_tgt) * h + dw
    return x_tgt, seen


# soft prompts: the prediction depends on the state (a one-hot prompt pins it to one image whatever the path)
SOFT_SRC = torch.tensor([[0.5, 0.2, 0.2, 0.1]], dtype=torch.float64)
SOFT_TGT = torch.tensor([[0.1, 0.2, 0.6, 0.1]], dtype=torch.float64)


def soft_set(kind):
    """Four close 2x2x2 images and a source near the first: posteriors stay soft down to low sigma, so the edit depends
    on the path (far-apart or large images make the prediction snap to one image whatever the state)."""
    g = torch.Generator().manual_seed(2)
    den = FiniteSetDenoiser(0.3 * torch.randn(4, 2, 2, 2, generator=g, dtype=torch.float64), kind=kind)
    src = den.images[0:1] + 0.09 * torch.randn(1, 2, 2, 2, generator=torch.Generator().manual_seed(3),
                                               dtype=torch.float64)
    return den, src


def double_set(kind, m=3, shape=(2, 4, 4), seed=0):
    den = finite_set(kind, m, shape, seed)
    den.images = den.images.double()
    return den


@pytest.mark.parametrize("kind,sigmas,start", [("flow", flow_sigmas(), 4), ("flow", flow_sigmas(12), 1),
                                               ("eps", karras_sigmas(), 4), ("eps", karras_sigmas(12), 0)])
def test_matches_two_coupled_sde_loops(kind, sigmas, start):
    """The coupled output is the target SDE's own Euler-Maruyama run driven by the source's Brownian increments:
    drift, path, step sizes and start index all enter (the identity below cannot see them)."""
    den, src = soft_set(kind)
    sig = sigmas.double()
    n = sig.numel() - 1
    z = torch.randn((n,) + tuple(src.shape), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    c_src, c_tgt = SOFT_SRC, SOFT_TGT
    ref, _ = two_sde_loops(den, src, sig, z, start, kind, c_src, c_tgt)
    out = S.sample_syncsde(S.pair_denoiser(den, c_src, c_tgt), src, sig, source=src, kind=kind, start_index=start,
                           noise=z)
    assert float((out - src).abs().max()) > 0.3  # it edits
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    z_off = z.clone()
    z_off[start:] *= 1.01
    off, _ = two_sde_loops(den, src, sig, z_off, start, kind, c_src, c_tgt)
    assert float((off - ref).abs().max()) > 1e-7  # the path matters: a 1 % Brownian-scale error is far outside 1e-10


@pytest.mark.parametrize("kind,sigmas", [("flow", flow_sigmas()), ("eps", karras_sigmas())])
def test_identical_conds_follow_the_source_sde_exactly(kind, sigmas):
    """Identical prompts: the output is the source, and on the way the model is shown, at the schedule's sigmas from
    the start index on, the source states of the independent path (both halves the same)."""
    den = double_set(kind)
    g = torch.Generator().manual_seed(4)
    src = torch.randn(2, 2, 4, 4, generator=g, dtype=torch.float64)
    sig = sigmas.double()
    z = torch.randn(28, 2, 2, 4, 4, generator=g, dtype=torch.float64)
    c = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], dtype=torch.float64)
    calls = []
    pair = S.pair_denoiser(den, c, c.clone())

    def model(xx, s, **kw):
        calls.append((xx.clone(), s.clone()))
        return pair(xx, s, **kw)

    out = S.sample_syncsde(model, torch.zeros_like(src), sig, source=src, kind=kind, noise=z)
    assert torch.equal(out, src)
    ref_out, ref = two_sde_loops(den, src, sig, z, 4, kind, c, c)
    torch.testing.assert_close(ref_out, src, rtol=0, atol=1e-10)  # the two loops agree: the reference is sound
    assert len(calls) == len(ref) == 24
    for (xx, s), (s_ref, x_src, _) in zip(calls, ref):
        assert torch.equal(s, torch.full((4,), s_ref, dtype=torch.float64))
        torch.testing.assert_close(xx[:2], x_src, rtol=0, atol=1e-12)
        assert torch.equal(xx[2:], xx[:2])


@pytest.mark.parametrize("kind,sigmas", [("flow", flow_sigmas()), ("eps", karras_sigmas())])
@pytest.mark.parametrize("resample", [False, True])
def test_identical_conds_return_source_exactly(kind, sigmas, resample):
    den = finite_set(kind)
    src = torch.randn(2, 2, 4, 4)
    c = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    model = S.pair_denoiser(den, c, c.clone())
    out = S.sample_syncsde(model, torch.zeros_like(src), sigmas, source=src, kind=kind, seed=3, resample=resample)
    assert torch.equal(out, src)


def test_identical_conds_with_cfg_return_source_exactly():
    den = finite_set("flow")
    src = torch.randn(1, 2, 4, 4)
    c, u = onehot(1), torch.ones(1, 3)
    model = S.pair_denoiser(den, c, c.clone(), u, u.clone(), source_cfg=3.0, target_cfg=3.0)
    out = S.sample_syncsde(model, src, flow_sigmas(), source=src, kind="flow", seed=1)
    assert torch.equal(out, src)


# ---------------------------------------------------------------------------------------------
# the authors' flow update written out directly (their Flux pipeline), with true CFG on the target
# ---------------------------------------------------------------------------------------------

def authors_flux_loop(velocity, image_latents, sigmas, iid_noise, starting_index, c_src, c_tgt, c_neg, true_cfg):
    """Line-by-line transcription of the authors' loop; ``velocity(x, s, c)`` plays Flux's noise_pred."""
    n = len(sigmas) - 1
    shape = image_latents.shape
    brownian_int = torch.zeros(n + 1, *shape, dtype=image_latents.dtype)
    s = (sigmas[1:] + sigmas[:-1]) / 2.0
    delta_t = sigmas[:-1] - sigmas[1:]
    mult = ((2 * s).sqrt() / (1 - s) ** 1.5) * delta_t.sqrt()
    mult = mult.view(-1, *([1] * (iid_noise.ndim - 1)))
    increments = iid_noise * mult
    brownian_int[:-1] = torch.flip(torch.cumsum(torch.flip(increments, dims=[0]), dim=0), dims=[0])
    diff_latents = torch.zeros_like(image_latents)
    latents = None
    for i in range(starting_index, n):
        eps = 1e-3 if i == 0 else 0e-3

        def get_preds(latents, c, use_neg_prompt=False):
            noise_pred = velocity(latents, sigmas[i], c)
            if use_neg_prompt:
                neg_noise_pred = velocity(latents, sigmas[i], c_neg)
                neg_g2score = (2 * (-neg_noise_pred) - 2 * latents / (1 - sigmas[i]))
            v_t = -noise_pred
            g2score = (2 * v_t - 2 * latents / (1 - sigmas[i]))
            if use_neg_prompt:
                g2score = neg_g2score + true_cfg * (g2score - neg_g2score)
            drift = g2score + latents / (1 - sigmas[i] + eps)
            return drift

        source_latents = brownian_int[i] * (1 - sigmas[i]) + image_latents * (1 - sigmas[i])
        source_drift = get_preds(source_latents, c_src)
        latents = diff_latents + source_latents
        drift = get_preds(latents, c_tgt, use_neg_prompt=True)
        delta = sigmas[i] - sigmas[i + 1]
        diff_latents = diff_latents + (drift - source_drift) * delta
        source_latents = brownian_int[i + 1] * (1 - sigmas[i + 1] + eps) + image_latents * (1 - sigmas[i + 1] + eps)
        latents = diff_latents + source_latents
    return latents


@pytest.mark.parametrize("start", [4, 1, 10])
def test_matches_authors_flow_update(start):
    """float64 against the authors' loop at 1e-10 (their true CFG on the drift equals CFG on x0: the drift is affine
    in x0hat); a 1 % error in the Brownian scale is far outside that."""
    den, src = soft_set("flow")
    sig = flow_sigmas(28).double()
    c_src, c_tgt, c_neg = SOFT_SRC, SOFT_TGT, torch.ones(1, 4, dtype=torch.float64)
    cfg = 2.5
    noise = torch.randn((28,) + tuple(src.shape), generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def velocity(x, s, c):  # Flux's noise_pred: v = eps - x0 = (x - x0hat)/s
        return (x - den(x, s.reshape(1), cond=c)) / s

    ref = authors_flux_loop(velocity, src, sig, noise, start, c_src, c_tgt, c_neg, cfg)
    model = S.pair_denoiser(den, c_src, c_tgt, c_neg, c_neg, source_cfg=1.0, target_cfg=cfg)
    calls0 = den.calls
    out = S.sample_syncsde(model, src, sig, source=src, kind="flow", start_index=start, noise=noise)
    assert den.calls - calls0 == 28 - start  # one batched call per step
    assert (out - src).abs().max() > 1e-2  # it did edit
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    off = authors_flux_loop(velocity, src, sig, noise * 1.01, start, c_src, c_tgt, c_neg, cfg)
    assert float((off - ref).abs().max()) > 1e-4  # the tolerance above would see a 1 % Brownian-scale error


# ---------------------------------------------------------------------------------------------
# Brownian path: marginal variance and independent increments (statistically)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,sigmas", [("flow", flow_sigmas()), ("eps", karras_sigmas())])
def test_brownian_path_marginal_variance(kind, sigmas):
    n, m = sigmas.numel() - 1, 40000
    z = S.draw_noise(n, (m,), seed=5, dtype=torch.float64)
    path = S.brownian_path(sigmas.double(), z, kind)
    var = S.path_variance(sigmas, kind)
    assert torch.equal(path[-1], torch.zeros(m, dtype=torch.float64))
    emp = path.var(dim=1)
    # sample variance of m normals: relative std sqrt(2/m) ~ 0.7 %; allow 5 sigma
    rel = (emp[:-1] / var[:-1] - 1).abs()
    assert float(rel.max()) < 5 * math.sqrt(2 / m), rel
    s = sigmas.double()[:-1]
    exact = s ** 2 if kind == "eps" else (s / (1 - s)) ** 2
    if kind == "eps":
        torch.testing.assert_close(var[:-1], exact, rtol=1e-10, atol=1e-12)
    else:  # midpoint rule of the authors vs the exact (s/(1-s))^2, away from s = 1
        ok = s < 0.9
        torch.testing.assert_close(var[:-1][ok], exact[ok], rtol=0.05, atol=1e-4)
    # increments are independent of the later value: Cov(B_i - B_j, B_j) ~ 0 for i < j
    i, j = 6, 15
    cov = ((path[i] - path[j]) * path[j]).mean() / math.sqrt(float(var[i]) * float(var[j]))
    assert abs(float(cov)) < 5 / math.sqrt(m)


# ---------------------------------------------------------------------------------------------
# EPS/VE on Gaussian data: the output moves to the target mean and keeps the source's residual
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,sigmas,start", [("eps", karras_sigmas(40), 2), ("flow", flow_sigmas(40), 4)])
def test_gaussian_moves_to_target_mean_keeping_residual(kind, sigmas, start):
    g = torch.Generator().manual_seed(1)
    shape = (1, 3, 8, 8)
    mu_s, mu_t = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    std = 0.5
    resid = std * torch.randn(shape, generator=g)
    src = mu_s + resid
    den = GaussianDenoiser(torch.zeros(shape), std=std, kind=kind)
    model = S.pair_denoiser(den, mu_s, mu_t)
    out = S.sample_syncsde(model, src, sigmas, source=src, kind=kind, start_index=start, seed=7)
    err = (out - (mu_t + resid)).abs().max()
    assert float(err) < 0.03 * float((mu_t - mu_s).abs().max()), err
    # residual kept: out - mu_t is the source's residual
    r = out - mu_t
    cos = torch.nn.functional.cosine_similarity(r.flatten(), resid.flatten(), dim=0)
    assert float(cos) > 0.999
    # and the edit is noise-free for Gaussian data: another seed gives the same output
    out2 = S.sample_syncsde(model, src, sigmas, source=src, kind=kind, start_index=start, seed=8)
    torch.testing.assert_close(out, out2, rtol=1e-4, atol=1e-4)


def test_eps_matches_continuous_solution():
    """For Gaussian data D(0) = dmu * s0^2/(v + s0^2) in continuous time; 200 steps get close."""
    sig = karras_sigmas(200, smax=3.0)
    shape = (1, 2, 4, 4)
    mu_s, mu_t = torch.zeros(shape), torch.ones(shape)
    den = GaussianDenoiser(torch.zeros(shape), std=0.5)
    out = S.sample_syncsde(S.pair_denoiser(den, mu_s, mu_t), mu_s.clone(), sig, source=mu_s.clone(), kind="eps",
                           start_index=0)
    s0 = float(sig[0])
    expect = s0 ** 2 / (0.25 + s0 ** 2)
    assert abs(float(out.mean()) - expect) < 0.01


# ---------------------------------------------------------------------------------------------
# determinism, start, mask, callback, batching
# ---------------------------------------------------------------------------------------------

def _edit(seed, resample=False, **kw):
    den = finite_set("flow")
    src = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    model = S.pair_denoiser(den, onehot(0, b=2), onehot(2, b=2))
    return S.sample_syncsde(model, src, flow_sigmas(), source=src, kind="flow", seed=seed, resample=resample, **kw)


@pytest.mark.parametrize("resample", [False, True])
def test_determinism_by_seed(resample):
    a, b, c = _edit(11, resample), _edit(11, resample), _edit(12, resample)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_resample_differs_from_shared_path():
    assert not torch.allclose(_edit(11, False), _edit(11, True))


@pytest.mark.parametrize("resample", [False, True])
def test_source_state_has_the_path_variance(resample):
    """The source half the model sees is ``x0 + B_i`` (EPS) whose spread over the latent matches Var B_i, for the
    shared path and for the per-step fresh draws of ``resample``."""
    sig = karras_sigmas(12)
    b, shape = 1, (1, 4, 64, 64)
    src = torch.zeros(shape)
    seen = []

    def model(xx, s, **kw):
        seen.append((xx[:b] - src).clone())
        return torch.zeros_like(xx)

    S.sample_syncsde(model, src, sig, source=src, kind="eps", start_index=1, resample=resample, seed=3)
    var = S.path_variance(sig, "eps")
    n = shape[1] * shape[2] * shape[3]
    for i, d in zip(range(1, 12), seen):
        rel = float(d.var()) / float(var[i]) - 1
        assert abs(rel) < 5 * math.sqrt(2 / n), (i, rel)


def test_start_sigma_picks_first_step_below():
    sig = flow_sigmas()
    assert S.resolve_start(sig, start_sigma=0.95, kind="flow") == int((sig[:-1] <= 0.95).nonzero()[0])
    assert S.resolve_start(sig, kind="flow") == 4
    assert abs(float(sig[4]) - 0.95) < 0.01  # the demo's sigma ~ 0.95 at index 4 of 28


@pytest.mark.parametrize("integrator", ["euler", "exponential"])
def test_mask_confines_the_edit(integrator):
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    src = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    out = _edit(3, mask=mask, integrator=integrator)
    assert torch.equal(out[..., 2:], src[..., 2:])
    assert (out[..., :2] - src[..., :2]).abs().max() > 1e-2


def test_callback_every_step_with_target_state():
    seen, calls = [], []
    den = finite_set("flow")
    src = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    inner = S.pair_denoiser(den, onehot(0, b=2), onehot(2, b=2))

    def model(xx, s, **kw):  # records what the model saw and said, to compare with the callback
        out = inner(xx, s, **kw)
        calls.append((xx.clone(), out.clone()))
        return out

    S.sample_syncsde(model, src, flow_sigmas(), source=src, kind="flow", seed=1,
                     callback=lambda d: seen.append({k: (v.clone() if torch.is_tensor(v) else v) for k, v in d.items()}))
    assert [d["i"] for d in seen] == list(range(4, 28)) and len(calls) == len(seen)
    assert set(seen[0]) >= {"x", "i", "sigma", "sigma_hat", "denoised"}
    for d, (xx, out) in zip(seen, calls):  # the previews show the *target* half: its state and its prediction
        torch.testing.assert_close(d["x"], xx[2:])
        torch.testing.assert_close(d["denoised"], out[2:])
        assert not torch.allclose(d["denoised"], out[:2])


def test_callback_exception_propagates():
    class Stop(Exception):
        pass

    def cb(d):
        raise Stop()

    with pytest.raises(Stop):
        _edit(1, callback=cb)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def test_error_schedule_not_ending_at_zero():
    with pytest.raises(ValueError, match="not 0"):
        _edit(1, ) if False else S.sample_syncsde(lambda x, s: x, torch.zeros(1, 1, 2, 2), flow_sigmas()[:-1],
                                                   source=torch.zeros(1, 1, 2, 2), kind="flow")


def test_error_start_beyond_schedule():
    with pytest.raises(ValueError, match="beyond the schedule of 28 steps"):
        _edit(1, start_index=28)
    with pytest.raises(ValueError, match="start_sigma"):
        S.resolve_start(flow_sigmas(), start_sigma=1e-6, kind="flow")


def test_error_flow_start_at_sigma_one():
    with pytest.raises(ValueError, match="singular"):
        _edit(1, start_index=0)


def test_error_source_batch_mismatch():
    with pytest.raises(ValueError, match="source latent"):
        S.sample_syncsde(lambda x, s: x, torch.zeros(2, 1, 2, 2), flow_sigmas(), source=torch.zeros(1, 1, 2, 2),
                         kind="flow")


def test_error_unsorted_schedule():
    sig = flow_sigmas()
    sig[5], sig[6] = sig[6].clone(), sig[5].clone()
    with pytest.raises(ValueError, match="decrease"):
        S.check_schedule(sig, "flow")


def test_repeated_sigmas_are_allowed():
    """ComfyUI's simple scheduler repeats sigmas past 1000 steps: a zero-length step changes nothing."""
    sig = flow_sigmas()
    rep = torch.cat([sig[:8], sig[7:]])
    S.check_schedule(rep, "flow")
    den = finite_set("flow")
    src = torch.randn(1, 2, 4, 4)
    z = torch.randn(28, 1, 2, 4, 4)
    model = S.pair_denoiser(den, onehot(0), onehot(2))
    a = S.sample_syncsde(model, src, sig, source=src, kind="flow", noise=z)
    b = S.sample_syncsde(model, src, rep, source=src, kind="flow", noise=torch.cat([z[:7], z[6:7], z[7:]]))
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------------------
# soft masks: the edit runs where the mask is above 0 and the output keeps the mask's fraction of it
# ---------------------------------------------------------------------------------------------

def old_mask_rule_loop(model, src, sigmas, noise, start, kind, mask):
    """The sampler's loop before the soft-mask rule, transcribed: the target sees ``X_src + D`` and ``D`` is multiplied
    by the mask after every step (the same float operations in the same order)."""
    n = sigmas.numel() - 1
    path = S.brownian_path(sigmas, noise, kind, first=start)
    sl, b = sigmas.tolist(), src.shape[0]
    d = torch.zeros_like(src)
    for i in range(start, n):
        s, h = sl[i], sl[i] - sl[i + 1]
        x_src = src + path[i]
        if kind == "flow":
            x_src.mul_(1.0 - s)
        xx = torch.cat([x_src, x_src])
        xx[b:] += d
        den = model(xx, src.new_full((2 * b,), s))
        k = 2.0 / s + (1.0 / (1.0 - s) if kind == "flow" else 0.0)
        d.mul_(1.0 - k * h).add_(den[b:] - den[:b], alpha=2.0 * h / s)
        d.mul_(mask)
    return src + d


@pytest.mark.parametrize("kind,sigmas", [("flow", flow_sigmas()), ("eps", karras_sigmas())])
def test_binary_mask_is_bit_identical_to_the_old_rule(kind, sigmas):
    den = finite_set(kind)
    src = den.images[[0, 1]] + 0.1 * torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, :, :3] = 1
    mask[1, :, 1:, :] = 1
    noise = torch.randn(28, 2, 2, 4, 4, generator=torch.Generator().manual_seed(5))
    model = S.pair_denoiser(den, onehot(0, b=2), onehot(2, b=2))
    new = S.sample_syncsde(model, src, sigmas, source=src, kind=kind, noise=noise, mask=mask)
    old = old_mask_rule_loop(model, src, sigmas, noise, 4, kind, mask)
    assert torch.equal(new, old)
    assert torch.equal(new[mask.expand_as(src) == 0], src[mask.expand_as(src) == 0])
    assert (new - src).abs().max() > 1e-2


def dirac_pair(src, tgt):
    """A model that knows the answer: the source prompt predicts ``src`` and the target prompt ``tgt``, everywhere."""

    def model(x, sigma, **kw):
        return torch.cat([src, tgt]).to(x)

    return model


def _fraction(edit, full):
    return float((edit * full).sum() / (full * full).sum())


@pytest.mark.parametrize("integrator", ["euler", "exponential"])
@pytest.mark.parametrize("kind", ["flow", "eps"])
@pytest.mark.parametrize("m", [0.25, 0.5, 0.75])
def test_grey_mask_gives_a_proportional_edit(m, kind, integrator):
    """Default schedule (28 steps from step 4), the known-answer model: the edit under a uniform grey mask ``m`` is the
    fraction ``m`` of the unmasked edit (exactly for the exponential integrator, to ~1e-3 for Euler)."""
    g = torch.Generator().manual_seed(7)
    src, tgt = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    sig = flow_sigmas() if kind == "flow" else karras_sigmas()
    run = lambda mask: S.sample_syncsde(dirac_pair(src, tgt), src, sig, source=src, kind=kind, seed=2,  # noqa: E731
                                        mask=mask, integrator=integrator) - src
    full, grey = run(None), run(torch.full((1, 1, 8, 8), m))
    frac = _fraction(grey, full)
    assert m - 0.15 <= frac <= m + 0.15, (m, frac)
    assert abs(frac - m) < (1e-6 if integrator == "exponential" else 2e-3), (m, frac)
    # the old rule (D multiplied by the mask after every step) was not proportional
    old = old_mask_rule_loop(dirac_pair(src, tgt), src, sig, S.draw_noise(28, src.shape, 2), 4, kind,
                             torch.full((1, 1, 8, 8), m)) - src
    assert abs(_fraction(old, full) - m) > 0.15, _fraction(old, full)


@pytest.mark.parametrize("kind", ["flow", "eps"])
@pytest.mark.parametrize("m", [0.25, 0.5, 0.75])
def test_grey_mask_is_proportional_when_the_prediction_follows_the_state(m, kind):
    """A Gaussian model (its prediction follows the state it is shown, as real models do at low noise): a grey level
    still keeps its fraction of the edit, where blending the prediction by the mask keeps almost nothing."""
    g = torch.Generator().manual_seed(9)
    shape = (1, 4, 8, 8)
    src_mean, tgt_mean = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    den = GaussianDenoiser(torch.zeros(shape), std=0.5, kind=kind)
    model = S.pair_denoiser(den, src_mean, tgt_mean)
    src = src_mean + 0.5 * torch.randn(shape, generator=g)
    sig = flow_sigmas() if kind == "flow" else karras_sigmas()
    run = lambda mask: S.sample_syncsde(model, src, sig, source=src, kind=kind, seed=3, mask=mask) - src  # noqa: E731
    full, grey = run(None), run(torch.full((1, 1, 8, 8), m))
    assert float(full.abs().mean()) > 0.1
    assert abs(_fraction(grey, full) - m) < 1e-5
    old = old_mask_rule_loop(model, src, sig, S.draw_noise(28, src.shape, 3), 4, kind, torch.full((1, 1, 8, 8), m))
    assert abs(_fraction(old - src, full) - m) > 0.15  # the first rule compounded the mask step after step


@pytest.mark.parametrize("kind", ["flow", "eps"])
def test_grey_mask_with_a_known_answer_model_is_exactly_proportional(kind):
    g = torch.Generator().manual_seed(6)
    src, tgt = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64), torch.randn(1, 3, 4, 5, generator=g,
                                                                                          dtype=torch.float64)
    mask = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64).expand(1, 1, 4, 5)
    sig = (flow_sigmas() if kind == "flow" else karras_sigmas()).double()
    expect = src + mask * (tgt - src)
    out = S.sample_syncsde(dirac_pair(src, tgt), src, sig, source=src, kind=kind, seed=1, mask=mask,
                           integrator="exponential")
    torch.testing.assert_close(out, expect, rtol=0, atol=1e-12)
    assert torch.equal(out[..., 0], src[..., 0])
    euler = S.sample_syncsde(dirac_pair(src, tgt), src, sig, source=src, kind=kind, seed=1, mask=mask)
    torch.testing.assert_close(euler, expect, rtol=0, atol=2e-3 * float((tgt - src).abs().max()))
    assert torch.equal(euler[..., 0], src[..., 0])


@pytest.mark.parametrize("bad,match", [(float("nan"), "mask contains NaN"), (float("inf"), "mask contains NaN"),
                                       (1.5, r"mask has values outside \[0, 1\]"),
                                       (-0.2, r"mask has values outside \[0, 1\]")])
def test_error_bad_mask_values(bad, match):
    mask = torch.ones(1, 1, 4, 4)
    mask[0, 0, 1, 2] = bad
    with pytest.raises(ValueError, match=match):
        _edit(1, mask=mask)


def test_error_mask_shape():
    with pytest.raises(ValueError, match="does not broadcast to the latent"):
        _edit(1, mask=torch.ones(1, 1, 3, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_error_non_finite_source(bad):
    src = torch.randn(1, 2, 4, 4)
    src[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match="latent_image: the source latent contains NaN or infinite values"):
        S.sample_syncsde(lambda x, s: x, src, flow_sigmas(), source=src, kind="flow")


# ---------------------------------------------------------------------------------------------
# the exponential integrator (issue 15, item 10; beyond the paper)
# ---------------------------------------------------------------------------------------------

def sd1_simple_sigmas(n):
    """An SD1.x-like schedule: the scaled-linear betas (0.00085 .. 0.012, 1000 steps) read at n evenly spaced
    timesteps from the top, like ComfyUI's ``simple`` scheduler, then 0."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    all_s = ((1 - ac) / ac).sqrt()
    ss = 1000 / n
    return torch.tensor([float(all_s[-(1 + int(x * ss))]) for x in range(n)] + [0.0], dtype=torch.float64)


def test_step_coefficients_closed_forms():
    for s, s1 in [(0.9, 0.7), (0.5, 0.05), (0.3, 0.0), (0.4, 0.4)]:
        a, c = S.step_coefficients(s, s1, "eps", "exponential")
        r = s1 / s
        assert (a, c) == pytest.approx((r * r, 1 - r * r), abs=1e-15)
        a, c = S.step_coefficients(s, s1, "flow", "exponential")
        rho = r * r * (1 - s) / (1 - s1)
        assert (a, c) == pytest.approx((rho, (1 - s1) - rho * (1 - s)), abs=1e-15)
        k = 2 / s + 1 / (1 - s)
        assert S.step_coefficients(s, s1, "flow", "euler") == pytest.approx((1 - k * (s - s1), 2 * (s - s1) / s))
        assert S.step_coefficients(s, s1, "eps", "euler") == pytest.approx((1 - 2 * (s - s1) / s, 2 * (s - s1) / s))
    assert S.step_coefficients(0.6, 0.0, "flow", "exponential") == (0.0, 1.0)  # the last step: D = Delta
    assert S.step_coefficients(0.6, 0.6, "flow", "exponential") == (1.0, 0.0)  # a repeated sigma changes nothing
    with pytest.raises(ValueError, match="integrator must be one of"):
        S.step_coefficients(0.6, 0.5, "flow", "rk4")


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_exponential_step_solves_the_step_ode(kind):
    """``D(s) = a(s_i -> s) D_i + c(s_i -> s) Delta`` satisfies ``dD/ds = k(s) D - 2 Delta/s`` (central differences)
    and starts at ``D_i``."""
    s_i, d_i, delta = (0.8 if kind == "flow" else 6.0), 0.37, -1.3

    def D(s):
        a, c = S.step_coefficients(s_i, s, kind, "exponential")
        return a * d_i + c * delta

    assert D(s_i) == pytest.approx(d_i, abs=1e-15)
    for s in ([0.7, 0.4, 0.1, 0.01] if kind == "flow" else [5.0, 2.0, 0.3, 0.02]):
        e = 1e-6 * s
        deriv = (D(s + e) - D(s - e)) / (2 * e)
        k = 2 / s + (1 / (1 - s) if kind == "flow" else 0.0)
        assert deriv == pytest.approx(k * D(s) - 2 * delta / s, rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("n", [10, 20, 40, 80])
def test_exponential_hits_the_known_answer_at_any_step_count(kind, n):
    g = torch.Generator().manual_seed(n)
    src, tgt = (torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    sig = sd1_simple_sigmas(n) if kind == "eps" else flow_sigmas(n).double()
    rel = lambda out: float((out - tgt).norm() / (tgt - src).norm())  # noqa: E731
    out = S.sample_syncsde(dirac_pair(src, tgt), src, sig, source=src, kind=kind, seed=n, integrator="exponential",
                           start_index=max(1, n // 7))
    assert rel(out) < 1e-12
    euler = S.sample_syncsde(dirac_pair(src, tgt), src, sig, source=src, kind=kind, seed=n,
                             start_index=max(1, n // 7))
    assert rel(euler) > 1e-9  # the authors' Euler step misses it


def test_euler_known_answer_error_falls_like_one_over_n():
    """Euler on an SD1.x-like schedule from a fixed start sigma: relative target error ~ c/N (measured N*err 0.022 ..
    0.027 for N = 10 .. 160); the exponential integrator's error is 0 to rounding. Flow: small, and falling."""
    g = torch.Generator().manual_seed(0)
    src, tgt = (torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    scaled = []
    for n in (10, 20, 40, 80):
        sig = sd1_simple_sigmas(n)
        out = S.sample_syncsde(dirac_pair(src, tgt), src, sig, source=src, kind="eps", seed=1, start_sigma=5.0)
        scaled.append(n * float((out - tgt).norm() / (tgt - src).norm()))
    assert min(scaled) > 0.01 and max(scaled) / min(scaled) < 1.5, scaled
    flow = []
    for n in (10, 20, 40, 80):
        out = S.sample_syncsde(dirac_pair(src, tgt), src, flow_sigmas(n).double(), source=src, kind="flow", seed=1,
                               start_sigma=0.95)
        flow.append(float((out - tgt).norm() / (tgt - src).norm()))
    assert all(a > b > 0 for a, b in zip(flow, flow[1:])), flow


@pytest.mark.parametrize("kind,sigmas", [("flow", flow_sigmas()), ("eps", karras_sigmas())])
@pytest.mark.parametrize("resample", [False, True])
@pytest.mark.parametrize("integrator,mask", [("exponential", None), ("exponential", 0.4), ("euler", 0.4)])
def test_identical_conds_return_source_exactly_any_integrator_and_mask(kind, sigmas, resample, integrator, mask):
    den = finite_set(kind)
    src = torch.randn(2, 2, 4, 4)
    c = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
    m = None if mask is None else torch.full((1, 1, 4, 4), mask)
    out = S.sample_syncsde(S.pair_denoiser(den, c, c.clone()), torch.zeros_like(src), sigmas, source=src, kind=kind,
                           seed=3, resample=resample, integrator=integrator, mask=m)
    assert torch.equal(out, src)


def reference_loop(model, src, sigmas, noise, start, kind, step, mask=None):
    """Independent transcription of the coupled loop in float64, in the drift form ``f(x) = 2(x0hat - x)/s - [flow]
    x/(1-s)``: path ``B_i = sum_{j>=i} z_j sqrt(2 m_j h_j)/alpha(m_j)^1.5``, source state ``alpha_i (x0 + B_i)``, the
    target seen at ``X_src + D``; ``step(D, delta, fdiff, s, s_next)`` advances ``D`` given the prediction difference
    and the drift difference ``f(X_src + D) - f(X_src)``. With a mask ``m``: ``D`` is zeroed where ``m = 0`` after every
    step and the output is ``x0 + m D``."""
    flow = kind == "flow"
    sl = [float(v) for v in sigmas]
    n, b = len(sl) - 1, src.shape[0]
    alpha = (lambda s: 1.0 - s) if flow else (lambda s: 1.0)  # noqa: E731
    path = [torch.zeros_like(src) for _ in range(n + 1)]
    for j in range(n - 1, -1, -1):
        m = (sl[j] + sl[j + 1]) / 2
        path[j] = path[j + 1] + noise[j] * (math.sqrt(2 * m * (sl[j] - sl[j + 1])) / alpha(m) ** 1.5)

    def f(x, x0hat, s):
        return 2 * (x0hat - x) / s - (x / (1 - s) if flow else 0.0)

    d = torch.zeros_like(src)
    for i in range(start, n):
        s = sl[i]
        xs = alpha(s) * (src + path[i])
        xt = xs + d
        den = model(torch.cat([xs, xt]), src.new_full((2 * b,), s))
        ps, pt = den[:b], den[b:]
        d = step(d, pt - ps, f(xt, pt, s) - f(xs, ps, s), s, sl[i + 1])
        if mask is not None:
            d = torch.where(mask > 0, d, torch.zeros_like(d))
    return src + (d if mask is None else mask * d)


def euler_step(d, delta, fdiff, s, s1):
    return d + fdiff * (s - s1)


def exponential_step(kind):
    def step(d, delta, fdiff, s, s1):
        if kind == "eps":
            r2 = (s1 / s) ** 2
            return r2 * d + (1 - r2) * delta
        rho = (s1 / s) ** 2 * (1 - s) / (1 - s1)
        return rho * d + delta * ((1 - s1) - rho * (1 - s))
    return step


def fine_euler_step(substeps):
    """The step ODE ``dD/ds = k D - 2 Delta/s`` with ``Delta`` frozen, by ``substeps`` uniform Euler substeps (tracked as
    ``D = p D_i + q Delta``), Richardson-extrapolated from ``substeps`` and ``2 substeps``."""
    def coeffs(s, s1, kind, m):
        p, q, h = 1.0, 0.0, (s - s1) / m
        for j in range(m):
            u = s - j * h
            k = 2 / u + (1 / (1 - u) if kind == "flow" else 0.0)
            p, q = p * (1 - k * h), q * (1 - k * h) + 2 * h / u
        return p, q

    def make(kind):
        def step(d, delta, fdiff, s, s1):
            p1, q1 = coeffs(s, s1, kind, substeps)
            p2, q2 = coeffs(s, s1, kind, 2 * substeps)
            return (2 * p2 - p1) * d + (2 * q2 - q1) * delta
        return step
    return make


@pytest.mark.parametrize("mask", [None, "grey"])
@pytest.mark.parametrize("integrator", ["euler", "exponential"])
@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_sampler_matches_the_reference_loop(kind, integrator, mask):
    den = finite_set(kind, shape=(2, 4, 4), seed=3)
    den.images = den.images.double()
    src = (den.images[0:1] + 0.2 * torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(1),
                                              dtype=torch.float64))
    sig = (flow_sigmas() if kind == "flow" else karras_sigmas()).double()
    noise = torch.randn(28, 1, 2, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    m = None if mask is None else torch.cat([torch.ones(8, dtype=torch.float64),
                                             torch.linspace(0, 1, 8, dtype=torch.float64)]).reshape(1, 1, 4, 4)
    model = S.pair_denoiser(den, onehot(0).double(), onehot(2).double())
    out = S.sample_syncsde(model, src, sig, source=src, kind=kind, noise=noise, mask=m, integrator=integrator)
    step = euler_step if integrator == "euler" else exponential_step(kind)
    ref = reference_loop(model, src, sig, noise, 4, kind, step, m)
    assert float((out - src).abs().max()) > 0.1
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_exponential_matches_a_fine_step_euler_of_the_same_ode(kind):
    """With a posterior-mean model of a 3-point set (predictions depend on the state), the exponential update equals the
    exact solution of each step's ODE, here 20000- and 40000-substep Euler, Richardson-extrapolated."""
    den = finite_set(kind, shape=(2, 4, 4), seed=3)
    den.images = den.images.double()
    src = den.images[0:1].clone()
    sig = (flow_sigmas(12) if kind == "flow" else karras_sigmas(12)).double()
    noise = torch.randn(12, 1, 2, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    model = S.pair_denoiser(den, onehot(0).double(), onehot(2).double())
    out = S.sample_syncsde(model, src, sig, source=src, kind=kind, noise=noise, integrator="exponential",
                           start_index=2)
    fine = reference_loop(model, src, sig, noise, 2, kind, fine_euler_step(20000)(kind))
    assert float((out - src).abs().max()) > 0.1
    torch.testing.assert_close(out, fine, rtol=0, atol=1e-8)


def test_seed_draws_come_from_the_shared_noise_module():
    """``seed`` -> the path draws of :func:`pixels_core.noise.randn` (CPU, any widget seed): the draws for the steps
    run (from the start index) are the first ``N - start`` of that stream."""
    from pixels_core import noise as pxnoise
    den = finite_set("flow")
    src = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    model = S.pair_denoiser(den, onehot(0), onehot(2))
    for seed in (0, 7, 2 ** 64 - 1):
        draws = pxnoise.randn((24, 1, 2, 4, 4), seed, "sync-SDE path")
        assert torch.equal(S.draw_noise(24, (1, 2, 4, 4), seed), draws)
        explicit = torch.cat([torch.zeros(4, 1, 2, 4, 4), draws])
        a = S.sample_syncsde(model, src, flow_sigmas(), source=src, kind="flow", seed=seed)
        b = S.sample_syncsde(model, src, flow_sigmas(), source=src, kind="flow", noise=explicit)
        assert torch.equal(a, b)
