"""PIXELS progressive sampler (Algorithm 1 of "PIXELS: Progressive Image Exemplar-based Editing with Latent Surgery")
against analytic denoisers."""
import math

import pytest
import torch

from pixels_core import parameterization as P
from pixels_core import pixels as px
from pixels_core.analytic import FiniteSetDenoiser
from tests.core._kdiffusion import sample_dpmpp_2m, sample_euler_ancestral

H = W = 8


def karras(n, smin=0.03, smax=14.6, rho=7.0):
    r = torch.linspace(0, 1, n)
    s = (smax ** (1 / rho) + r * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)])


def flow_sigmas(n):
    return torch.cat([torch.linspace(1.0, 0.02, n), torch.zeros(1)])


def setup(kind, seed=0, b=1, per_pixel=False):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn(4, 2, H, W, generator=g)
    src, ex = imgs[0:1].expand(b, -1, -1, -1).clone(), imgs[1:2].expand(b, -1, -1, -1).clone()
    noise = torch.randn(b, 2, H, W, generator=g)
    ex_noise = torch.randn(b, 2, H, W, generator=g)
    ramp = torch.linspace(0, 1, W).expand(1, 1, H, W).clone()
    return FiniteSetDenoiser(imgs, kind, per_pixel), src, ex, noise, ex_noise, ramp


def algorithm1(model, src, ex, emap, n_src, n_ex, sigmas, param, states=None):
    """Direct transcription of Algorithm 1 with an Euler (DDIM-equivalent) denoise step (``states`` collects the
    latent after every step)."""
    N = len(sigmas) - 1
    z = None
    for i in range(N):
        s = sigmas[i]
        mask = (emap > i / N).float()
        if i == 0:
            z = param.add_noise(s, n_src, src) * mask + param.add_noise(s, n_ex, ex) * (1 - mask)
        else:
            z = param.add_noise(s, n_src, src) * mask + z * (1 - mask)
        d = model(z, s.expand(z.shape[0]))
        z = z + (z - d) / s * (sigmas[i + 1] - s)
        if states is not None:
            states.append(z.clone())
    return z


def run(model, src, ex, emap, noise, ex_noise, sigmas, param, **kw):
    x = param.add_noise(sigmas[0], noise, src)
    return px.sample_pixels(model, x, sigmas, source=src, noise=noise, exemplars=[ex], exemplar_noises=[ex_noise],
                            edit_maps=[emap], param=param, **kw)


@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("mode", ["stepwise", "wrapped"])
def test_k1_equals_algorithm1(kind, mode):
    param = P.get(kind)
    model, src, ex, noise, ex_noise, ramp = setup(kind)
    sigmas = karras(12) if kind == "eps" else flow_sigmas(12)
    ref_states, seen = [], []

    def spy(x, sigma, **kw):  # the model inputs: the state each step starts from, after the blend
        seen.append(x.clone())
        return model(x, sigma, **kw)

    ref = algorithm1(spy, src, ex, ramp, noise, ex_noise, sigmas, param, states=ref_states)
    ref_inputs, seen = seen, []
    out = run(spy, src, ex, ramp, noise, ex_noise, sigmas, param, mode=mode, final="model")
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (out - ref).abs().max()
    # step by step, not only at the end (the analytic model snaps to one of its images at the last sigma)
    assert len(seen) == len(ref_inputs) == len(sigmas) - 1
    for i, (a, b) in enumerate(zip(seen, ref_inputs)):
        if mode == "stepwise":  # the model sees exactly Algorithm 1's blended state
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (i, (a - b).abs().max())
        # wrapped: the sampler's own state differs on held pixels (it is re-blended inside the denoiser), so
        # compare where the state matters: on pixels released at this step or earlier
        released = (ramp <= i / (len(sigmas) - 1)).expand_as(a)
        assert torch.allclose(a[released], b[released], atol=1e-5, rtol=1e-5), (i, (a - b).abs().max())


