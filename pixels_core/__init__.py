"""Host-independent torch code of the PIXELS editing pack (never imports ComfyUI).

Convention (k-diffusion, as ComfyUI uses it): a denoiser is ``model(x, sigma, **extra_args) -> x0``;
a sampler is ``sample_x(model, x, sigmas, extra_args=None, callback=None, disable=None, **options)``.
"""
__version__ = "0.1.0"
