"""ITO ("Optimisation-based multi-modal semantic image editing", Sec. 3.2): the losses against an independent
float64 transcription of Eq. 3-6, Adam, and the method with analytic denoisers (inversion, preservation, guidance,
mask, determinism, errors)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from pixels_core import inversion as inv
from pixels_core import ito, noise
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


# ------------------------------------------------------------------------------------------------ Eq. 3-6, transcribed
# An independent float64 transcription of the paper's losses, written element by element in plain Python: the
# expected values below never call pixels_core. Eq. 4 is read as preservation outside the edit mask m (m = 1: edit),
# the mask inside the norm as printed: L_REC = ||(1 - m) (y - x)||_2^2, a sum over every latent value; without a
# mask it is Eq. 3, ||y - x||_2^2. Eq. 5: L_G = 1 - y.g / (||y|| ||g||). Eq. 6: (1 - lam) L_G + lam L_REC.

def _cells(t):
    """Values of a (C, H, W) tensor as a flat list of Python floats (row-major)."""
    return [float(v) for v in t.reshape(-1).tolist()]


def _mask_cells(m, c):
    """A (1, H, W) mask repeated over c channels, as a flat list matching :func:`_cells`."""
    return [float(v) for v in m.reshape(-1).tolist()] * c


def t_rec(y, x, m=None):
    """Eq. 4 (Eq. 3 without a mask) for one image."""
    ys, xs = _cells(y), _cells(x)
    ws = [0.0] * len(ys) if m is None else _mask_cells(m, y.shape[0])
    total = 0.0
    for yi, xi, mi in zip(ys, xs, ws):
        d = (1.0 - mi) * (yi - xi)
        total += d * d
    return total


def t_guid(y, g):
    """Eq. 5 for one image."""
    ys, gs = _cells(y), _cells(g)
    dot = sum(a * b for a, b in zip(ys, gs))
    return 1.0 - dot / (math.sqrt(sum(a * a for a in ys)) * math.sqrt(sum(b * b for b in gs)))


def t_obj(y, x, g, m, lam):
    """Eq. 6 summed over the batch (each image optimised on its own)."""
    total = 0.0
    for b in range(y.shape[0]):
        mb = None if m is None else m[b if m.shape[0] > 1 else 0]
        total += (1.0 - lam) * t_guid(y[b], g[b]) + lam * t_rec(y[b], x[b], mb)
    return total


def t_grad(y, x, g, m, lam):
    """d Eq. 6 / d y by hand: lam 2 (1-m)^2 (y-x) - (1-lam) (g / (|y||g|) - (y.g) y / (|y|^3 |g|)), per image."""
    out = []
    for b in range(y.shape[0]):
        ys, xs, gs = _cells(y[b]), _cells(x[b]), _cells(g[b])
        ws = [0.0] * len(ys) if m is None else _mask_cells(m[b if m.shape[0] > 1 else 0], y.shape[1])
        ny = math.sqrt(sum(a * a for a in ys))
        ng = math.sqrt(sum(a * a for a in gs))
        dot = sum(a * c for a, c in zip(ys, gs))
        out.append([lam * 2.0 * (1.0 - w) ** 2 * (a - c) - (1.0 - lam) * (q / (ny * ng) - dot * a / (ny ** 3 * ng))
                    for a, c, q, w in zip(ys, xs, gs, ws)])
    return torch.tensor(out, dtype=torch.float64).reshape(y.shape)


def t_adam(y, grad_fn, k, lr, b1=0.9, b2=0.999, eps=1e-8):
    """k steps of Adam (Kingma & Ba, Alg. 1, fresh state) in float64, element by element."""
    yv = y.double().clone()
    m1 = torch.zeros_like(yv)
    m2 = torch.zeros_like(yv)
    for t in range(1, k + 1):
        gr = grad_fn(yv)
        m1 = b1 * m1 + (1 - b1) * gr
        m2 = b2 * m2 + (1 - b2) * gr * gr
        yv = yv - lr * (m1 / (1 - b1 ** t)) / ((m2 / (1 - b2 ** t)).sqrt() + eps)
    return yv


def _data(seed=0, shape=(2, 3, 4, 5), batch_mask=False):
    g = torch.Generator().manual_seed(seed)
    y, x, gd = (torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(3))
    m = (torch.rand(shape[0] if batch_mask else 1, 1, *shape[2:], generator=g) > 0.5).double()
    return y, x, gd, m


def test_rec_loss_is_the_squared_norm_of_eq3_and_eq4():
    y, x, _, m = _data()
    got = ito.rec_loss(y, x, m)
    want = torch.tensor([t_rec(y[b], x[b], m[0]) for b in range(2)], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    got3 = ito.rec_loss(y, x)  # no mask: Eq. 3 over the whole latent
    torch.testing.assert_close(got3, torch.tensor([t_rec(y[b], x[b]) for b in range(2)], dtype=torch.float64),
                               rtol=1e-12, atol=0)
    # a soft mask value weights the difference inside the norm: (1 - m)^2 (y - x)^2
    soft = torch.full((1, 1, 4, 5), 0.25, dtype=torch.float64)
    torch.testing.assert_close(ito.rec_loss(y, x, soft),
                               torch.tensor([t_rec(y[b], x[b], soft[0]) for b in range(2)], dtype=torch.float64),
                               rtol=1e-12, atol=0)
    # a hand-sized case: one value off by 3 outside the mask, one off by 5 inside it
    y1, x1, m1 = torch.zeros(1, 1, 1, 2, dtype=torch.float64), torch.zeros(1, 1, 1, 2, dtype=torch.float64), \
        torch.tensor([[[[0.0, 1.0]]]], dtype=torch.float64)
    y1[..., 0], y1[..., 1] = 3.0, 5.0
    assert ito.rec_loss(y1, x1, m1).item() == 9.0
    assert ito.rec_loss(y1, x1).item() == 34.0


def test_guidance_loss_and_objective_match_eq5_and_eq6():
    y, x, gd, m = _data(1, batch_mask=True)
    torch.testing.assert_close(ito.guidance_loss(y, gd),
                               torch.tensor([t_guid(y[b], gd[b]) for b in range(2)], dtype=torch.float64),
                               rtol=1e-12, atol=1e-15)
    for lam in (0.0, 0.25, 0.6, 1.0):
        torch.testing.assert_close(ito.objective(y, x, gd, m, lam), torch.tensor(t_obj(y, x, gd, m, lam),
                                   dtype=torch.float64), rtol=1e-12, atol=1e-15)
    # the balance of Eq. 6 in numbers: lambda weighs a sum of squares against 1 - cos
    assert ito.objective(y, x, y, None, 0.6).item() == pytest.approx(0.6 * t_rec(y[0], x[0]) + 0.6 * t_rec(y[1], x[1]),
                                                                     rel=1e-12)


def test_objective_gradient_matches_hand_derivative_and_finite_differences():
    y, x, gd, m = _data(2, batch_mask=True)
    lam = 0.6
    yv = y.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(ito.objective(yv, x, gd, m, lam), yv)
    hand = t_grad(y, x, gd, m, lam)
    torch.testing.assert_close(auto, hand, rtol=1e-10, atol=1e-12)
    # the hand derivative itself, against central differences of the transcription
    h = 1e-6
    for idx in [(0, 0, 0, 0), (0, 2, 3, 4), (1, 1, 2, 1), (1, 0, 1, 3)]:
        yp, ym = y.clone(), y.clone()
        yp[idx] += h
        ym[idx] -= h
        fd = (t_obj(yp, x, gd, m, lam) - t_obj(ym, x, gd, m, lam)) / (2 * h)
        assert fd == pytest.approx(hand[idx].item(), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("k,lam,scale", [(1, 0.6, 1.0), (3, 0.6, 0.7), (2, 0.3, 0.25), (4, 1.0, 1.0)])
def test_ito_update_is_adam_on_the_transcribed_objective(k, lam, scale):
    """k Adam steps at lr on Eq. 6 in the scaled space, y' returned in the caller's space; compared in float64."""
    y, x, gd, m = _data(3)
    y, x, gd = y.float(), x.float(), gd.float()
    m = m.float()
    want = t_adam(y.double() * scale, lambda v: t_grad(v, x.double() * scale, gd.double(), m.double(), lam), k, 0.1)
    got = ito.ito_update(y, x, gd, m, lam=lam, k=k, lr=0.1, scale=scale)
    assert got.dtype == y.dtype
    torch.testing.assert_close(got.double(), want / scale, rtol=0, atol=2e-5)
    # and PyTorch's own Adam on the transcription's loss agrees
    ref = (y.double() * scale).clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.1)
    for _ in range(k):
        opt.zero_grad()
        ref.grad = t_grad(ref.detach(), x.double() * scale, gd.double(), m.double(), lam)
        opt.step()
    torch.testing.assert_close(got.double(), ref.detach() / scale, rtol=0, atol=2e-5)


def test_adam_first_step_moves_by_lr_whatever_the_loss_scale():
    """The paper's gamma under Adam: the first step moves each value by lr in the sign of its gradient, so summing
    instead of averaging (a global factor on a lone term) leaves lr's meaning alone; only the balance changes."""
    y, x, gd, m = _data(4)
    y, x = y.float(), x.float()
    out = ito.ito_update(y, x, None, None, lam=1.0, k=1, lr=0.1)
    torch.testing.assert_close(out, y - 0.1 * torch.sign(y - x), rtol=0, atol=1e-6)
    out = ito.ito_update(y, x, gd.float(), m.float(), lam=0.6, k=1, lr=0.1)
    hand = t_grad(y.double(), x.double(), gd, m, 0.6)
    # lr g / (|g| + eps): the sign of g wherever |g| >> Adam's eps 1e-8
    torch.testing.assert_close(out.double(), y.double() - 0.1 * hand / (hand.abs() + 1e-8), rtol=0, atol=1e-6)