@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("mode", ["stepwise", "wrapped"])
def test_map_one_ends_at_source_and_map_zero_starts_from_exemplar(kind, mode):
    param = P.get(kind)
    model, src, ex, noise, ex_noise, ramp = setup(kind, seed=1, per_pixel=True)
    emap = torch.zeros(1, 1, H, W)
    emap[..., : W // 2] = 1.0  # left half keeps the source, right half takes the exemplar
    seen = []

    def spy(x, sigma, **kw):
        seen.append(x.clone())
        return model(x, sigma, **kw)

    sigmas = karras(10) if kind == "eps" else flow_sigmas(10)
    out = run(spy, src, ex, emap, noise, ex_noise, sigmas, param, mode=mode)
    right = emap == 0
    want0 = param.add_noise(sigmas[0], ex_noise, ex)
    assert torch.allclose(seen[0].masked_select(right), want0.masked_select(right), atol=1e-6)
    left = (emap == 1).expand_as(out)
    assert torch.equal(out[left], src[left])  # bit for bit: white keeps the source (default)
    assert (out - src).masked_select(right).abs().mean() > 0.1  # the right half moved away from the source


@pytest.mark.parametrize("kind", ["eps", "flow"])
@pytest.mark.parametrize("mode", ["stepwise", "wrapped"])
def test_kept_pixels_whatever_the_model_predicts(kind, mode):
    """A model that predicts the exemplar everywhere: by default white pixels still end exactly at the source; the
    paper-literal last step hands them to the model, which takes them to the exemplar."""
    param = P.get(kind)
    _, src, ex, noise, ex_noise, _ = setup(kind, seed=8)
    always_exemplar = lambda x, sigma, **kw: ex.expand_as(x).clone()  # noqa: E731
    emap = torch.ones(1, 1, H, W)
    emap[..., 0, 0] = 0.0
    emap[..., 1, :] = 0.5
    sigmas = karras(10) if kind == "eps" else flow_sigmas(10)
    kept = (emap == 1).expand_as(src)
    out = run(always_exemplar, src, ex, emap, noise, ex_noise, sigmas, param, mode=mode)
    assert torch.equal(out[kept], src[kept])
    literal = run(always_exemplar, src, ex, emap, noise, ex_noise, sigmas, param, mode=mode, final="model")
    assert torch.allclose(literal[kept], ex[kept], atol=1e-5)
    assert (literal - src)[kept].abs().mean() > 0.3
    released = ~kept  # pixels the map releases are the same under both rules
    assert torch.equal(out[released], literal[released])


def test_final_rule_is_checked():
    model, src, ex, noise, ex_noise, ramp = setup("eps")
    with pytest.raises(ValueError, match="final"):
        run(model, src, ex, ramp, noise, ex_noise, karras(4), P.EPS, final="exemplar")


def test_exemplar_without_black_pixels_is_refused_and_black_point_takes_it():
    model, src, ex, noise, ex_noise, _ = setup("eps", seed=3)
    near_black = torch.ones(1, 1, H, W)
    near_black[..., :, :4] = 1 / 255  # painted "black" that is not exactly 0
    with pytest.raises(ValueError, match=r"exemplar 1: the exemplar fills no latent pixel.*black_point.*0\.00392"):
        run(model, src, ex, near_black, noise, ex_noise, karras(6), P.EPS)
    m = px.prepare_map(near_black, 1, H, W, black_point=0.01)
    assert torch.equal(m[..., :, :4], torch.zeros(1, 1, H, 4)) and torch.equal(m[..., :, 4:], near_black[..., :, 4:])
    seen = []

    def spy(x, sigma, **kw):
        seen.append(x.clone())
        return model(x, sigma, **kw)

    sigmas = karras(6)
    run(spy, src, ex, m, noise, ex_noise, sigmas, P.EPS)
    want0 = P.EPS.add_noise(sigmas[0], ex_noise, ex)
    assert torch.equal(seen[0][..., :4], want0[..., :4])
    with pytest.raises(ValueError, match="black_point"):
        px.prepare_map(near_black, 1, H, W, black_point=1.0)


def test_exemplar_shadowed_by_an_earlier_one_is_refused():
    model, src, ex, noise, ex_noise, _ = setup("eps", seed=3)
    m1 = torch.zeros(1, 1, H, W)
    m2 = torch.ones(1, 1, H, W)
    m2[..., :2] = 0.0
    x = P.EPS.add_noise(14.6, noise, src)
    with pytest.raises(ValueError, match="exemplar 2.*taken by an earlier exemplar"):
        px.sample_pixels(model, x, karras(4), source=src, noise=noise, exemplars=[ex, ex],
                         exemplar_noises=[ex_noise, ex_noise], edit_maps=[m1, m2])


def test_coverage_counts_pixels_at_step_zero():
    combined, owner = px.compose_maps([torch.tensor([[[[0.0, 0.0, 0.5, 1.0]]]]), torch.tensor([[[[1.0, 0.0, 0.0, 1.0]]]])])
    assert px.exemplar_coverage(combined, owner, 2) == [2, 1]
    assert px.never_released(combined, 4).tolist() == [[[[False, False, False, True]]]]


def hand_release_steps(values, n, curve, gamma):
    """Algorithm 1 by hand: step i holds a pixel while ``map > thr_i`` (line 14, strict), ``thr_i = c(i/N)^gamma`` with
    the curve ``c`` written out here; the release step is the first i that does not hold it (N: never released)."""
    def thr(i):
        t = i / n
        c = {"linear": t, "quadratic": t * t, "cubic": t * t * t, "log": math.log1p(i) / math.log1p(n),
             "sigmoid": 1 / (1 + math.exp(3 - 6 * t))}[curve]
        return c ** gamma
    out = []
    for v in values:
        i = 0
        while i < n and v > thr(i):
            i += 1
        out.append(i)
    return out


@pytest.mark.parametrize("curve", px.CURVES)
@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_release_order_follows_curve(curve, gamma):
    param = P.EPS
    model, src, ex, noise, ex_noise, _ = setup("eps", seed=2)
    emap = torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    emap[..., 0, 0] = 0.0  # one pixel takes the exemplar (an exemplar that fills nothing is refused)
    n = 8
    # map values exactly on thresholds (i/8, (i/8)^2, (i/8)^3 are exact in binary): strict '>' releases them at i
    emap[..., 1, :] = torch.arange(W, dtype=torch.float64) / n
    emap[..., 2, :] = (torch.arange(W, dtype=torch.float64) / n) ** 2
    emap[..., 3, :] = (torch.arange(W, dtype=torch.float64) / n) ** 3
    emap = emap.float()
    sigmas = karras(n)
    want = torch.tensor(hand_release_steps(emap.flatten().double().tolist(), n, curve, gamma)).reshape(emap.shape)
    assert torch.equal(px.release_step(emap, n, curve, gamma), want)
    if curve == "linear" and gamma == 1.0:  # the on-threshold row is released exactly at its own step
        assert want[0, 0, 1].tolist() == list(range(W))
    seen = []

    def spy(x, sigma, **kw):  # pulled halfway to the exemplar: a released pixel leaves the noised source at once
        d = 0.5 * model(x, sigma, **kw) + 0.5 * ex
        seen.append((x.clone(), d))
        return d

    run(spy, src, ex, emap, noise, ex_noise, sigmas, param, curve=curve, gamma=gamma)
    assert len(seen) == n
    for i, (x, _) in enumerate(seen):
        held = (want > i).expand_as(x)
        if i == 0:
            continue
        # pixels Algorithm 1 still holds are exactly the noised source at this step ...
        noised = param.add_noise(sigmas[i], noise, src)
        assert torch.allclose(x[held], noised[held], atol=1e-6)
        # ... and released ones carry on from the previous step's Euler update (not overwritten)
        prev_x, prev_d = seen[i - 1]
        stepped = prev_x + (prev_x - prev_d) / sigmas[i - 1] * (sigmas[i] - sigmas[i - 1])
        assert torch.allclose(x[~held], stepped[~held], atol=1e-5)
        newly = ((want == i) & (want > 0)).expand_as(x)  # released at this very step: no longer the noised source
        if newly.any():
            assert (x[newly] - noised[newly]).abs().max() > 1e-3


def test_thresholds_match_paper_formulas():
    n = 10
    for i in range(n):
        t = i / n
        assert px.threshold(i, n, "linear") == pytest.approx(t)
        assert px.threshold(i, n, "quadratic") == pytest.approx(t ** 2)
        assert px.threshold(i, n, "cubic") == pytest.approx(t ** 3)
        assert px.threshold(i, n, "log") == pytest.approx(math.log1p(i) / math.log1p(n))
        assert px.threshold(i, n, "sigmoid") == pytest.approx(1 / (1 + math.exp(-(6 * t - 3))))
        assert px.threshold(i, n, "linear", gamma=2.0) == pytest.approx(t ** 2)
    # strict threshold: a map value equal to thr_i is released at step i
    assert px.release_step(torch.tensor([0.0, 0.5, 0.51, 1.0]), 2).tolist() == [0, 1, 2, 2]


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_multistep_rule_keeps_held_pixels_on_the_noised_source(kind):
    param = P.get(kind)
    model, src, ex, noise, ex_noise, ramp = setup(kind, seed=4)
    sigmas = karras(10) if kind == "eps" else flow_sigmas(10)
    seen = []

    def spy(x, sigma, **kw):
        seen.append(x.clone())
        return model(x, sigma, **kw)

    states = []
    out = run(spy, src, ex, ramp, noise, ex_noise, sigmas, param, sampler=sample_dpmpp_2m,
              callback=lambda d: states.append(d["x"].clone()))
    assert len(seen) == len(sigmas) - 1 == len(states)
    n = len(sigmas) - 1
    for i in range(1, n):
        held = (ramp > i / n).expand_as(src)
        noised = param.add_noise(sigmas[i], noise, src)
        # the model input is re-blended by the wrapper, so this holds by construction ...
        assert torch.allclose(seen[i][held], noised[held], atol=1e-5)
        # ... the real claim: the sampler's OWN state (its history included) stays on the noised source
        assert torch.allclose(states[i][held], noised[held], atol=1e-4), (i, (states[i] - noised)[held].abs().max())
    assert torch.isfinite(out).all()


def sample_midpoint(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """A second-order sampler that calls the model between schedule sigmas (as dpm_2 or dpm_fast do)."""
    extra_args = extra_args or {}
    s_in = x.new_ones(x.shape[0])
    for i in range(len(sigmas) - 1):
        d = (x - model(x, sigmas[i] * s_in, **extra_args)) / sigmas[i]
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i]})
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
            continue
        mid = (sigmas[i] * sigmas[i + 1]).sqrt()
        x_mid = x + d * (mid - sigmas[i])
        d_mid = (x_mid - model(x_mid, mid * s_in, **extra_args)) / mid
        x = x + d_mid * (sigmas[i + 1] - sigmas[i])
    return x


