"""PIXELS with K = 0 exemplars: progressive soft inpainting (Algorithm 1 of "PIXELS: Progressive Image Exemplar-based
Editing with Latent Surgery" without its exemplar term), against analytic denoisers (EPS and flow)."""
import pytest
import torch

from pixels_core import parameterization as P
from pixels_core import pixels as px
from pixels_core.analytic import FiniteSetDenoiser
from tests.core._kdiffusion import sample_dpmpp_2m, sample_euler_ancestral
from tests.core.test_pixels import H, W, flow_sigmas, hand_release_steps, karras

KINDS = ["eps", "flow"]
MODES = ["stepwise", "wrapped"]


def sigmas_for(kind, n):
    return karras(n) if kind == "eps" else flow_sigmas(n)


def setup(kind, seed=0):
    """Source, a known target (the one image the model knows: released pixels must end on it), one noise draw and
    a map: white (keep) on the left 3 columns, grey 0.5 on the next 2, black (inpaint) on the right 3."""
    g = torch.Generator().manual_seed(seed)
    src, target = torch.randn(1, 2, H, W, generator=g), torch.randn(1, 2, H, W, generator=g)
    noise = torch.randn(1, 2, H, W, generator=g)
    emap = torch.ones(1, 1, H, W)
    emap[..., 3:5] = 0.5
    emap[..., 5:] = 0.0
    return FiniteSetDenoiser(target, kind, per_pixel=True), src, target, noise, emap


def inpaint(model, src, noise, emap, sigmas, param, **kw):
    x = param.add_noise(sigmas[0], noise, src)
    return px.sample_inpaint(model, x, sigmas, source=src, noise=noise, edit_map=emap, param=param, **kw)


