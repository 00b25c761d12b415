import torch
from pixels_core import parameterization as P
from pixels_core.analytic import FiniteSetDenoiser


def test_flow_add_noise_endpoints():
    x0, n = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    assert torch.equal(P.FLOW.add_noise(0.0, n, x0), x0)
    assert torch.equal(P.FLOW.add_noise(1.0, n, x0), n)


def test_finite_set_denoiser_recovers_image_at_low_noise():
    imgs = torch.randn(3, 1, 4, 4)
    d = FiniteSetDenoiser(imgs)
    x = imgs[1:2] + 1e-3 * torch.randn(1, 1, 4, 4)
    assert torch.allclose(d(x, torch.tensor([1e-2])), imgs[1:2], atol=1e-5)