def test_wrapped_rule_holds_pixels_at_in_between_sigmas():
    """Model calls between schedule sigmas see the source noised at *that* sigma (same noise) where held."""
    param = P.EPS
    model, src, ex, noise, ex_noise, ramp = setup("eps", seed=9)
    sigmas = karras(8)
    seen = []

    def spy(x, sigma, **kw):
        seen.append((float(sigma.reshape(-1)[0]), x.clone()))
        return model(x, sigma, **kw)

    run(spy, src, ex, ramp, noise, ex_noise, sigmas, param, sampler=sample_midpoint, mode="wrapped")
    n = len(sigmas) - 1
    mids = [(s, x) for s, x in seen if not torch.isclose(sigmas, torch.tensor(s)).any()]
    assert len(mids) == n - 1
    for s, x in mids:
        i = int((sigmas[1:] > s).sum())  # the step this call belongs to
        held = (ramp > i / n).expand_as(src)
        assert held.any()
        noised = param.add_noise(torch.tensor(s), noise, src)
        assert torch.allclose(x[held], noised[held], atol=1e-5), (s, (x - noised)[held].abs().max())


def test_two_exemplars_fill_their_own_black_regions_at_no_extra_model_cost():
    param = P.EPS
    model, src, ex, noise, ex_noise, _ = setup("eps", seed=5)
    ex2 = torch.randn_like(ex)
    ex2_noise = torch.randn_like(ex)
    m1 = torch.ones(1, 1, H, W)
    m1[..., :, :3] = 0.0
    m2 = torch.ones(1, 1, H, W)
    m2[..., :, 5:] = 0.0
    m2[..., :, 3:5] = 0.5
    sigmas = karras(8)
    seen = []

    def spy(x, sigma, **kw):
        seen.append(x.clone())
        return model(x, sigma, **kw)

    x = param.add_noise(sigmas[0], noise, src)
    px.sample_pixels(spy, x, sigmas, source=src, noise=noise, exemplars=[ex, ex2],
                     exemplar_noises=[ex_noise, ex2_noise], edit_maps=[m1, m2])
    z0 = seen[0]
    e1 = param.add_noise(sigmas[0], ex_noise, ex)
    e2 = param.add_noise(sigmas[0], ex2_noise, ex2)
    assert torch.allclose(z0[..., :3], e1[..., :3])
    assert torch.allclose(z0[..., 5:], e2[..., 5:])
    assert torch.allclose(z0[..., 3:5], x[..., 3:5])
    assert len(seen) == len(sigmas) - 1  # one model call per step, as in plain sampling


