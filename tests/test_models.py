"""Architectures: the release's exact parameter counts at width 1, shapes, initialisation."""

import math

import pytest
import torch
from torch import nn

from gnime_ray.models import PredMI, UNet, build_classifier, count_parameters


def test_classifier_parameter_counts_match_release():
    assert count_parameters(build_classifier("small", (1, 32, 32), 10)) == 8_690_698
    assert count_parameters(build_classifier("celeba", (3, 128, 128), 1000)) == 69_101_288


def test_unet_parameter_counts_match_release():
    assert count_parameters(UNet((1, 32, 32), (1, 32, 32), 10)) == 5_341_825
    assert count_parameters(UNet((3, 128, 128), (3, 128, 128), 1000)) == 30_559_027


def test_unet_shapes_and_width():
    u = UNet((1, 16, 16), (1, 32, 32), 10, width=0.25)
    out = u(torch.rand(3, 1, 16, 16), torch.randn(3, 10))
    assert out.shape == (3, 1, 32, 32)
    assert count_parameters(u) < count_parameters(UNet((1, 16, 16), (1, 32, 32), 10)) / 8
    # the whole input map and the logits reach the output through the bottleneck
    e = torch.rand(1, 1, 16, 16)
    y = torch.randn(1, 10, requires_grad=True)
    u(e, y).sum().backward()
    assert y.grad.abs().sum() > 0


def test_predmi_shapes():
    assert PredMI((1, 32, 32), 10, width=0.1)(torch.randn(2, 10)).shape == (2, 1, 32, 32)
    assert PredMI((3, 128, 128), 7, width=0.05)(torch.randn(2, 7)).shape == (2, 3, 128, 128)


def test_keras_glorot_uniform_init_and_zero_bias():
    torch.manual_seed(0)
    m = build_classifier("small", (1, 32, 32), 10)
    conv = m.layers[3]
    assert isinstance(conv, nn.Conv2d)
    fan_in, fan_out = 128 * 9, 256 * 9
    limit = math.sqrt(6 / (fan_in + fan_out))
    w = conv.weight
    assert w.abs().max() <= limit
    assert w.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.02)  # uniform(-l, l) has std l/sqrt(3)
    assert all(float(l.bias.detach().abs().sum()) == 0 for l in m.modules() if isinstance(l, (nn.Conv2d, nn.Linear)))


def test_classifier_features_and_cam():
    m = build_classifier("small", (1, 32, 32), 10, width=0.125).eval()
    x = torch.rand(2, 1, 32, 32)
    a, logits = m.cam_forward(x)
    assert a.shape == (2, 32, 16, 16) and (a >= 0).all()
    assert torch.allclose(logits, m(x))
    assert m.features(x).shape == (2, 32 * 8 * 8)  # the release's Flatten output
    c = build_classifier("celeba", (3, 128, 128), 5, width=0.0625).eval()
    assert c.features(torch.rand(2, 3, 128, 128)).shape == (2, 32)  # Dense512 (scaled) output