def test_sample_ito_optimises_the_first_t_u_steps_against_trajectory_index_i(monkeypatch):
    model, src, _, r, _ = scene("eps")
    sig = schedule(8, "eps")
    traj = inv.invert(model, src, sig, SRC)
    gtraj = [t.flip(-1) for t in traj]
    seen, xs = [], []
    real = ito.ito_update

    def spy(y, x_t, g_t=None, mask=None, **kw):
        seen.append((y, x_t, g_t, mask, kw))
        return real(y, x_t, g_t, mask, **kw)

    monkeypatch.setattr(ito, "ito_update", spy)
    ito.sample_ito(model, traj[0], sig, EDIT, callback=lambda d: xs.append(d["x"]), source_traj=traj,
                   guidance_traj=gtraj, mask=r, lam=0.6, t_u=3, k=2, lr=0.05)
    assert len(seen) == 3
    for i, (y, x_t, g_t, mask, kw) in enumerate(seen):
        assert torch.equal(x_t, traj[i]) and torch.equal(g_t, gtraj[i]) and torch.equal(mask, r)
        assert kw["lam"] == 0.6 and kw["k"] == 2 and kw["lr"] == 0.05
        assert kw["scale"] == pytest.approx(1.0 / math.sqrt(1.0 + float(sig[i]) ** 2))
        # the model is called on y'_t, the optimised state
        assert torch.equal(xs[i], real(y, x_t, g_t, mask, **kw))
    assert torch.equal(seen[0][0], traj[0])


