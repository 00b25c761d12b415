"""Host checks shared by the pack's nodes: clear errors naming the input before anything reaches a model."""
from __future__ import annotations

import torch


def vae_ratio(vae) -> int:
    """Pixels per latent cell of ``vae`` (8 for SD/SDXL/SD3/Flux, 16 for Flux.2), asked of the VAE itself."""
    try:
        r = vae.spacial_compression_encode()
        return int(r[-1] if isinstance(r, (tuple, list)) else r)
    except Exception:
        return 8


# Pixels per latent cell of the latent formats whose VAE is not 8x, for nodes that see a model but no VAE (a
# connected VAE's own answer always wins): Flux.2 (128 channels) and Wan 2.2 TI2V (48 channels) are 16x.
RATIO_BY_FORMAT = {"Flux2": 16, "Wan22": 16}


def latent_ratio(model=None, vae=None, default: int = 8) -> int:
    """Pixels per latent cell: asked of ``vae`` when one is given, else read off ``model``'s latent format
    (:data:`RATIO_BY_FORMAT`), else ``default`` (8, or a node's own ``downscale`` widget)."""
    if vae is not None:
        return vae_ratio(vae)
    if model is None:
        return default
    return RATIO_BY_FORMAT.get(type(model.get_model_object("latent_format")).__name__, default)


def check_image(img, name: str, vae) -> None:
    """Clear errors for images the VAE cannot encode: wrong layout, too small, NaN."""
    if not torch.is_tensor(img) or img.ndim != 4 or img.shape[-1] < 3:
        raise ValueError(f"{name}: expected an IMAGE (batch, height, width, 3), got "
                         f"{tuple(img.shape) if torch.is_tensor(img) else type(img).__name__}")
    ratio = vae_ratio(vae)
    h, w = img.shape[1:3]
    if min(h, w) < 2 * ratio:
        raise ValueError(f"{name} is {w}x{h} px: this VAE works in {ratio}x{ratio} px cells and needs at least "
                         f"{2 * ratio}x{2 * ratio} px; scale the image up (e.g. ImageScale)")
    if not bool(torch.isfinite(img).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_latent(model, samples: torch.Tensor, name: str) -> torch.Tensor:
    """Clear errors for a latent the model cannot take (another family's channel count, NaN); returns it."""
    if not torch.is_tensor(samples) or samples.ndim < 4:
        raise ValueError(f"{name}: expected a LATENT (batch, channels, height, width), got "
                         f"{tuple(samples.shape) if torch.is_tensor(samples) else type(samples).__name__}")
    want = getattr(model.get_model_object("latent_format"), "latent_channels", samples.shape[1])
    if samples.shape[1] != want:
        raise ValueError(f"{name}: it has {samples.shape[1]} latent channels but this model works on {want}-channel "
                         "latents: encode it with the VAE that belongs to the model")
    if not bool(torch.isfinite(samples).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return samples


def decode_frames(vae, samples: torch.Tensor) -> torch.Tensor:
    """``vae.decode`` as an IMAGE batch: a video VAE's ``(B, frames, H, W, 3)`` becomes ``(B * frames, H, W, 3)``, as
    ComfyUI's own VAE Decode does, so Save Image and the rest take a clip's frames."""
    images = vae.decode(samples)
    return images.reshape(-1, *images.shape[-3:]) if images.ndim == 5 else images
