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
# identical conditioning -> the source, exactly
# ---------------------------------------------------------------------------------------------

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
# the authors' flow update written out directly (pipeline_syncsde.py), with true CFG on the target
# ---------------------------------------------------------------------------------------------

def authors_flux_loop(velocity, image_latents, sigmas, iid_noise, starting_index, c_src, c_tgt, c_neg, true_cfg):
    """Line-by-line transcription of the authors' loop; ``velocity(x, s, c)`` plays Flux's noise_pred."""
    n = len(sigmas) - 1
    shape = image_latents.shape
    brownian_int = torch.zeros(n + 1, *shape)
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
    torch.manual_seed(0)
    den = finite_set("flow", m=4, shape=(3, 4, 4))
    sig = flow_sigmas(28).double().float()
    src = den.images[0:1] + 0.3 * torch.randn(1, 3, 4, 4)
    c_src, c_tgt, c_neg = onehot(0, 4), onehot(2, 4), torch.ones(1, 4)
    cfg = 2.5
    noise = torch.randn(28, 1, 3, 4, 4)

    def velocity(x, s, c):  # Flux's noise_pred: v = eps - x0 = (x - x0hat)/s
        return (x - den(x, s.reshape(1), cond=c)) / s

    ref = authors_flux_loop(velocity, src, sig, noise, start, c_src, c_tgt, c_neg, cfg)
    model = S.pair_denoiser(den, c_src, c_tgt, c_neg, c_neg, source_cfg=1.0, target_cfg=cfg)
    calls0 = den.calls
    out = S.sample_syncsde(model, src, sig, source=src, kind="flow", start_index=start, noise=noise)
    assert den.calls - calls0 == 28 - start  # one batched call per step
    assert (out - src).abs().max() > 1e-2  # it did edit
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


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


def test_mask_confines_the_edit():
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1
    src = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    out = _edit(3, mask=mask)
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