def test_lambda_06_holds_the_background_and_follows_the_guidance_inside():
    """The paper's lambda = 0.6 under its norms: outside the mask the edit keeps the source exactly (the edit
    condition alone changes it, and the guidance image differs there too), inside it goes to the guidance image."""
    model, src, _, r, _ = scene("eps")
    sig = schedule(25, "eps")
    g0 = ito.generate_guidance(model, src, sig, noise.randn(src.shape, 0, "test guidance"), EDIT, mask=r)
    out = 1 - r
    assert ((g0 - src).abs() * out).max() > 1.0  # the guidance image's background is not the source's
    y1 = ito.edit(model, src, sig, SRC, EDIT, mask=r, lam=1.0)
    y06 = ito.edit(model, src, sig, SRC, EDIT, mask=r, guidance=g0, lam=0.6)
    y0 = ito.edit(model, src, sig, SRC, EDIT, mask=r, guidance=g0, lam=0.0)
    assert ((y1 - src).abs() * out).max() < 1e-4
    assert ((y06 - src).abs() * out).max() < 1e-4  # a mean instead of the sum lets the guidance take it
    assert ((y0 - src).abs() * out).max() > 1.0  # guidance alone does not hold it
    d1 = ((y1 - g0).abs() * r).sum() / (4 * r.sum())
    d06 = ((y06 - g0).abs() * r).sum() / (4 * r.sum())
    assert d1 > 0.3 and d06 < 0.1 * d1


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


