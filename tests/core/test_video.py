"""Video latents (B, C, frames, H, W), as Wan 2.x makes them: the map-to-frames rule and PIXELS on a clip, against
an analytic per-pixel denoiser whose posterior mean is exact."""
import pytest
import torch

from pixels_core import masks
from pixels_core import parameterization as P
from pixels_core import pixels as px
from pixels_core.analytic import FiniteSetDenoiser

C, T, H, W = 2, 3, 6, 8


def test_one_map_serves_every_frame():
    m = torch.rand(1, 1, H, W)
    out = masks.to_frames(m, T, "map")
    assert out.shape == (1, 1, T, H, W)
    for t in range(T):
        assert torch.equal(out[0, 0, t], m[0, 0])


def test_one_map_per_latent_frame_keeps_its_frame():
    m = torch.rand(T, 1, H, W)
    out = masks.to_frames(m, T, "map")
    for t in range(T):
        assert torch.equal(out[0, 0, t], m[t, 0])


def test_a_clip_at_stride_two_is_understood():
    m = torch.rand(5, 1, H, W)
    out = masks.to_frames(m, T, "map")
    assert torch.allclose(out[0, 0, 2], m[3:5, 0].mean(0), atol=1e-7)


def test_image_frames_average_into_their_latent_frame():
    m = torch.rand(1 + 4 * (T - 1), 1, H, W)  # 9 image frames, Wan's VAE: frame 0 alone, then 4 per latent frame
    out = masks.to_frames(m, T, "map")
    assert torch.equal(out[0, 0, 0], m[0, 0])
    for j in range(1, T):
        want = m[1 + 4 * (j - 1):1 + 4 * j, 0].mean(0)
        assert torch.allclose(out[0, 0, j], want, atol=1e-7)


@pytest.mark.parametrize("n", [2, 4, 8])  # (5 = 1 + 2 * 2 is a clip at stride 2: allowed)
def test_other_frame_counts_are_refused_with_the_counts(n):
    with pytest.raises(ValueError, match=rf"has {n} maps but the video latent has {T} frames"):
        masks.to_frames(torch.rand(n, 1, H, W), T, "map")


class VideoDenoiser(torch.nn.Module):
    """The per-pixel finite-set denoiser on (B, C, T, H, W): each (frame, row, column) location is independent."""

    def __init__(self, clips, kind):
        super().__init__()
        self.inner = FiniteSetDenoiser(clips.reshape(clips.shape[0], C, T * H, W), kind, per_pixel=True)

    def forward(self, x, sigma, **kw):
        return self.inner(x.reshape(x.shape[0], C, T * H, W), sigma).reshape(x.shape)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_pixels_on_a_clip_keeps_each_frames_white_region_and_fills_its_black_one(kind):
    param = P.get(kind)
    g = torch.Generator().manual_seed(5)
    clips = torch.randn(4, C, T, H, W, generator=g)
    src, ex = clips[0:1].clone(), clips[1:2].clone()
    noise, ex_noise = torch.randn(1, C, T, H, W, generator=g), torch.randn(1, C, T, H, W, generator=g)
    per_frame = torch.zeros(T, 1, H, W)
    per_frame[0] = 1.0  # frame 0 kept whole
    per_frame[1, ..., : W // 2] = 1.0  # frame 1: left half kept
    emap = masks.to_frames(per_frame, T, "map")  # frame 2: all from the exemplar
    sigmas = (torch.cat([torch.linspace(14.6, 0.03, 10), torch.zeros(1)]) if kind == "eps"
              else torch.cat([torch.linspace(1.0, 0.02, 10), torch.zeros(1)]))
    model = VideoDenoiser(clips, kind)
    seen = []

    def spy(x, sigma, **kw):
        seen.append(x.clone())
        return model(x, sigma, **kw)

    x = param.add_noise(sigmas[0], noise, src)
    out = px.sample_pixels(spy, x, sigmas, source=src, noise=noise, exemplars=[ex], exemplar_noises=[ex_noise],
                           edit_maps=[emap], param=param)
    assert out.shape == src.shape
    keep = (emap == 1).expand_as(out)
    assert torch.equal(out[keep], src[keep])  # bit for bit, frame by frame
    black = (emap == 0).expand_as(out)
    want0 = param.add_noise(sigmas[0], ex_noise, ex)
    assert torch.allclose(seen[0][black], want0[black], atol=1e-6)  # black pixels start from the exemplar clip
    assert (out - src)[black].abs().mean() > 0.1
    # the released locations end on one of the known clips' values there (the exact per-pixel posterior collapses
    # at the last sigma): the denoiser, not a blend with the source, made them
    gap = (out[:, None] - clips[None]).abs().amax(2).amin(1)  # (1, T, H, W): distance to the nearest clip value
    # (all but the odd location where two clips' values lie within the last sigma of each other)
    assert float((gap[(emap == 0)[:, 0]] < 1e-3).double().mean()) > 0.95


# --- sync-SDE on a clip: one shared Brownian path for every frame ---------------------------------------------------

from pixels_core import syncsde as S  # noqa: E402


class FlatDenoiser(torch.nn.Module):
    """The finite-set denoiser (whole-clip posterior) on (B, C, T, H, W) through a (B, C*T, H, W) view."""

    def __init__(self, clips, kind):
        super().__init__()
        self.inner = FiniteSetDenoiser(clips.reshape(clips.shape[0], C * T, H, W), kind)

    def forward(self, x, sigma, cond=None, **kw):
        return self.inner(x.reshape(x.shape[0], C * T, H, W), sigma, cond=cond).reshape(x.shape)


def _flow(n=12, shift=3.0):
    t = torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).float()


