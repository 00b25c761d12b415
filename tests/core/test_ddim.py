"""pixels_core.ddim against independent float64 transcriptions: DDIM's Eq. 12 (eta = 0) in alpha-bar form with
alpha_bar = 1 / (1 + sigma^2), the flow Euler step, and hand-written loops of both inversions (pix2pix-zero's as OIG
ships it, and the exact one with diffusers' first inverse step and fixed-point refinement)."""
import math

import pytest
import torch

from pixels_core import ddim, inversion
from pixels_core.analytic import FiniteSetDenoiser, GaussianDenoiser

C, H, W = 4, 4, 4
TOL = dict(rtol=1e-10, atol=1e-10)


def rand(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def sd1_alphas_cumprod():
    """SD1.x's scaled-linear schedule (diffusers: beta_start 0.00085, beta_end 0.012, 1000 steps)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def set_model(kind="eps", seed=3):
    """A nonlinear denoiser: exact posterior mean of six points (eps or flow noise)."""
    return FiniteSetDenoiser(rand(6, C, H, W, seed=seed), kind=kind)


def eps_vp(model, v, ac_t, sigma_t):
    """The host adapter written out: eps_theta(v, t) of a VP latent v from a k-diffusion x0-denoiser."""
    x = v / math.sqrt(ac_t)
    d = model(x, torch.full((1,), float(sigma_t), dtype=torch.float64))
    return (x - d) / sigma_t


# ------------------------------------------------------------------------------------------------ the step

@pytest.mark.parametrize("s, sn", [(14.6, 9.0), (3.0, 1.2), (0.5, 0.03), (1.2, 3.0), (0.03, 14.6)])
def test_step_is_ddim_eq12_in_alpha_bar_form(s, sn):
    """x_vp' = sqrt(a') x0 + sqrt(1 - a') eps with x_vp = sqrt(a) x, a = 1/(1+sigma^2); down and up."""
    x, x0 = rand(2, C, H, W, seed=1, scale=s + 1), rand(2, C, H, W, seed=2)
    a, an = 1 / (1 + s * s), 1 / (1 + sn * sn)
    x_vp = math.sqrt(a) * x
    eps = (x_vp - math.sqrt(a) * x0) / math.sqrt(1 - a)
    want = (math.sqrt(an) * x0 + math.sqrt(1 - an) * eps) / math.sqrt(an)
    torch.testing.assert_close(ddim.ddim_step(x0, eps, sn), want, **TOL)
    torch.testing.assert_close(ddim.ddim_step(x0, eps, sn, "eps"), want, **TOL)


@pytest.mark.parametrize("s, sn", [(1.0, 0.8), (0.6, 0.25), (0.25, 0.0), (0.1, 0.9)])
def test_step_is_the_flow_euler_step(s, sn):
    """Flow: x' = x + (s' - s) v with the velocity v = eps - x0 and eps = (x - (1 - s) x0) / s."""
    x, x0 = rand(1, C, H, W, seed=4), rand(1, C, H, W, seed=5)
    eps = (x - (1 - s) * x0) / s
    want = x + (sn - s) * (eps - x0)
    torch.testing.assert_close(ddim.ddim_step(x0, eps, sn, "flow"), want, **TOL)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_predict_and_x0_from_eps(kind):
    model, x, s = set_model(kind), rand(2, C, H, W, seed=6), 0.7
    d, e = ddim.predict(model, x, s, {}, kind)
    alpha = 1 - s if kind == "flow" else 1.0
    torch.testing.assert_close(d, model(x, torch.full((2,), s, dtype=torch.float64)), **TOL)
    torch.testing.assert_close(e, (x - alpha * d) / s, **TOL)
    torch.testing.assert_close(ddim.x0_from_eps(x, e, s, kind), d, **TOL)


def test_sample_ddim_is_the_alpha_bar_loop():
    model, sig = set_model(), torch.tensor([9.0, 4.0, 1.5, 0.4, 0.0], dtype=torch.float64)
    x = rand(1, C, H, W, seed=7, scale=9.0)
    v = x * math.sqrt(1 / (1 + 81.0))
    for i in range(4):
        a, an = 1 / (1 + float(sig[i]) ** 2), 1 / (1 + float(sig[i + 1]) ** 2)
        e = eps_vp(model, v, a, sig[i])
        v = math.sqrt(an) * (v - math.sqrt(1 - a) * e) / math.sqrt(a) + math.sqrt(1 - an) * e
    torch.testing.assert_close(ddim.sample_ddim(model, x, sig), v, **TOL)


def test_sample_ddim_flow_is_euler():
    model, sig = set_model("flow"), torch.tensor([1.0, 0.7, 0.3, 0.0], dtype=torch.float64)
    x = rand(1, C, H, W, seed=8)
    want = x
    for i in range(3):
        d = model(want, sig[i:i + 1])
        want = want + (sig[i + 1] - sig[i]) * ((want - (1 - sig[i]) * d) / sig[i] - d)
    torch.testing.assert_close(ddim.sample_ddim(model, x, sig, param="flow"), want, **TOL)


# ------------------------------------------------------------------------------------------------ the authors' inversion

def authors_inversion(model, x0, n, ac, steps_offset=1, one_back=True):
    """pix2pix-zero's DDIMInversion.__call__ + DDIMInverseScheduler.step(reverse=True) as OIG ships them, in
    alpha-bar form, guidance 1: timesteps.flip(0)[1:-1]; a_t = ac[t - 1], a_prev = ac[t + 1000 // n - 1]."""
    ratio = 1000 // n
    timesteps = [k * ratio + steps_offset for k in range(n)][::-1]  # set_timesteps: descending
    sig = lambda t: math.sqrt((1 - ac[t]) / ac[t])  # noqa: E731
    latents, calls = x0.clone(), 0
    for t in timesteps[::-1][1:-1]:
        e = eps_vp(model, latents, ac[t], sig(t))  # the UNet at timestep t on the VP latent
        calls += 1
        prev = t + ratio
        a_t = ac[t - 1] if one_back else ac[t]
        a_prev = (ac[prev - 1] if one_back else ac[prev]) if prev <= 1000 else torch.tensor(1.0)
        pred_x0 = (latents - (1 - a_t) ** 0.5 * e) / a_t.sqrt()
        latents = a_prev.sqrt() * pred_x0 + (1 - a_prev).sqrt() * e
    return latents, timesteps, calls


def ddim_uniform(ac, n):
    """SD1.x sigmas at diffusers' DDIM timesteps (steps_offset 1: 1, 1 + 1000 // n, ...), descending, then 0."""
    table = ((1 - ac) / ac).sqrt()
    ts = [k * (1000 // n) + 1 for k in range(n)]
    return torch.cat([table[ts].flip(0), torch.zeros(1, dtype=torch.float64)]), table


@pytest.mark.parametrize("n", [50, 10, 7, 3])
def test_authors_inversion_is_pix2pix_zeros_loop(n):
    ac = sd1_alphas_cumprod()
    sig, table = ddim_uniform(ac, n)
    model, x0 = set_model(seed=9), rand(1, C, H, W, seed=10) * 0.5
    want_vp, timesteps, want_calls = authors_inversion(model, x0, n, ac)
    model.calls = 0
    traj = ddim.ddim_invert(model, x0, sig, convention="authors", train_sigmas=table)
    assert model.calls == want_calls == max(n - 2, 0)
    assert len(traj) == n - 1
    # their sampler starts the edit at timesteps[0] with this VP latent: k-diffusion scale there is v / sqrt(ac[t0])
    torch.testing.assert_close(traj[0], want_vp / ac[timesteps[0]].sqrt(), **TOL)
    torch.testing.assert_close(traj[-1], x0 / ac[timesteps[-2]].sqrt(), **TOL)  # x0 unnoised at the second-lowest


def test_authors_inversion_without_the_table_reads_alphas_at_the_schedule():
    ac = sd1_alphas_cumprod()
    sig, _ = ddim_uniform(ac, 20)
    model, x0 = set_model(seed=11), rand(1, C, H, W, seed=12) * 0.5
    want_vp, timesteps, _ = authors_inversion(model, x0, 20, ac, one_back=False)
    traj = ddim.ddim_invert(model, x0, sig, convention="authors")
    torch.testing.assert_close(traj[0], want_vp / ac[timesteps[0]].sqrt(), **TOL)
    with_table = ddim.ddim_invert(model, x0, sig, convention="authors", train_sigmas=((1 - ac) / ac).sqrt())
    assert (with_table[0] - traj[0]).abs().max() > 1e-4  # the one-step-back reading matters


def test_one_step_back_is_one_index_down_the_table():
    ac = sd1_alphas_cumprod()
    table = ((1 - ac) / ac).sqrt()
    ts = torch.tensor([981, 500, 21, 1, 0])
    got = ddim.one_step_back(table[ts], table)
    torch.testing.assert_close(got, torch.cat([table[ts[:-1] - 1], torch.zeros(1, dtype=torch.float64)]), **TOL)
    with pytest.raises(ValueError, match="train_sigmas"):
        ddim.one_step_back(table[ts], table.flip(0))


# ------------------------------------------------------------------------------------------------ the exact inversion

def exact_inversion_vp(model, x0, sig, refine=0):
    """N steps in alpha-bar form from a = 1: eps at (x_lo, t_lo); the first step (from a = 1, where the model gives no
    eps) evaluates at t_hi, as diffusers' first inverse step, on the clean latent as the k-diffusion state there (the
    VP latent sqrt(a_hi) x0; diffusers feeds x0 itself). Refinement re-evaluates eps at the new point and redoes the
    step from x_lo."""
    abar = [1 / (1 + float(s) ** 2) for s in sig]
    vs = [x0.clone()]
    v = x0.clone()
    for i in range(len(sig) - 1, 0, -1):
        a_lo, a_hi = abar[i], abar[i - 1]
        if float(sig[i]) == 0:
            e = eps_vp(model, math.sqrt(a_hi) * v, a_hi, sig[i - 1])
        else:
            e = eps_vp(model, v, a_lo, sig[i])
        step = lambda e: math.sqrt(a_hi) * (v - math.sqrt(1 - a_lo) * e) / math.sqrt(a_lo) + math.sqrt(1 - a_hi) * e  # noqa: E731
        nv = step(e)
        for _ in range(refine):
            nv = step(eps_vp(model, nv, a_hi, sig[i - 1]))
        v = nv
        vs.append(v)
    return [vv / math.sqrt(a) for vv, a in zip(vs[::-1], abar)]


@pytest.mark.parametrize("refine", [0, 3])
def test_exact_inversion_is_the_alpha_bar_loop(refine):
    sig = torch.tensor([12.0, 6.0, 2.5, 1.0, 0.3, 0.05, 0.0], dtype=torch.float64)
    model, x0 = set_model(seed=13), rand(1, C, H, W, seed=14) * 0.7
    model.calls = 0
    got = ddim.ddim_invert(model, x0, sig, fixed_point_iters=refine)
    assert model.calls == 6 * (1 + refine)
    want = exact_inversion_vp(model, x0, sig, refine)
    assert len(got) == len(want) == 7
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL)
    torch.testing.assert_close(got[-1], x0, **TOL)


def test_exact_inversion_flow_is_reverse_euler():
    sig = torch.tensor([0.9, 0.6, 0.3, 0.1, 0.0], dtype=torch.float64)
    model, x0 = set_model("flow", seed=15), rand(1, C, H, W, seed=16)
    x, want = x0, [x0]
    for i in range(4, 0, -1):
        if float(sig[i]) == 0:  # first step: eps from the model at the upper level, x0_hat = the state at 0 itself
            d = model(x, sig[i - 1:i])
            x = (1 - sig[i - 1]) * x + sig[i - 1] * (x - (1 - sig[i - 1]) * d) / sig[i - 1]
        else:  # reverse Euler: x + (s_hi - s_lo) v, velocity v = eps - x0 at (x, s_lo)
            d = model(x, sig[i:i + 1])
            x = x + (sig[i - 1] - sig[i]) * ((x - (1 - sig[i]) * d) / sig[i] - d)
        want.append(x)
    for g, w in zip(ddim.ddim_invert(model, x0, sig, param="flow"), want[::-1]):
        torch.testing.assert_close(g, w, **TOL)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_refined_exact_inversion_inverts_every_sampler_step(kind):
    """With enough refinement each inverse step is the exact inverse of the forward DDIM step, so sampling back
    from x_T returns the source to round-off."""
    sig = (torch.tensor([0.95, 0.7, 0.45, 0.2, 0.05, 0.0]) if kind == "flow"
           else torch.tensor([14.6, 5.0, 1.8, 0.6, 0.15, 0.0])).double()
    model = GaussianDenoiser(rand(1, C, H, W, seed=17), std=0.8, kind=kind)
    x0 = rand(1, C, H, W, seed=18)
    traj = ddim.ddim_invert(model, x0, sig, param=kind, fixed_point_iters=200)
    for i in range(len(sig) - 1):
        d, e = ddim.predict(model, traj[i], sig[i], {}, kind)
        torch.testing.assert_close(ddim.ddim_step(d, e, sig[i + 1], kind), traj[i + 1], rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(ddim.sample_ddim(model, traj[0], sig, param=kind), x0, rtol=1e-8, atol=1e-8)


def test_plain_inversions_reconstruct_to_first_order_and_refinement_beats_them():
    ac = sd1_alphas_cumprod()
    sig, table = ddim_uniform(ac, 50)
    model = GaussianDenoiser(rand(1, C, H, W, seed=19), std=1.0)
    x0 = model.mean + rand(1, C, H, W, seed=20)
    err = {}
    for name, kw in {"authors": dict(convention="authors", train_sigmas=table), "plain": {},
                     "refined": dict(fixed_point_iters=2)}.items():
        rec = ddim.sample_ddim(model, ddim.ddim_invert(model, x0, sig, **kw)[0], sig)
        err[name] = float((rec - x0).norm() / x0.norm())
    assert err["authors"] < 0.08 and err["plain"] < 0.08
    assert err["refined"] < 1e-3 and err["refined"] < 0.01 * min(err["authors"], err["plain"])


def test_inversion_errors_and_callback():
    sig, model, x0 = torch.tensor([2.0, 1.0, 0.5, 0.0]), set_model(), rand(1, C, H, W, seed=21)
    with pytest.raises(ValueError, match="convention"):
        ddim.ddim_invert(model, x0, sig, convention="pix2pix")
    with pytest.raises(ValueError, match="no refinement"):
        ddim.ddim_invert(model, x0, sig, convention="authors", fixed_point_iters=1)
    with pytest.raises(ValueError, match=">= 0"):
        ddim.ddim_invert(model, x0, sig, fixed_point_iters=-1)
    with pytest.raises(ValueError, match="strictly descending"):
        ddim.ddim_invert(model, x0, sig.flip(0))
    seen = []
    traj = ddim.ddim_invert(model, x0, sig, callback=lambda d: seen.append((d["i"], float(d["sigma"]), d["x"])))
    assert [(i, s) for i, s, _ in seen] == [(0, 0.5), (1, 1.0), (2, 2.0)]
    assert all(torch.equal(x, traj[2 - i]) for i, _, x in seen)


def test_inversion_module_re_exports_the_one_ddim():
    assert inversion.invert is ddim.ddim_invert
    assert inversion.ddim_step is ddim.ddim_step
    assert inversion.predict is ddim.predict and inversion.sample_ddim is ddim.sample_ddim
    with pytest.raises(ValueError, match="strictly descending"):
        inversion.check_sigmas(torch.tensor([1.0, 2.0]))