def test_mask_draws_are_the_packs_seeded_cpu_noise_and_any_widget_seed_works():
    """Draw i of Eq. 7's average is pixels_core.noise.randn(shape, seed, "ito mask", i): same seed, same mask on
    every device, seeds up to 2**64 - 1 (ComfyUI's widget range)."""
    model, src, _, _, _ = scene("eps", extra_edit_images=False)
    sig = schedule(25, "eps")
    s = ito.sigma_at_strength(sig, 0.5)
    seen = []
    orig = model.forward

    def spy(x, sigma, cond="src", **kw):
        seen.append(x.clone())
        return orig(x, sigma, cond=cond, **kw)

    model.forward = spy
    for seed in (5, 2 ** 64 - 1):
        seen.clear()
        ito.estimate_mask(model, src, s, SRC, EDIT, n=3, seed=seed)
        assert len(seen) == 6
        for i in range(3):
            want = src + s * noise.randn(src.shape, seed, "ito mask", i)
            assert torch.equal(seen[2 * i], want) and torch.equal(seen[2 * i + 1], want)


def test_mask_smoothing_is_scipy_gaussian_filter():
    """The soft map is blurred with the pack's one Gaussian (pixels_core.editmap.blur): scipy.ndimage's kernel,
    truncate 4, 'reflect' borders. Checked on a map known exactly: conditions that differ at one pixel."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 2, 9, 11, generator=g)
    b = a.clone()
    b[:, :, 4, 6] += 3.0  # the edit set differs at one latent pixel only
    model = Switch(src=FiniteSetDenoiser(a, per_pixel=True), edit=FiniteSetDenoiser(b, per_pixel=True))
    x0 = a[:1]
    _, raw = ito.estimate_mask(model, x0, 1.0, SRC, EDIT, n=2, smooth=0.0)
    _, soft = ito.estimate_mask(model, x0, 1.0, SRC, EDIT, n=2, smooth=1.5)
    want = ndimage.gaussian_filter(raw[0, 0].double().numpy(), 1.5, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(soft[0, 0].double().numpy(), np.clip(want, 0, 1), rtol=0, atol=1e-6)
    assert raw.max() > 0.5 and soft.shape == raw.shape
    with pytest.raises(ValueError, match="smoothing must be >= 0"):
        ito.estimate_mask(model, x0, 1.0, SRC, EDIT, n=1, smooth=-1.0)


# ------------------------------------------------------------------------------------------------ pipeline

def test_full_pipeline_deterministic_and_calls():
    model, src, _, _, g = scene("eps")
    sig = schedule(25, "eps")

    def pipeline():
        model.calls = 0
        m, _ = ito.estimate_mask(model, src, ito.sigma_at_strength(sig, 0.5), SRC, EDIT, n=10, seed=3)
        g0 = ito.generate_guidance(model, src, sig, noise.randn(src.shape, 3, "guidance"), EDIT, mask=m)
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
    # schedules are checked by the pack's one validator (pixels_core.schedule.check_sigmas)
    with pytest.raises(ValueError, match="strictly descending"):
        ito.sample_ito(model, traj[0], sig.flip(0), EDIT, source_traj=traj, lam=1.0, t_u=5)
    with pytest.raises(ValueError, match="NaN or inf"):
        ito.encode_steps(torch.tensor([2.0, float("nan"), 0.0]), 1.0)
    with pytest.raises(ValueError, match="flow .* needs sigmas in"):
        ito.sample_ito(model, traj[0], sig, EDIT, source_traj=traj, lam=1.0, t_u=5, param="flow")


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


# ------------------------------------------------------------------------------------------------ flow, SD3's schedule
# SD3's schedule in ComfyUI ("normal" on ModelSamplingDiscreteFlow, shift 3): sigma_max exactly 1, most steps at
# high noise. With sigma_max = 1 the top state holds no signal, so the exact DDIM inversion of a clean latent carries
# the source in its noise part: for an exact denoiser the inverted source trajectory is x_t = x_0 at every level,
# its noise estimate the source itself (EPS: the same x_t = x_0, with noise estimate 0).

def comfy_flow_schedule(n, shift=3.0):
    """ComfyUI's "normal" scheduler on a flow model with ``shift``: sigma = shift t / (1 + (shift - 1) t) at
    ``n`` timesteps from 1 down to the model's sigma_min (t = 0.001), then 0."""
    f = lambda t: shift * t / (1 + (shift - 1) * t)  # noqa: E731
    return torch.cat([f(torch.linspace(1.0, f(torch.tensor(0.001)), n)), torch.zeros(1)])


