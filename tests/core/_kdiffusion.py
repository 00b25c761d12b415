"""k-diffusion samplers written out for the tests (independent of the pack and of ComfyUI)."""


def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """DPM-Solver++(2M) as in k-diffusion (a multistep sampler with history), written out for the test."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    t_fn = lambda s: s.log().neg()  # noqa: E731
    old = None
    for i in range(len(sigmas) - 1):
        d = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "denoised": d})
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1]) if sigmas[i + 1] > 0 else None
        if sigmas[i + 1] == 0:
            x = d
        else:
            h = t_next - t
            if old is None:
                x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * d
            else:
                r = (t - t_fn(sigmas[i - 1])) / h
                dd = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * old
                x = (sigmas[i + 1] / sigmas[i]) * x - (-h).expm1() * dd
        old = d
    return x


def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, noise_sampler=None):
    """Euler ancestral as in k-diffusion (fresh noise every step from ``noise_sampler``), written out for the test."""
    extra_args = extra_args or {}
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        s, sn = sigmas[i], sigmas[i + 1]
        up = min(sn, eta * (sn ** 2 * (s ** 2 - sn ** 2) / s ** 2) ** 0.5)
        down = (sn ** 2 - up ** 2) ** 0.5
        x = x + (x - denoised) / s * (down - s)
        if sn > 0:
            x = x + noise_sampler(s, sn) * up
    return x
