"""ITO (ito-paper.txt Sec. 3.2) with analytic denoisers: inversion, preservation, guidance, mask, determinism, errors."""
import pytest
import torch
import torch.nn.functional as F

from pixels_core import inversion as inv
from pixels_core import ito
from pixels_core.analytic import FiniteSetDenoiser, GaussianDenoiser

KINDS = ["eps", "flow"]
H = 16


def schedule(n, kind):
    if kind == "flow":
        return torch.linspace(1.0, 0.0, n + 1)
    smin, smax, rho = 0.03, 14.6, 7.0  # Karras schedule over SD's sigma range
    r = torch.linspace(0, 1, n)
    s = (smax ** (1 / rho) + r * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return torch.cat([s, torch.zeros(1)])


class Switch(torch.nn.Module):
    """Two analytic "conditions": ``cond`` picks the image set the posterior mean is taken over."""

    def __init__(self, **models):
        super().__init__()
        self.m = torch.nn.ModuleDict(models)
        self.calls = 0

    def forward(self, x, sigma, cond="src", **_):
        self.calls += 1
        return self.m[cond](x, sigma)


SRC, EDIT = {"cond": "src"}, {"cond": "edit"}


def scene(kind, extra_edit_images=True, seed=0):
    """Per-pixel finite sets: the edit condition replaces region R (and, optionally, offers other images everywhere,
    so that without preservation the background changes too)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(4, 4, H, H, generator=g)
    r = torch.zeros(1, 1, H, H)
    r[..., 4:10, 5:12] = 1
    b = a * (1 - r) + torch.randn(4, 4, H, H, generator=g) * r
    if extra_edit_images:
        b = torch.cat([b, torch.randn(4, 4, H, H, generator=g)])
    model = Switch(src=FiniteSetDenoiser(a, kind, per_pixel=True), edit=FiniteSetDenoiser(b, kind, per_pixel=True))
    return model, a[:1], b, r, g


# ------------------------------------------------------------------------------------------------ inversion

@pytest.mark.parametrize("kind", KINDS)
def test_inversion_then_regeneration_reproduces_source(kind):
    g = torch.Generator().manual_seed(1)
    mean = 0.5 * torch.randn(1, 4, H, H, generator=g)
    model = GaussianDenoiser(mean, 0.7, kind)
    x0 = mean + 0.7 * torch.randn(1, 4, H, H, generator=g)
    sig = schedule(25, kind)
    plain = inv.sample_ddim(model, inv.invert(model, x0, sig, param=kind)[0], sig, param=kind)
    exact = inv.sample_ddim(model, inv.invert(model, x0, sig, param=kind, fixed_point_iters=10)[0], sig, param=kind)
    assert (plain - x0).abs().mean() < 0.1  # DDIM inversion: first-order error
    assert (exact - x0).abs().max() < 1e-4  # fixed-point refinement: the exact inverse of the DDIM step


@pytest.mark.parametrize("kind", KINDS)
def test_same_condition_edit_reproduces_source(kind):
    model, src, _, _, _ = scene(kind)
    sig = schedule(25, kind)
    traj = inv.invert(model, src, sig, SRC, param=kind)
    assert len(traj) == 26 and torch.equal(traj[-1], src)
    out = ito.sample_ito(model, traj[0], sig, SRC, source_traj=traj, lam=1.0, param=kind)
    assert (out - src).abs().max() < 1e-4


def test_invert_model_calls_and_trajectory_order():
    model, src, _, _, _ = scene("eps")
    sig = schedule(10, "eps")
    model.calls = 0
    traj = inv.invert(model, src, sig, SRC, fixed_point_iters=2)
    assert model.calls == 10 * 3
    assert traj[0].abs().mean() > 5 * traj[-1].abs().mean()  # traj[0] is the encoded (noisiest) state


# ------------------------------------------------------------------------------------------------ preservation

@pytest.mark.parametrize("kind,t_u", [("eps", 15), ("flow", 25)])
def test_lambda_one_preserves_outside_mask_and_follows_edit_inside(kind, t_u):
    model, src, b, r, _ = scene(kind)
    sig = schedule(25, kind)
    traj = inv.invert(model, src, sig, SRC, param=kind)

    def run(**kw):
        xs = []
        y = ito.sample_ito(model, traj[0], sig, EDIT, callback=lambda d: xs.append(d["x"]), source_traj=traj,
                           param=kind, **kw)
        # deviation from the source trajectory outside the mask, in the model's native scale, over the optimised steps
        dev = sum((((a - t) * (1 - r)).abs().mean() * ito.opt_scale(s, kind)).item()
                  for a, t, s in zip(xs[:t_u], traj, sig)) / t_u
        return y, dev

    plain, dev_plain = run(lam=1.0, t_u=0)
    y, dev = run(lam=1.0, t_u=t_u, mask=r)
    outside = 1 - r
    assert ((plain - src).abs() * outside).max() > 1.0  # the edit condition alone changes the background
    assert ((y - src).abs() * outside).max() < 1e-3  # preservation keeps it
    assert dev < 0.7 * dev_plain  # y_t stays nearer the source trajectory x_t
    # inside the mask nothing is optimised: the edit condition alone decides (values from its set, not the source)
    assert torch.allclose(y * r, plain * r, atol=1e-5)
    nearest = (y.unsqueeze(1) - b.unsqueeze(0)).norm(dim=2).min(1).values
    assert (nearest * r[0]).max() < 1e-3
    assert ((y - src).abs() * r).sum() / (4 * r.sum()) > 0.3


def test_no_mask_is_whole_image_preservation_eq3():
    model, src, _, r, _ = scene("eps")
    sig = schedule(25, "eps")
    traj = inv.invert(model, src, sig, SRC)
    y = ito.sample_ito(model, traj[0], sig, EDIT, source_traj=traj, lam=1.0, t_u=15)
    plain = ito.sample_ito(model, traj[0], sig, EDIT, source_traj=traj, lam=1.0, t_u=0)
    # the edit condition offers no source values inside R, so only the rest can be kept: and it is
    assert ((y - src).abs() * (1 - r)).max() < 1e-3
    assert ((plain - src).abs() * (1 - r)).max() > 1.0


def test_ito_update_moves_only_outside_mask_under_inference_mode():
    y = torch.zeros(1, 4, 8, 8)
    x = torch.ones(1, 4, 8, 8)
    m = torch.zeros(1, 1, 8, 8)
    m[..., :4] = 1
    with torch.inference_mode():  # as ComfyUI runs nodes
        y_i, x_i, m_i = y.clone(), x.clone(), m.clone()
        out = ito.ito_update(y_i, x_i, None, m_i, lam=1.0, k=1, lr=0.1, scale=0.5)
    assert not out.requires_grad
    assert torch.equal(out[..., :4], y[..., :4])  # zero gradient inside the edit region: Adam leaves it
    # Adam's first step moves by lr (in the scaled space) towards x: 0.1 / 0.5 in sigma space
    assert torch.allclose(out[..., 4:], torch.full_like(out[..., 4:], 0.2), atol=1e-5)


def test_rec_loss_is_preservation_outside_mask_reading_of_eq4():
    y, x = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    m = torch.zeros(1, 1, 6, 6)
    m[..., 2:4, 2:4] = 1
    y2 = x * (1 - m) + y * m  # equal to x outside the mask, anything inside
    assert torch.allclose(ito.rec_loss(y2, x, m), torch.zeros(2), atol=1e-12)
    assert (ito.rec_loss(y, x, m) > 0).all()
    assert torch.allclose(ito.rec_loss(y, x), ((y - x) ** 2).flatten(1).mean(1))


# ------------------------------------------------------------------------------------------------ guidance

@pytest.mark.parametrize("kind", KINDS)
def test_guidance_term_raises_cosine_to_guidance_trajectory(kind):
    model, src, _, r, g = scene(kind)
    sig = schedule(25, kind)
    noise = torch.randn(src.shape, generator=g)
    g0 = ito.generate_guidance(model, src, sig, noise, EDIT, mask=r, param=kind)
    gtraj = inv.invert(model, g0, sig, EDIT, param=kind)

    def mean_cos(lam):
        ys = []
        ito.edit(model, src, sig, SRC, EDIT, callback=lambda d: d["phase"] == "edit" and ys.append(d["x"]),
                 mask=r, guidance=g0, lam=lam, param=kind)
        assert len(ys) == 25
        return sum(F.cosine_similarity(a.flatten(), t.flatten(), dim=0).item() for a, t in zip(ys[:15], gtraj)) / 15

    c1, c06, c0 = mean_cos(1.0), mean_cos(0.6), mean_cos(0.0)
    assert c06 > c1 + 0.05
    assert c0 >= c06
    assert ito.guidance_loss(g0, g0).abs().max() < 1e-6


def test_guidance_generation_lambda_one_from_noise_encoding():
    model, src, _, r, g = scene("eps")
    sig = schedule(25, "eps")
    noise = torch.randn(src.shape, generator=g)
    model.calls = 0
    g0 = ito.generate_guidance(model, src, sig, noise, EDIT, mask=r)
    assert model.calls == 25
    again = ito.generate_guidance(model, src, sig, noise, EDIT, mask=r)
    assert torch.equal(g0, again)
    other = ito.generate_guidance(model, src, sig, torch.randn(src.shape, generator=g), EDIT, mask=r)
    assert not torch.equal(g0, other)  # random-noise encoding: the seed matters


# ------------------------------------------------------------------------------------------------ mask

@pytest.mark.parametrize("kind", KINDS)
def test_mask_covers_region_where_conditions_differ(kind):
    model, src, _, r, _ = scene(kind, extra_edit_images=False)
    sig = schedule(25, kind)
    s = ito.sigma_at_strength(sig, 0.5)
    model.calls = 0
    exact, soft = ito.estimate_mask(model, src, s, SRC, EDIT, n=4, smooth=0.0, param=kind)
    assert model.calls == 8
    assert torch.equal(exact, r)
    smooth, soft = ito.estimate_mask(model, src, s, SRC, EDIT, n=4, smooth=1.0, param=kind)
    grown = F.max_pool2d(r, 3, 1, 1)  # one-pixel dilation
    assert (smooth * r).sum() == r.sum()
    assert (smooth * (1 - grown)).sum() == 0
    assert soft.min() >= 0 and soft.max() <= 1


def test_mask_seeds_deterministic():
    model, src, _, _, _ = scene("eps", extra_edit_images=True)
    sig = schedule(25, "eps")
    s = ito.sigma_at_strength(sig, 0.5)
    a = ito.estimate_mask(model, src, s, SRC, EDIT, n=3, seed=5)[1]
    b = ito.estimate_mask(model, src, s, SRC, EDIT, n=3, seed=5)[1]
    c = ito.estimate_mask(model, src, s, SRC, EDIT, n=3, seed=6)[1]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gaussian_blur_preserves_constant_and_mass():
    m = torch.zeros(1, 1, 21, 21)
    m[..., 10, 10] = 1
    b = ito.gaussian_blur(m, 2.0)
    assert abs(b.sum().item() - 1) < 1e-5 and b.argmax().item() == 10 * 21 + 10
    # the impulse response is the outer product of the normalised 1-D Gaussian, radius ceil(3 sigma) = 6
    t = torch.arange(-6, 7, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / 2.0) ** 2)
    k = k / k.sum()
    want = torch.zeros(21, 21)
    want[4:17, 4:17] = k[:, None] * k[None, :]
    torch.testing.assert_close(b[0, 0], want, atol=1e-7, rtol=1e-5)
    assert torch.allclose(ito.gaussian_blur(torch.ones(2, 1, 5, 7), 3.0), torch.ones(2, 1, 5, 7), atol=1e-6)


# ------------------------------------------------------------------------------------------------ pipeline

def test_full_pipeline_deterministic_and_calls():
    model, src, _, _, g = scene("eps")
    sig = schedule(25, "eps")

    def pipeline():
        model.calls = 0
        m, _ = ito.estimate_mask(model, src, ito.sigma_at_strength(sig, 0.5), SRC, EDIT, n=10, seed=3)
        g0 = ito.generate_guidance(model, src, sig, ito.seed_noise(src.shape, 3, 0), EDIT, mask=m)
        steps = []
        y = ito.edit(model, src, sig, SRC, EDIT, callback=lambda d: steps.append(d["i"]), mask=m, guidance=g0)
        assert steps == list(range(ito.edit_steps(25, True)))
        return y, model.calls

    y1, calls = pipeline()
    y2, _ = pipeline()
    assert torch.equal(y1, y2)
    assert calls == 2 * 10 + 25 + 3 * 25


def test_t_u_zero_is_plain_ddim_and_callback_errors_propagate():
    model, src, _, _, _ = scene("flow")
    sig = schedule(8, "flow")
    traj = inv.invert(model, src, sig, SRC, param="flow")
    a = ito.sample_ito(model, traj[0], sig, EDIT, source_traj=traj, lam=1.0, t_u=0, param="flow")
    b = inv.sample_ddim(model, traj[0], sig, EDIT, param="flow")
    assert torch.equal(a, b)

    class Cancel(Exception):
        pass

    def cb(d):
        raise Cancel()

    with pytest.raises(Cancel):
        ito.sample_ito(model, traj[0], sig, EDIT, callback=cb, source_traj=traj, lam=1.0, t_u=3, param="flow")
    with pytest.raises(Cancel):
        inv.invert(model, src, sig, SRC, callback=cb, param="flow")


def test_batch_items_are_independent():
    model, src, _, r, _ = scene("eps")
    sig = schedule(10, "eps")
    x = torch.cat([src, src.flip(-1)])
    traj = inv.invert(model, x, sig, SRC)
    both = ito.sample_ito(model, traj[0], sig, EDIT, source_traj=traj, lam=1.0, t_u=5, mask=r)
    one = ito.sample_ito(model, traj[0][1:], sig, EDIT, source_traj=[t[1:] for t in traj], lam=1.0, t_u=5, mask=r)
    assert torch.allclose(both[1:], one, atol=1e-5)


# ------------------------------------------------------------------------------------------------ bad input

def test_bad_parameters_get_clear_messages():
    model, src, _, _, _ = scene("eps")
    sig = schedule(10, "eps")
    traj = inv.invert(model, src, sig, SRC)
    with pytest.raises(ValueError, match="lambda must be between 0 and 1"):
        ito.sample_ito(model, traj[0], sig, EDIT, source_traj=traj, lam=1.5, t_u=5)
    with pytest.raises(ValueError, match="lambda must be between 0 and 1"):
        ito.edit(model, src, sig, SRC, EDIT, lam=-0.1, t_u=5, guidance=src)
    with pytest.raises(ValueError, match=r"t_u \(15\) must be between 0 and the number of decoding steps \(10\)"):
        ito.sample_ito(model, traj[0], sig, EDIT, source_traj=traj, lam=1.0, t_u=15)
    with pytest.raises(ValueError, match="needs a guidance image"):
        ito.edit(model, src, sig, SRC, EDIT, lam=0.6, t_u=5)
    with pytest.raises(ValueError, match="guidance latent has shape"):
        ito.edit(model, src, sig, SRC, EDIT, lam=0.6, t_u=5, guidance=torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="strictly descending"):
        inv.invert(model, src, sig.flip(0), SRC)


def test_mask_wrong_size_is_resized_and_bad_masks_rejected():
    m = torch.zeros(1, 128, 128)
    m[:, 32:96, 32:96] = 1
    lat = ito.prepare_mask(m, 2, 16, 16)
    assert lat.shape == (2, 1, 16, 16)
    assert lat[0, 0, 8, 8] == 1 and lat[0, 0, 0, 0] == 0
    assert ito.prepare_mask(torch.ones(40, 30), 1, 16, 16).shape == (1, 1, 16, 16)  # other aspect: resized too
    with pytest.raises(ValueError, match="NaN"):
        ito.prepare_mask(torch.full((16, 16), float("nan")), 1, 16, 16)
    with pytest.raises(ValueError, match="batch 3"):
        ito.prepare_mask(torch.zeros(3, 16, 16), 2, 16, 16)
    with pytest.raises(ValueError, match="single-channel"):
        ito.prepare_mask(torch.zeros(1, 3, 16, 16), 1, 16, 16)


def test_adam_matches_torch_optim_adam():
    g = torch.Generator().manual_seed(2)
    y, x, gd = (torch.randn(2, 4, 6, 6, generator=g) for _ in range(3))
    m = (torch.rand(1, 1, 6, 6, generator=g) > 0.5).float()
    out = ito.ito_update(y, x, gd, m, lam=0.6, k=3, lr=0.1, scale=0.7)
    ref = (y * 0.7).clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        ito.objective(ref, x * 0.7, gd, m, 0.6).backward()
        opt.step()
    assert torch.allclose(out, ref.detach() / 0.7, atol=1e-6)


def test_edit_inverts_guidance_with_guidance_args():
    model, src, _, r, _ = scene("eps")
    sig = schedule(6, "eps")
    seen = []
    model.m["gi"] = model.m["edit"]
    orig = model.forward

    def spy(x, sigma, cond="src", **kw):
        seen.append(cond)
        return orig(x, sigma, cond=cond, **kw)

    model.forward = spy
    ito.edit(model, src, sig, SRC, EDIT, mask=r, guidance=src, lam=0.5, t_u=2, guidance_args={"cond": "gi"})
    assert seen == ["src"] * 6 + ["gi"] * 6 + ["edit"] * 6