def flow_scene(scale=1.0, seed=0, c=16):
    """SD3-like (16 channels) per-pixel sets at ``scale`` times a unit latent: the source set is the source and two
    other images; the edit set is the target (the source outside R, another image inside) and two images far from
    both (twice the spread), so that without preservation part of the background changes."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(3, c, H, H, generator=g)
    r = torch.zeros(1, 1, H, H)
    r[..., 4:12, 8:] = 1
    tgt = a[:1] * (1 - r) + torch.randn(1, c, H, H, generator=g) * r
    b = torch.cat([tgt, 2.0 * torch.randn(2, c, H, H, generator=g)]) * scale
    a = a * scale
    model = Switch(src=FiniteSetDenoiser(a, "flow", per_pixel=True), edit=FiniteSetDenoiser(b, "flow", per_pixel=True))
    return model, a[:1], b, r


def test_comfy_flow_schedule_is_sd3s():
    sig = comfy_flow_schedule(25)
    assert len(sig) == 26 and float(sig[0]) == 1.0 and float(sig[-1]) == 0.0
    assert abs(float(sig[1]) - 0.9858) < 1e-3 and abs(float(sig[22]) - 0.2203) < 1e-3  # t_u = 22 stops at 0.305


@pytest.mark.parametrize("t_u", [22, 25])
def test_flow_shifted_schedule_preservation_holds_the_background_the_plain_decode_changes(t_u):
    """The host's SD3 case in the core: lambda = 1, mask on R, ComfyUI's shifted schedule, unit-scale latents."""
    model, src, b, r = flow_scene()
    sig = comfy_flow_schedule(25)
    traj = inv.invert(model, src, sig, SRC, param="flow")
    assert (ito.sample_ito(model, traj[0], sig, SRC, source_traj=traj, lam=1.0, t_u=0, param="flow")
            - src).abs().max() < 1e-4  # the inversion is exact: the source condition gives the source back
    plain = ito.sample_ito(model, traj[0], sig, EDIT, source_traj=traj, lam=1.0, t_u=0, param="flow")
    y = ito.sample_ito(model, traj[0], sig, EDIT, source_traj=traj, mask=r, lam=1.0, t_u=t_u, param="flow")
    outside = 1 - r
    assert ((plain - src).abs() * outside).max() > 2.0  # the edit condition alone changes the background
    assert ((y - src).abs() * outside).max() < 1e-3  # preservation keeps it
    nearest = (y.unsqueeze(1) - b.unsqueeze(0)).norm(dim=2).min(1).values
    assert (nearest * r[0]).max() < 1e-3  # inside R: values of the edit set
    assert ((y - src).abs() * r).sum() / (16 * r.sum()) > 0.3


def test_flow_inverted_trajectory_carries_the_source_as_its_noise():
    """Why flow differs from EPS with an exact denoiser: both inverted trajectories stay at x_0, but in flow that
    state means noise = x_0, and an image aligned with the source but larger explains it better than the source.
    The edit decode then pulls away from x_t (by (x0_hat - x_0) (s - s') / s a step, growing as sigma falls) and ITO,
    whose Adam step moves each value by lr = 0.1, holds only what it can catch."""
    g = torch.Generator().manual_seed(3)
    src = torch.randn(1, 16, H, H, generator=g)
    others = torch.randn(2, 16, H, H, generator=g)
    aligned = 1.5 * src + 0.5 * torch.randn(1, 16, H, H, generator=g)
    for kind, sig, level in (("flow", comfy_flow_schedule(25), 18), ("eps", schedule(25, "eps"), 18)):
        model = Switch(src=FiniteSetDenoiser(torch.cat([src, others]), kind, per_pixel=True),
                       edit=FiniteSetDenoiser(torch.cat([src, aligned, others[:1]]), kind, per_pixel=True))
        traj = inv.invert(model, src, sig, SRC, param=kind)
        s = float(sig[level])
        assert torch.allclose(traj[level], src, atol=1e-4)  # x_t = x_0 in both parameterisations
        p = ito._param(kind)
        eps = (traj[level] - p.alpha(s, src) * src) / s
        denoised = model(traj[level], torch.tensor([s]), **EDIT)
        if kind == "flow":
            assert torch.allclose(eps, src, atol=1e-3)  # the noise part is the source itself
            # the edit set's posterior at the source trajectory prefers the larger aligned image over the source
            assert (denoised - aligned).abs().mean() < (denoised - src).abs().mean()
        else:
            assert eps.abs().max() < 1e-3  # noise 0: the source is the nearest point, the edit keeps it
            assert (denoised - src).abs().max() < 1e-3


def test_flow_lr_is_an_absolute_step_for_unit_scale_latents():
    """The host's SD3 case at latent factor 20 (model-space latents of mean |x| about 30): Adam's step moves each
    value by lr whatever the loss, so lr = 0.1 cannot move latents 30 times a real VAE's enough to change any cell's
    outcome: the result is bit for bit the plain decode, though ITO did change the intermediate states. An lr 30 times
    larger on the 30 times larger latents holds the background again."""
    model, src, _, r = flow_scene(scale=30.0)
    sig = comfy_flow_schedule(25)
    traj = inv.invert(model, src, sig, SRC, param="flow")

    def run(**kw):
        xs = []
        y = ito.sample_ito(model, traj[0], sig, EDIT, callback=lambda d: xs.append(d["x"]), source_traj=traj,
                           mask=r, lam=1.0, param="flow", **kw)
        return y, xs

    plain, xs_plain = run(t_u=0)
    y, xs = run(t_u=22, lr=0.1)
    outside = 1 - r
    assert ((plain - src).abs() * outside).max() > 2.0 * 30
    assert torch.equal(xs[0], xs_plain[0])  # step 0: y_T = x_T, zero gradient, Adam leaves it
    assert max(float((a - q).abs().max()) for a, q in zip(xs[1:22], xs_plain[1:22])) > 0.05  # ITO acted ...
    assert torch.equal(y, plain)  # ... but changed no cell's outcome
    y30, _ = run(t_u=22, lr=3.0)
    assert ((y30 - src).abs() * outside).max() < 1e-3 * 30