def test_ties_go_to_the_first_exemplar():
    combined, owner = px.compose_maps([torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)])
    assert owner.eq(0).all() and combined.eq(0).all()


def test_same_seed_same_output_with_stochastic_sampler():
    def once(seed):
        model, src, ex, noise, ex_noise, ramp = setup("eps", seed=6)
        g = torch.Generator().manual_seed(seed)
        ns = lambda s, sn: torch.randn(src.shape, generator=g)  # noqa: E731
        return run(model, src, ex, ramp, noise, ex_noise, karras(8), P.EPS, sampler=sample_euler_ancestral, noise_sampler=ns)

    assert torch.equal(once(1), once(1))
    assert not torch.equal(once(1), once(2))


def test_batch_of_sources_matches_one_by_one():
    model, src, ex, noise, ex_noise, ramp = setup("eps", seed=7, b=2)
    noise[1] = torch.randn_like(noise[1])
    sigmas = karras(6)
    both = run(model, src, ex, ramp, noise, ex_noise, sigmas, P.EPS)
    one = run(model, src[1:], ex[1:], ramp, noise[1:], ex_noise[1:], sigmas, P.EPS)
    assert torch.allclose(both[1:], one, atol=1e-6)


@pytest.mark.parametrize("bad,msg", [
    (torch.ones(1, 1, H, W), "all white"),
    (torch.full((1, 1, H, W), float("nan")), "NaN"),
    (torch.full((1, 1, H, W), 2.0), "outside"),
    (torch.full((1, 1, H, W), 0.999), "too bright"),
    (torch.ones(3, 1, H, W) * 0.5, "batch"),
])
def test_bad_maps_get_clear_errors(bad, msg):
    model, src, ex, noise, ex_noise, _ = setup("eps")
    with pytest.raises(ValueError, match=msg):
        m = px.prepare_map(bad, 1, H, W)
        run(model, src, ex, m, noise, ex_noise, karras(4), P.EPS)


def test_no_exemplar_and_size_mismatch_errors():
    model, src, ex, noise, ex_noise, ramp = setup("eps")
    x = P.EPS.add_noise(14.6, noise, src)
    with pytest.raises(ValueError, match="K = 0"):
        px.sample_pixels(model, x, karras(4), source=src, noise=noise, exemplars=[], exemplar_noises=[], edit_maps=[])
    with pytest.raises(ValueError, match="resize the exemplar"):
        px.sample_pixels(model, x, karras(4), source=src, noise=noise, exemplars=[ex[..., :4]],
                         exemplar_noises=[ex_noise[..., :4]], edit_maps=[ramp])


def test_prepare_map_resizes_mask_layouts():
    m = torch.rand(64, 48)
    assert px.prepare_map(m, 2, 8, 6).shape == (1, 1, 8, 6)
    assert px.prepare_map(torch.rand(2, 64, 48), 2, 8, 6).shape == (2, 1, 8, 6)
    # centre crop to the target aspect, then resize
    wide = torch.zeros(1, 8, 16)
    wide[..., 4:12] = 1
    assert px.prepare_map(wide, 1, 4, 4).min() == 1