def _clip_edit(kind, src, cs, ct, **kw):
    g = torch.Generator().manual_seed(9)
    den = FlatDenoiser(torch.randn(3, C, T, H, W, generator=g), kind)
    sig = _flow() if kind == "flow" else torch.cat([torch.linspace(14.6, 0.03, 12), torch.zeros(1)])
    return S.sample_syncsde(S.pair_denoiser(den, cs, ct), src, sig, source=src, kind=kind, seed=4, **kw)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_syncsde_clip_with_identical_prompts_returns_the_source_clip(kind):
    src = torch.randn(1, C, T, H, W, generator=torch.Generator().manual_seed(1))
    c = torch.tensor([[0.2, 0.5, 0.3]])
    assert torch.equal(_clip_edit(kind, src, c, c.clone()), src)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_syncsde_clip_is_one_edit_on_one_path_and_a_frame_mask_keeps_its_frame(kind):
    src = torch.randn(1, C, T, H, W, generator=torch.Generator().manual_seed(1))
    cs, ct = torch.tensor([[1.0, 1e-4, 1e-4]]), torch.tensor([[1e-4, 1.0, 1e-4]])
    clip = _clip_edit(kind, src, cs, ct)
    for t in range(T):  # the prompt change reaches every frame
        assert (clip - src)[:, :, t].abs().mean() > 0.01
    # the same edit of the same numbers seen as an image latent (C*T channels) draws the same path: the frames
    # share one Brownian path, they are not edited one by one
    g = torch.Generator().manual_seed(9)
    den4 = FiniteSetDenoiser(torch.randn(3, C, T, H, W, generator=g).reshape(3, C * T, H, W), kind)
    sig = _flow() if kind == "flow" else torch.cat([torch.linspace(14.6, 0.03, 12), torch.zeros(1)])
    flat = S.sample_syncsde(S.pair_denoiser(den4, cs, ct), src.reshape(1, C * T, H, W), sig,
                            source=src.reshape(1, C * T, H, W), kind=kind, seed=4)
    assert torch.allclose(clip.reshape(flat.shape), flat, atol=1e-5)
    mask = torch.ones(1, 1, T, 1, 1)
    mask[:, :, 1] = 0.0  # frame 1 may not change
    masked = _clip_edit(kind, src, cs, ct, mask=mask)
    assert torch.equal(masked[:, :, 1], src[:, :, 1])
    assert (masked[:, :, 0] - src[:, :, 0]).abs().mean() > 0.01
