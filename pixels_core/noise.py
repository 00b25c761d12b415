"""Seeded noise for every method: drawn on the CPU, so the same seed gives the same edit on every device.

Seeds may be any integer a ComfyUI seed widget offers (0 .. 2**64 - 1); :func:`derive_seed` maps a seed and a
salt (what the draw is for) to a generator seed in range, so no derived seed can overflow.
"""
from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *salt) -> int:
    """A generator seed in [0, 2**63) from ``seed`` and a salt naming the draw (stable across runs and platforms)."""
    text = "|".join([str(int(seed))] + [str(s) for s in salt]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & (2 ** 63 - 1)


def generator(seed: int, *salt) -> torch.Generator:
    """A CPU generator seeded with ``derive_seed(seed, *salt)``."""
    return torch.Generator(device="cpu").manual_seed(derive_seed(seed, *salt))


def randn(shape, seed: int, *salt, dtype=torch.float32) -> torch.Tensor:
    """Standard normals of ``shape`` from :func:`generator` ``(seed, *salt)``."""
    return torch.randn(tuple(shape), generator=generator(seed, *salt), dtype=dtype, device="cpu")


def fingerprint(t: torch.Tensor) -> str:
    """A short digest of a tensor's values (float32 bytes, on the CPU): equal tensors, equal fingerprints."""
    data = t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def per_item_randn(reference: torch.Tensor, seed: int, *salt, dtype=torch.float32) -> torch.Tensor:
    """One draw per batch item, shaped like ``reference``, each seeded by ``seed``, ``salt`` and the item's own
    ``reference`` values (its source noise). An item therefore gets the same draw alone as inside any batch, and
    follows whatever batch convention made ``reference`` (ComfyUI's ``batch_index`` included)."""
    items = [randn(reference.shape[1:], seed, *salt, fingerprint(r), dtype=dtype)[None] for r in reference]
    return torch.cat(items) if items else torch.empty(reference.shape, dtype=dtype)


class ItemNoiseSampler:
    """A k-diffusion ``noise_sampler(sigma, sigma_next)`` that draws fresh noise per step on the CPU, one stream
    per batch item seeded as :func:`per_item_randn` (same item, same noise, alone or in a batch, on any device)."""

    def __init__(self, reference: torch.Tensor, seed: int, *salt):
        self.shape = tuple(reference.shape[1:])
        self.device, self.dtype = reference.device, reference.dtype
        self.gens = [generator(seed, *salt, fingerprint(r)) for r in reference]

    def __call__(self, sigma=None, sigma_next=None) -> torch.Tensor:
        draws = [torch.randn(self.shape, generator=g, device="cpu")[None] for g in self.gens]
        return torch.cat(draws).to(self.device, self.dtype)