def direct_loop(model, src, emap, noise, sigmas, param, states=None):
    """Algorithm 1 transcribed with no exemplar (line 10 leaves the noised source; line 14 ``mask = map > (T-t)/T``;
    line 15 re-inserts the source noised to the current sigma) and an Euler denoise step."""
    N = len(sigmas) - 1
    z = param.add_noise(sigmas[0], noise, src)
    for i in range(N):
        s = sigmas[i]
        mask = (emap > i / N).float()
        z = param.add_noise(s, noise, src) * mask + z * (1 - mask)
        if states is not None:
            states.append(z.clone())
        d = model(z, s.expand(z.shape[0]))
        z = z + (z - d) / s * (sigmas[i + 1] - s)
    return z


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_equals_direct_loop(kind, mode):
    param = P.get(kind)
    model, src, target, noise, _ = setup(kind)
    ramp = torch.linspace(0, 1, W).expand(1, 1, H, W).clone()
    sigmas = sigmas_for(kind, 12)
    ref_states, seen = [], []
    ref = direct_loop(model, src, ramp, noise, sigmas, param, states=ref_states)

    def spy(x, sigma, **kw):
        seen.append(x.clone())
        return model(x, sigma, **kw)

    out = inpaint(spy, src, noise, ramp, sigmas, param, mode=mode, final="model")
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (out - ref).abs().max()
    assert len(seen) == len(ref_states) == len(sigmas) - 1
    for i, (a, b) in enumerate(zip(seen, ref_states)):
        if mode == "stepwise":
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (i, (a - b).abs().max())
        released = (ramp <= i / (len(sigmas) - 1)).expand_as(a)
        assert torch.allclose(a[released], b[released], atol=1e-5, rtol=1e-5), (i, (a - b).abs().max())
    # the default final rule changes only the never-released pixels (ramp value 1 > thr_{N-1})
    default = inpaint(model, src, noise, ramp, sigmas, param, mode=mode)
    kept = (ramp > (len(sigmas) - 2) / (len(sigmas) - 1)).expand_as(out)
    assert torch.equal(default[kept], src[kept]) and torch.equal(default[~kept], out[~kept])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_equals_one_exemplar_that_is_the_source(kind, mode):
    """K = 0 is Algorithm 1 with the exemplar term gone: the same as K = 1 with the source as exemplar and the
    source's own noise draw."""
    param = P.get(kind)
    model, src, _, noise, emap = setup(kind, seed=4)
    sigmas = sigmas_for(kind, 10)
    x = param.add_noise(sigmas[0], noise, src)
    k1 = px.sample_pixels(model, x, sigmas, source=src, noise=noise, exemplars=[src], exemplar_noises=[noise],
                          edit_maps=[emap], param=param, mode=mode)
    assert torch.equal(inpaint(model, src, noise, emap, sigmas, param, mode=mode), k1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sampler", [None, sample_dpmpp_2m], ids=["euler", "dpmpp_2m"])
def test_kept_is_source_bit_for_bit_and_released_reach_the_model(kind, mode, sampler):
    param = P.get(kind)
    model, src, target, noise, emap = setup(kind, seed=1)
    out = inpaint(model, src, noise, emap, sigmas_for(kind, 10), param, mode=mode, sampler=sampler)
    keep, black = (emap == 1).expand_as(out), (emap == 0).expand_as(out)
    assert torch.equal(out[keep], src[keep])  # map-1 pixels never drift
    err = (out - target)[black].abs().max() / (target - src)[black].abs().mean()
    assert err < 1e-3, err  # the model fills the released pixels: they end on the one image it knows
    grey = ((emap > 0) & (emap < 1)).expand_as(out)
    assert (out - src)[grey].abs().mean() > 0.1  # released half-way: moved too


@pytest.mark.parametrize("kind", KINDS)
def test_kept_whatever_the_model_predicts(kind):
    """A model that predicts the target everywhere, also where the map holds: the white pixels still end exactly at
    the source; the paper-literal last step hands them to the model."""
    param = P.get(kind)
    _, src, target, noise, emap = setup(kind, seed=2)
    always = lambda x, sigma, **kw: target.expand_as(x).clone()  # noqa: E731
    sigmas = sigmas_for(kind, 8)
    keep = (emap == 1).expand_as(src)
    out = inpaint(always, src, noise, emap, sigmas, param)
    assert torch.equal(out[keep], src[keep])
    assert torch.allclose(out[~keep], target[~keep], atol=1e-5)
    literal = inpaint(always, src, noise, emap, sigmas, param, final="model")
    assert torch.allclose(literal[keep], target[keep], atol=1e-5)


@pytest.mark.parametrize("curve", px.CURVES)
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_release_order_follows_curve(curve, gamma):
    """Each pixel is the re-inserted noised source exactly while the map holds it (``map > thr_i``), and is the
    sampler's own state from the step the curve releases it at."""
    param = P.EPS
    model, src, _, noise, _ = setup("eps", seed=3)
    emap = torch.rand(1, 1, H, W, generator=torch.Generator().manual_seed(5), dtype=torch.float64).float()
    emap[..., 0, 0] = 0.0
    sigmas = karras(10)
    n = len(sigmas) - 1
    seen = []

    def spy(x, sigma, **kw):
        seen.append(x.clone())
        return model(x, sigma, **kw)

    inpaint(spy, src, noise, emap, sigmas, param, curve=curve, gamma=gamma, mode="stepwise")
    steps = torch.tensor(hand_release_steps(emap.flatten().tolist(), n, curve, gamma)).reshape(1, 1, H, W)
    assert torch.equal(px.release_step(emap, n, curve, gamma), steps)
    for i in range(1, n):
        noised = param.add_noise(sigmas[i], noise, src)
        held = (steps > i).expand_as(noised)
        assert torch.equal(seen[i][held], noised[held]), i
        gone = (steps < i).expand_as(noised)  # released before this step: the sampler's state, not the source
        if gone.any():
            assert not torch.allclose(seen[i][gone], noised[gone]), i


def test_polarities_agree_for_inverted_maps():
    """An inpaint-polarity mask (white = change) read as ``1 - mask`` gives the paper-polarity result exactly."""
    model, src, _, noise, emap = setup("eps", seed=6)
    inpaint_mask = 1.0 - emap
    sigmas = karras(8)
    assert torch.equal(inpaint(model, src, noise, emap, sigmas, P.EPS),
                       inpaint(model, src, noise, 1.0 - inpaint_mask, sigmas, P.EPS))


def test_same_seed_same_output():
    def once(seed):
        _, src, _, _, emap = setup("eps", seed=7)
        # several images the model may land on per pixel, so the noise decides where released pixels end
        model = FiniteSetDenoiser(torch.randn(3, 2, H, W, generator=torch.Generator().manual_seed(9)), "eps", True)
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(src.shape, generator=g)
        ns = lambda s, sn: torch.randn(src.shape, generator=g)  # noqa: E731
        return inpaint(model, src, noise, emap, karras(8), P.EPS, sampler=sample_euler_ancestral, noise_sampler=ns), src, emap

    a, src, emap = once(1)
    b, _, _ = once(1)
    c, _, _ = once(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    keep = (emap == 1).expand_as(a)
    assert torch.equal(a[keep], src[keep]) and torch.equal(c[keep], src[keep])


def test_clear_errors():
    model, src, _, noise, emap = setup("eps")
    sigmas = karras(6)
    with pytest.raises(ValueError, match=r"my_map is all white.*nothing to inpaint.*flip it"):
        inpaint(model, src, noise, torch.ones(1, 1, H, W), sigmas, P.EPS, map_name="my_map", map_hint=", or flip it")
    with pytest.raises(ValueError, match=r"my_map is too bright for 6 steps"):
        inpaint(model, src, noise, torch.full((1, 1, H, W), 0.9), sigmas, P.EPS, map_name="my_map")
    bad = emap.clone()
    bad[..., 0, 0] = float("nan")
    with pytest.raises(ValueError, match="edit map contains NaN"):
        inpaint(model, src, noise, bad, sigmas, P.EPS)
    x = P.EPS.add_noise(sigmas[0], noise, src)
    with pytest.raises(ValueError, match="exactly one edit map"):
        px.sample_pixels(model, x, sigmas, source=src, noise=noise, exemplars=[], exemplar_noises=[],
                         edit_maps=[emap, emap])
    with pytest.raises(ValueError, match="one map and one noise per exemplar"):
        px.sample_pixels(model, x, sigmas, source=src, noise=noise, exemplars=[], exemplar_noises=[noise],
                         edit_maps=[emap])


@pytest.mark.parametrize("mode", MODES)
def test_on_step_reports_each_model_call_s_held_mask(mode):
    """``on_step`` (what makes an inpainting checkpoint's mask follow the release) is called before every model
    evaluation with the held mask of that evaluation's step: ``map > thr_i``, the mask the state was blended with."""
    param = P.get("eps")
    model, src, _, noise, emap = setup("eps")
    sigmas = sigmas_for("eps", 10)
    n = len(sigmas) - 1
    events, calls = [], []

    def counting(x, s, **kw):
        calls.append(len(events))
        return model(x, s, **kw)

    kw = dict(mode=mode) if mode == "stepwise" else dict(mode=mode, sampler=sample_dpmpp_2m)
    inpaint(counting, src, noise, emap, sigmas, param, on_step=lambda i, held: events.append((i, held.clone())), **kw)
    # one report before each model call (the sampler probe of mode "auto" is not used here)
    assert len(calls) == n and calls == list(range(1, n + 1))
    assert [i for i, _ in events] == list(range(n))
    for i, held in events:
        assert torch.equal(held, (emap.double() > px.threshold(i, n)).to(held.dtype))
    # the release proceeds: the grey columns are held first, released later
    assert events[0][1][..., 3:5].eq(1).all() and events[-1][1][..., 3:5].eq(0).all()


def test_inpaint_inputs_match_inpaint_model_conditioning():
    """The masked image and mask for one step's release, as ComfyUI's InpaintModelConditioning makes them from a 0/1
    mask (pixels - 0.5, times 1 - mask, + 0.5), each latent cell's block of r x r pixels."""
    g = torch.Generator().manual_seed(3)
    pixels = torch.rand(2, 16, 24, 3, generator=g)
    released = torch.zeros(2, 1, 2, 3)
    released[0, 0, 0, 1] = 1
    released[1, 0, 1, :] = 1
    masked, mask = px.inpaint_inputs(pixels, released)
    assert mask.shape == (2, 1, 16, 24)
    ref_mask = torch.zeros(2, 1, 16, 24)
    ref_mask[0, 0, 0:8, 8:16] = 1
    ref_mask[1, 0, 8:16, :] = 1
    assert torch.equal(mask, ref_mask)
    ref = pixels.clone()
    m = (1.0 - ref_mask).squeeze(1)
    for c in range(3):
        ref[..., c] = (ref[..., c] - 0.5) * m + 0.5
    assert torch.equal(masked, ref)
    assert torch.equal(masked[0, 0:8, 8:16], torch.full((8, 8, 3), 0.5)) and torch.equal(masked[0, 8:], pixels[0, 8:])
    # one mask for a batch of images
    masked1, mask1 = px.inpaint_inputs(pixels, released[:1])
    assert mask1.shape == (2, 1, 16, 24) and torch.equal(mask1[1], ref_mask[0])
    assert torch.equal(masked1[1], px.inpaint_inputs(pixels[1:], released[:1])[0][0])
    with pytest.raises(ValueError, match="does not tile"):
        px.inpaint_inputs(pixels[:, :15], released)
