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
    for model, x in ((m, torch.rand(5, 1, 32, 32)), (c, torch.rand(3, 3, 128, 128))):  # one pass, the same numbers
        with torch.no_grad():
            feats, out = model.features_and_logits(x)
            assert torch.equal(feats, model.features(x)) and torch.equal(out, model(x))


def _unet_reference(net, e, y):
    """The release's forward written plainly: the bottleneck vector upsampled to 4x4 and
    concatenated with the skip before every decoder conv (no shortcut)."""
    import torch.nn.functional as F

    skips, h = {}, e
    for conv in net.enc:
        h = F.relu(conv(h))
        skips[h.shape[-1]] = h
        h = F.max_pool2d(h, 2)
    b = F.relu(net.fc_bottleneck(h.flatten(1)))
    z = F.relu(net.fc_mix(torch.cat([b, e.flatten(1), y], dim=1)))
    h = z[:, :, None, None].expand(-1, -1, 4, 4)
    for conv, r in zip(net.dec, net.dec_resolutions):
        if r in skips:
            h = torch.cat([h, skips[r]], dim=1)
        h = F.interpolate(F.relu(conv(h)), scale_factor=2, mode="nearest")
    if h.shape[-1] in skips:
        h = torch.cat([h, skips[h.shape[-1]]], dim=1)
    return net.out(h)


@pytest.mark.parametrize("in_shape,out_shape", [((1, 32, 32), (1, 32, 32)), ((1, 16, 16), (1, 32, 32)),
                                                ((3, 32, 32), (3, 32, 32))])
def test_unet_constant_bottleneck_conv_equals_the_plain_conv(in_shape, out_shape):
    """The U-Net's shortcuts (the bottleneck's conv as a matmul, the last conv as two convs over
    [decoder, skip]: models/unet.py) compute the plain convs over the concatenations: values, the
    parameters' gradients and the input's (through INV it reaches NG), in both memory formats."""
    from gnime_ray.models import UNet

    torch.manual_seed(0)
    net = UNet(in_shape, out_shape, 10, width=0.25)
    for p in net.parameters():  # non-zero biases too
        torch.nn.init.normal_(p, std=0.05)
    e, y = torch.rand(3, *in_shape, dtype=torch.float64), torch.randn(3, 10, dtype=torch.float64)
    net = net.double()
    e.requires_grad_(True)
    ref = _unet_reference(net, e, y)
    g_ref = torch.autograd.grad(ref.square().sum(), list(net.parameters()) + [e])
    for fmt in (torch.contiguous_format, torch.channels_last):
        net.to(memory_format=fmt)
        ef = e.detach().contiguous(memory_format=fmt).requires_grad_(True)
        fast = net(ef, y)
        assert torch.allclose(fast, ref, atol=1e-12, rtol=1e-10)
        g_fast = torch.autograd.grad(fast.square().sum(), list(net.parameters()) + [ef])
        for a, b in zip(g_fast, g_ref):
            assert torch.allclose(a, b, atol=1e-10, rtol=1e-8)
