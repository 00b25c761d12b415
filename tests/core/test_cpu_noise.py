"""Every random draw of the methods is made on the CPU with a seeded generator of its own, so the same seed gives the
same edit on every device (a GPU's generator gives other numbers) and no draw depends on torch's global RNG.

The methods run here on the CPU (no accelerator on CI); what is checked is *where* and *how* they draw: any draw on
another device, or from the global generator, fails. The draws are then moved to the model's device, so a GPU run
consumes the very numbers these tests see.
"""
import contextlib

import pytest
import torch

from pixels_core import analytic, ito, noise, pixels, syncsde

DRAWS = ("randn", "rand", "randint", "normal", "randn_like", "rand_like", "randint_like", "bernoulli", "multinomial")


@contextlib.contextmanager
def recorded_draws():
    """Record every torch random draw made inside: (name, device, generator)."""
    seen = []
    originals = {n: getattr(torch, n) for n in DRAWS}

    def wrap(name, fn):
        def draw(*args, **kwargs):
            device = kwargs.get("device")
            if name.endswith("_like"):
                device = kwargs.get("device", args[0].device)
            seen.append((name, torch.device(device or "cpu"), kwargs.get("generator")))
            return fn(*args, **kwargs)
        return draw

    normal_ = torch.Tensor.normal_

    def tensor_normal_(self, *args, **kwargs):
        seen.append(("Tensor.normal_", self.device, kwargs.get("generator")))
        return normal_(self, *args, **kwargs)

    try:
        for n, fn in originals.items():
            setattr(torch, n, wrap(n, fn))
        torch.Tensor.normal_ = tensor_normal_
        yield seen
    finally:
        for n, fn in originals.items():
            setattr(torch, n, fn)
        torch.Tensor.normal_ = normal_


def assert_seeded_cpu(seen, what):
    assert seen, f"{what}: no random draw was recorded (the test would not see a device-side draw)"
    for name, device, gen in seen:
        assert not name.endswith("_like"), f"{what}: torch.{name} draws on its input's device"
        assert device.type == "cpu", f"{what}: torch.{name} drew on {device}"
        assert isinstance(gen, torch.Generator) and gen.device.type == "cpu", \
            f"{what}: torch.{name} drew from the global generator, not a seeded CPU one"


def images(c=2, h=6, w=6, m=3, seed=0):
    return torch.randn(m, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def twice_with_other_global_seeds(fn):
    torch.manual_seed(1)
    a = fn()
    torch.manual_seed(12345)
    b = fn()
    return a, b


@pytest.mark.parametrize("resample", [False, True])
@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_syncsde_draws_its_path_on_the_cpu(kind, resample):
    ims = images()
    model_one = analytic.FiniteSetDenoiser(ims, kind=kind)

    def pair(x, sigma, **_):  # source half and target half, both the same analytic model (identity edit)
        return model_one(x, sigma)

    source = ims[:1] + 0.1
    sigmas = torch.linspace(0.9 if kind == "flow" else 10.0, 0.0, 9, dtype=torch.float64)

    def run():
        return syncsde.sample_syncsde(pair, torch.zeros_like(source), sigmas, source=source, kind=kind,
                                      start_index=1, seed=2 ** 64 - 1, resample=resample)

    with recorded_draws() as seen:
        a, b = twice_with_other_global_seeds(run)
    assert_seeded_cpu(seen, f"sync-SDE ({kind}, resample={resample})")
    assert torch.equal(a, b)


def test_pixels_ancestral_draws_per_step_noise_on_the_cpu():
    ims = images(m=4)
    model = analytic.FiniteSetDenoiser(ims)
    source, exemplar = ims[:1], ims[1:2]
    sigmas = torch.tensor([6.0, 3.0, 1.5, 0.5, 0.0], dtype=torch.float64)
    edit_map = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    edit_map[..., 3:] = 1.0

    def ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
        """Euler ancestral (eta 1), k-diffusion's, drawing through ``noise_sampler`` as ComfyUI's does."""
        s_in = x.new_ones([x.shape[0]])
        for i in range(len(sigmas) - 1):
            denoised = model(x, sigmas[i] * s_in, **(extra_args or {}))
            s, sn = sigmas[i], sigmas[i + 1]
            up = min(sn, (sn ** 2 * (s ** 2 - sn ** 2) / s ** 2) ** 0.5)
            down = (sn ** 2 - up ** 2) ** 0.5
            x = x + (x - denoised) / s * (down - s)
            if sn > 0:
                x = x + noise_sampler(s, sn) * up
        return x

    def run():
        src_noise = noise.randn(source.shape, 7, "source", dtype=torch.float64)
        ex_noise = noise.per_item_randn(src_noise, 7, "pixels exemplar", 0, dtype=torch.float64)
        x = source + sigmas[0] * src_noise
        return pixels.sample_pixels(model, x, sigmas, source=source, noise=src_noise, exemplars=[exemplar],
                                    exemplar_noises=[ex_noise], edit_maps=[edit_map], sampler=ancestral,
                                    noise_sampler=noise.ItemNoiseSampler(src_noise, 7, "pixels ancestral"))

    with recorded_draws() as seen:
        a, b = twice_with_other_global_seeds(run)
    assert_seeded_cpu(seen, "PIXELS with an ancestral sampler")
    assert len(seen) >= 2 + 3, "the per-step ancestral draws were not seen"
    assert torch.equal(a, b)


def test_ito_mask_estimate_draws_on_the_cpu():
    ims = images(m=3)
    model = analytic.FiniteSetDenoiser(ims)
    x0 = ims[:1]

    def run():
        return ito.estimate_mask(model, x0, 2.0, {"cond": [0, 1]}, {"cond": [2]}, n=3, seed=2 ** 64 - 1)[1]

    with recorded_draws() as seen:
        a, b = twice_with_other_global_seeds(run)
    assert_seeded_cpu(seen, "ITO edit mask")
    assert torch.equal(a, b)


def test_a_seed_gives_the_same_draw_whatever_the_target_device():
    """The helpers draw on the CPU and only then move: the numbers do not depend on where they go."""
    ref = torch.zeros(2, 4, 3, 3)
    a = noise.per_item_randn(ref, 5, "x")
    assert torch.equal(noise.ItemNoiseSampler(ref, 5, "x")(), noise.ItemNoiseSampler(ref, 5, "x")())
    assert torch.equal(a, noise.per_item_randn(ref, 5, "x"))
