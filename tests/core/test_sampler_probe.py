"""The behavioural probe that decides which samplers PIXELS drives step by step (exact Algorithm 1) and which get the
multistep rule: k-diffusion-style samplers written out here, the pack's own Euler, and the safe answer for a sampler
the probe cannot run."""
import logging
import types

import pytest
import torch

from pixels_core import parameterization as P
from pixels_core import pixels as px
from tests.core._kdiffusion import sample_dpmpp_2m, sample_euler_ancestral


@pytest.fixture(autouse=True)
def fresh_cache():
    px._probe_cache.clear()
    yield
    px._probe_cache.clear()


def to_d(x, sigma, denoised):
    return (x - denoised) / sigma


# --- history-free samplers -----------------------------------------------------------------------------------------

def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None):
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        d = to_d(x, sigmas[i], model(x, sigmas[i] * s_in, **extra_args))
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in, **extra_args))
            x = x + (d + d_2) / 2 * dt
    return x


def sample_cfg_pp(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """Euler CFG++ as ComfyUI writes it: the unconditional prediction arrives through a post-CFG hook that the sampler
    adds to ``extra_args["model_options"]`` and the host's CFG calls."""
    extra_args = {} if extra_args is None else extra_args
    seen = {}

    def post_cfg(args):
        seen["uncond"] = args["uncond_denoised"]
        return args["denoised"]

    opts = dict(extra_args.get("model_options", {}))
    opts["sampler_post_cfg_function"] = opts.get("sampler_post_cfg_function", []) + [post_cfg]
    extra_args["model_options"] = opts
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        d = to_d(x, sigmas[i], seen["uncond"])  # raises if no host called the hook
        x = denoised + d * sigmas[i + 1]
    return x


# --- samplers with history -----------------------------------------------------------------------------------------

def sample_ab2(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """Two-step Adams-Bashforth on the Karras ODE (lms of order 2)."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    old = None
    for i in range(len(sigmas) - 1):
        d = to_d(x, sigmas[i], model(x, sigmas[i] * s_in, **extra_args))
        dt = sigmas[i + 1] - sigmas[i]
        x = x + (d if old is None else 1.5 * d - 0.5 * old) * dt
        old = d
    return x


def sample_warmup_ab2(model, x, sigmas, extra_args=None, callback=None, disable=None, warmup=3):
    """Euler for the first ``warmup`` steps, then two-step Adams-Bashforth: its history only shows from step 3 on, so
    a probe must restart after every single step to see it."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    old = None
    for i in range(len(sigmas) - 1):
        d = to_d(x, sigmas[i], model(x, sigmas[i] * s_in, **extra_args))
        x = x + (d if i < warmup else 1.5 * d - 0.5 * old) * (sigmas[i + 1] - sigmas[i])
        old = d
    return x


def sample_weighted_by_first_sigma(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """No state but ``x``, yet each step reads the schedule's first sigma (as heunpp2 does): one step per call is not
    the same step, so it is not history-free in the sense that matters."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        d = to_d(x, sigmas[i], model(x, sigmas[i] * s_in, **extra_args))
        x = x + d * (sigmas[i + 1] - sigmas[i]) * (1 + sigmas[i] / (4 * sigmas[0]))
    return x


def sample_seeded_default_noise(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """Euler ancestral whose default noise is a stream seeded from ``extra_args["seed"]`` (restarts every call)."""
    extra_args = extra_args or {}
    if noise_sampler is None:
        g = torch.Generator().manual_seed(int(extra_args.get("seed", 0)))
        noise_sampler = lambda s, sn: torch.randn(x.shape, generator=g, dtype=x.dtype)  # noqa: E731
    return sample_euler_ancestral(model, x, sigmas, extra_args, callback, disable, noise_sampler=noise_sampler)


def sample_reads_host(model, x, sigmas, extra_args=None, callback=None, disable=None):
    scale = model.inner_model.scale  # e.g. ComfyUI's model.inner_model.model_patcher.get_model_object(...)
    return sample_heun(model, x, sigmas, extra_args) * scale


def sample_broken(model, x, sigmas, extra_args=None, callback=None, disable=None):
    raise RuntimeError("this sampler cannot run here")


HISTORY_FREE = [px.euler_step_sampler, sample_heun, sample_euler_ancestral, sample_cfg_pp]
MULTISTEP = [sample_ab2, sample_warmup_ab2, sample_dpmpp_2m, sample_weighted_by_first_sigma]


@pytest.mark.parametrize("fn", HISTORY_FREE, ids=lambda f: f.__name__)
def test_history_free_samplers_agree_to_rounding(fn):
    assert px.probe_sampler(fn) <= 1e-14
    assert px.is_single_step(fn)


@pytest.mark.parametrize("fn", MULTISTEP, ids=lambda f: f.__name__)
def test_multistep_samplers_are_told_apart(fn):
    assert px.probe_sampler(fn) > 1e-4
    assert not px.is_single_step(fn)


def test_the_pack_euler_is_single_step_whatever_its_name():
    assert px.euler_step_sampler.__name__ == "euler_step_sampler"  # no name list: the probe decides
    assert px.is_single_step(px.euler_step_sampler)

    def renamed(model, x, sigmas, extra_args=None, callback=None, disable=None):
        return sample_heun(model, x, sigmas, extra_args, callback, disable)
    renamed.__name__ = "sample_dpmpp_2m"  # a misleading name changes nothing
    assert px.is_single_step(renamed)


def test_default_noise_that_restarts_each_call_is_multistep_unless_a_noise_sampler_is_passed():
    assert px.is_single_step(sample_seeded_default_noise, noise_sampler=True)
    assert not px.is_single_step(sample_seeded_default_noise, noise_sampler=False)


def test_options_reach_the_probe():
    assert px.is_single_step(sample_euler_ancestral, {"eta": 0.5})
    calls = []

    def spy(model, x, sigmas, extra_args=None, callback=None, disable=None, order=1):
        calls.append(order)
        return sample_ab2(model, x, sigmas, extra_args) if order == 2 else sample_heun(model, x, sigmas, extra_args)
    assert px.is_single_step(spy, {"order": 1})
    assert not px.is_single_step(spy, {"order": 2})
    assert set(calls) == {1, 2}


def test_cfg_pp_needs_the_host_hook_and_gets_it_from_the_probe():
    # a bare denoiser never calls the hook: the sampler raises ...
    with pytest.raises(KeyError):
        sample_cfg_pp(lambda x, s, **kw: x * 0.5, torch.ones(1, 2), torch.tensor([0.9, 0.5]))
    # ... the probe calls it as the host's CFG does, so the sampler is judged on what it is
    assert px.probe_sampler(sample_cfg_pp) == 0.0


def test_a_sampler_that_raises_gets_the_multistep_rule_with_a_log_line(caplog):
    with caplog.at_level(logging.WARNING, logger="pixels"):
        assert not px.is_single_step(sample_broken)
    assert any("could not probe sampler" in r.message and "multistep" in r.message for r in caplog.records)


def test_host_attributes_are_forwarded():
    host = types.SimpleNamespace(inner_model=types.SimpleNamespace(scale=1.0))
    assert px.is_single_step(sample_reads_host, host=host)
    assert not px.is_single_step(sample_reads_host, host=None)  # raises without a host: the safe answer


def test_cached_and_global_rng_untouched():
    calls = []

    def noisy(model, x, sigmas, extra_args=None, callback=None, disable=None):
        calls.append(1)
        torch.randn_like(x)  # a sampler that draws from the global generator (heunpp2 does, every step)
        return sample_heun(model, x, sigmas, extra_args)

    state = torch.get_rng_state()
    assert px.is_single_step(noisy)
    assert torch.equal(torch.get_rng_state(), state)
    n = len(calls)
    assert n > 0 and px.is_single_step(noisy) and len(calls) == n  # second answer from the cache


def setup_pixels(seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randn(4, 2, 6, 6, generator=g)
    src, ex = imgs[0:1].clone(), imgs[1:2].clone()

    def model(x, sigma, **kw):  # nonlinear and never snapping to one image, so the two rules visibly differ
        return 0.6 * torch.tanh(x) + 0.4 * ex
    noise, ex_noise = torch.randn(1, 2, 6, 6, generator=g), torch.randn(1, 2, 6, 6, generator=g)
    ramp = torch.linspace(0, 1, 6).expand(1, 1, 6, 6).clone()
    sigmas = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.5, 0.2, 0.0])
    return model, src, ex, noise, ex_noise, ramp, sigmas


def run_pixels(sampler, mode):
    model, src, ex, noise, ex_noise, ramp, sigmas = setup_pixels()
    x = P.EPS.add_noise(sigmas[0], noise, src)
    return px.sample_pixels(model, x, sigmas, source=src, noise=noise, exemplars=[ex], exemplar_noises=[ex_noise],
                            edit_maps=[ramp], sampler=sampler, mode=mode)


@pytest.mark.parametrize("fn,mode", [(sample_heun, "stepwise"), (sample_ab2, "wrapped"),
                                     (sample_dpmpp_2m, "wrapped")], ids=["heun", "ab2", "dpmpp_2m"])
def test_auto_mode_follows_the_probe(fn, mode):
    other = "wrapped" if mode == "stepwise" else "stepwise"
    auto = run_pixels(fn, "auto")
    assert torch.equal(auto, run_pixels(fn, mode))
    assert not torch.allclose(auto, run_pixels(fn, other), atol=1e-4)  # the two rules do differ for this sampler


def test_stepwise_gives_each_step_a_fresh_extra_args():
    """ComfyUI's CFG++ samplers add a post-CFG hook to the extra_args they are given: stepwise must not let them pile up
    (nor change the caller's dict)."""
    model, src, ex, noise, ex_noise, ramp, sigmas = setup_pixels()
    hooks = []

    def host(x, sigma, model_options=None, **kw):
        fns = (model_options or {}).get("sampler_post_cfg_function", [])
        hooks.append(len(fns))
        d = model(x, sigma)
        for f in fns:
            d = f({"denoised": d, "uncond_denoised": d, "cond_denoised": d, "input": x, "sigma": sigma})
        return d

    extra = {"model_options": {}}
    x = P.EPS.add_noise(sigmas[0], noise, src)
    px.sample_pixels(host, x, sigmas, extra, source=src, noise=noise, exemplars=[ex], exemplar_noises=[ex_noise],
                     edit_maps=[ramp], sampler=sample_cfg_pp, mode="stepwise")
    assert hooks == [1] * (len(sigmas) - 1)
    assert extra == {"model_options": {}}
