"""Pixels per latent cell, never a literal 8: asked of the VAE when one is connected, else read off the model's
latent format (Flux.2 and Wan 2.2 are 16x; ComfyUI's latent formats carry no ratio of their own)."""
import pytest

from nodes._common import latent_ratio, vae_ratio


class Flux2:  # stand-ins named as ComfyUI's latent format classes (the rule reads the class name)
    latent_channels = 128


class Wan22:
    latent_channels = 48


class SD15:
    latent_channels = 4


class Model:
    def __init__(self, fmt):
        self.fmt = fmt

    def get_model_object(self, name):
        assert name == "latent_format"
        return self.fmt


class VAE:
    def __init__(self, r):
        self.r = r

    def spacial_compression_encode(self):
        return self.r


@pytest.mark.parametrize("fmt,want", [(Flux2(), 16), (Wan22(), 16), (SD15(), 8)])
def test_ratio_from_the_latent_format(fmt, want):
    assert latent_ratio(Model(fmt)) == want


def test_a_connected_vae_wins_over_the_format():
    assert latent_ratio(Model(SD15()), VAE(16)) == 16
    assert latent_ratio(Model(Flux2()), VAE(8)) == 8
    assert vae_ratio(VAE((4, 16, 16))) == 16  # video VAEs answer (time, height, width)


def test_without_model_or_vae_the_nodes_own_widget_decides():
    assert latent_ratio(default=4) == 4
    assert latent_ratio(vae=VAE(16), default=4) == 16
    assert latent_ratio(Model(SD15()), default=4) == 4  # a format not in the table keeps the given default
