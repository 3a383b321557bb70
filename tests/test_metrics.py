"""Metrics against scikit-image and closed forms."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from gnime_ray.metrics import deepsim, deepsim_at, feature_distance, features, masked, mse, perturbation_mse, psnr, ssim
from gnime_ray.models.classifiers import Classifier


@pytest.mark.parametrize("channels,size", [(1, 32), (3, 16), (3, 128)])
def test_ssim_matches_scikit_image(channels, size):
    g = torch.Generator().manual_seed(channels * size)
    x = torch.rand(3, channels, size, size, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    got = ssim(x, y)
    ref = [structural_similarity(x[i].numpy(), y[i].numpy(), channel_axis=0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0) for i in range(3)]
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-10)
    assert torch.allclose(ssim(x.float(), y.float()).double(), got, atol=1e-5)


def test_ssim_identity_and_bad_shapes():
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(ssim(x, x), torch.ones(2))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


def test_mse_psnr_perturbation():
    x = torch.zeros(2, 1, 4, 4)
    y = torch.full((2, 1, 4, 4), 0.1)
    assert torch.allclose(mse(x, y), torch.full((2,), 0.01))
    assert torch.allclose(psnr(x, y), torch.full((2,), 20.0))
    assert torch.allclose(perturbation_mse(x, y), torch.full((2,), 0.01))


def test_deepsim_release_definition_and_companion():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    fro = np.linalg.norm((a - b).numpy())
    assert deepsim(a, b) == pytest.approx(math.exp(-fro / 5), rel=1e-6)
    assert deepsim(a, a) == 1.0
    per = np.linalg.norm((a - b).numpy(), axis=1).mean()
    assert feature_distance(a, b) == pytest.approx(per, rel=1e-6)
    # the release DeePSiM depends on N, its companion does not
    a2, b2 = torch.cat([a, a]), torch.cat([b, b])
    assert deepsim(a2, b2) != pytest.approx(deepsim(a, b))
    assert feature_distance(a2, b2) == pytest.approx(feature_distance(a, b))


def test_deepsim_at_another_n_is_the_release_formula_on_that_many_images():
    """deepsim_at(A, B, N) = deepsim(A, B); on k copies of the same images (kN of them) the release's
    formula gives exactly deepsim_at(A, B, kN); and deepsim_at = deepsim ** sqrt(N / n_ref)."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    assert deepsim_at(a, b, 6) == pytest.approx(deepsim(a, b), rel=1e-12)
    for k in (2, 5, 50):
        assert deepsim_at(a, b, 6 * k) == pytest.approx(deepsim(a.repeat(k, 1), b.repeat(k, 1)), rel=1e-9)
    assert deepsim_at(a, b, 7000) == pytest.approx(deepsim(a, b) ** math.sqrt(6 / 7000), rel=1e-9)
    assert deepsim_at(a, a, 7000) == 1.0
    with pytest.raises(ValueError, match="n_ref must be an integer >= 1"):
        deepsim_at(a, b, 0)


def test_utility_deepsim_as_a_cell_computes_it():
    """Table 3's utility: DeePSiM between the target's penultimate features of x*e and x*e_hat, the
    maps upsampled bilinearly to the image (pipeline/cell.py: ``features`` of ``masked``)."""
    torch.manual_seed(0)
    m = Classifier((1, 32, 32), 10, conv=(4, 8), dense=16).eval()
    x = torch.rand(6, 1, 32, 32)
    e = torch.rand(6, 1, 16, 16)

    def utility(e_hat: torch.Tensor, batch_size: int = 256) -> float:
        return deepsim(features(m, masked(x, e), batch_size), features(m, masked(x, e_hat), batch_size))

    assert utility(e) == 1.0
    e_hat = (e + 0.1 * torch.randn_like(e)).clamp(0, 1)
    up = lambda t: torch.nn.functional.interpolate(t, size=(32, 32), mode="bilinear", align_corners=False)
    with torch.no_grad():
        ref = deepsim(m.features(x * up(e)), m.features(x * up(e_hat)))
    assert utility(e_hat, batch_size=4) == pytest.approx(ref, rel=1e-5)
    assert utility(e_hat) < 1.0
