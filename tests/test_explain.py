"""Explainers against autograd, a matrix-form LRP reference, conservation and batch invariance."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gnime_ray import GnimeRayError
from gnime_ray.explain import EXPLAINER_NAMES, EXPLAINER_VARIANTS, get_explainer, lrp_paper_relevance
from gnime_ray.models.classifiers import Classifier


def _minmax(t):
    lo, hi = t.amin(dim=(-2, -1), keepdim=True), t.amax(dim=(-2, -1), keepdim=True)
    return (t - lo) / (hi - lo)


def test_grad_equals_normalised_abs_autograd(tiny_classifier):
    x = torch.rand(4, 1, 32, 32)
    maps = get_explainer("grad")(tiny_classifier, x)
    for i in range(4):
        xi = x[i:i + 1].clone().requires_grad_(True)
        logits = tiny_classifier(xi)
        logits[0, logits.argmax()].backward()
        assert torch.allclose(maps[i], _minmax(xi.grad.abs())[0], atol=1e-6)


def test_grad_keeps_colour_channels_normalised_separately():
    torch.manual_seed(2)
    m = Classifier((3, 32, 32), 10, conv=(8, 8), dense=16).eval()
    maps = get_explainer("grad")(m, torch.rand(2, 3, 32, 32))
    assert maps.shape == (2, 3, 32, 32)
    flat = maps.flatten(2)
    assert torch.allclose(flat.amax(2), torch.ones(2, 3)) and torch.allclose(flat.amin(2), torch.zeros(2, 3))


@pytest.mark.parametrize("name,variant", [(n, v) for n in EXPLAINER_NAMES for v in EXPLAINER_VARIANTS])
def test_range_shape_and_purity(tiny_classifier, name, variant):
    m = tiny_classifier
    m.train()
    x = torch.rand(5, 1, 32, 32)
    maps = get_explainer(name, variant)(m, x)
    assert m.training  # mode restored
    m.eval()
    assert all(p.grad is None for p in m.parameters())
    assert maps.dtype == torch.float32 and maps.min() >= 0 and maps.max() <= 1
    expected = (5, 1, 16, 16) if name == "gradcam" and variant != "standard" else (5, 1, 32, 32)
    assert maps.shape == expected
    assert maps.flatten(1).amax(1).min() > 0.99  # every map uses the full range


@pytest.mark.parametrize("name,variant", [("grad", "paper"), ("grad", "standard"), ("gradcam", "standard"),
                                          ("lrp", "paper"), ("lrp", "standard")])
def test_batch_invariance(tiny_classifier, name, variant):
    fn = get_explainer(name, variant)
    x = torch.rand(6, 1, 32, 32)
    full = fn(tiny_classifier, x)
    singles = torch.cat([fn(tiny_classifier, x[i:i + 1]) for i in range(6)])
    assert torch.allclose(full, singles, atol=1e-5)


def test_gradcam_paper_is_batch_dependent_and_matches_release_formula(tiny_classifier):
    m, fn = tiny_classifier, get_explainer("gradcam", "paper")
    x = torch.rand(6, 1, 32, 32)
    full = fn(m, x)
    alone = fn(m, x[:1])
    assert not torch.allclose(full[0], alone[0], atol=1e-3)  # weights are averaged over the batch
    # release formula: batch- and space-mean gradient weights, channel mean, abs, min-max, no upsampling
    a = m.forward_to(x, m.cam_index).detach().requires_grad_(True)
    logits = m.layers[m.cam_index + 1:](a)
    logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    w = a.grad.mean(dim=(0, 2, 3))
    ref = _minmax((a.detach() * w[None, :, None, None]).mean(1, keepdim=True).abs())
    assert torch.allclose(full, ref, atol=1e-6)


def test_gradcam_standard_matches_textbook_formula(tiny_classifier):
    m = tiny_classifier
    x = torch.rand(3, 1, 32, 32)
    got = get_explainer("gradcam", "standard")(m, x)
    for i in range(3):
        a = m.forward_to(x[i:i + 1], m.cam_index).detach().requires_grad_(True)
        logits = m.layers[m.cam_index + 1:](a)
        logits[0, logits.argmax()].backward()
        cam = F.relu((a.grad.mean(dim=(2, 3), keepdim=True) * a.detach()).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=(32, 32), mode="bilinear", align_corners=False)
        assert torch.allclose(got[i], _minmax(cam)[0], atol=1e-5)


# relevance sum and two pixels of the fixed-weight net below (torch.manual_seed(0), a linspace input),
# computed once with this code (z+ at the first conv; the flat rule there): a regression pin
ZPLUS_FIXED = [-0.011129806286764864, -0.00016052319016142763, -0.0003417876109340015]
FLAT_FIXED = [-0.011129806293125355, -0.00017534846123848952, -0.0003026707397495495]


def _small_net(seed=0, channels=1, size=8):
    torch.manual_seed(seed)
    return Classifier((channels, size, size), 3, conv=(3, 4), dense=6).double().eval()


@pytest.mark.parametrize("flat_first", [False, True])
def test_lrp_paper_conserves_relevance(flat_first):
    torch.manual_seed(0)
    m = Classifier((1, 32, 32), 10, conv=(16, 32), dense=64).eval()
    x = torch.rand(8, 1, 32, 32)
    R = lrp_paper_relevance(m, x, flat_first=flat_first)
    assert R.shape == x.shape
    assert torch.allclose(R.sum(dim=(1, 2, 3)), m(x).sum(dim=1), rtol=1e-4, atol=1e-5)


def test_lrp_first_layer_rules_differ_and_match_fixed_values():
    """The published maps (z+ on the input at the first conv) and the code as written (flat rule)
    are different maps; both are pinned to values computed once on fixed weights (regression)."""
    torch.manual_seed(0)
    m = Classifier((1, 8, 8), 3, conv=(3, 4), dense=6).double().eval()
    x = torch.linspace(0, 1, 64, dtype=torch.float64).view(1, 1, 8, 8)
    zplus, flat = lrp_paper_relevance(m, x), lrp_paper_relevance(m, x, flat_first=True)
    assert not torch.allclose(zplus, flat)
    assert zplus[0, 0, 0, 0].item() == 0.0  # z+ on the input: a zero pixel gets no relevance
    np.testing.assert_allclose([zplus.sum().item(), zplus[0, 0, 3, 4].item(), zplus[0, 0, 7, 7].item()],
                               ZPLUS_FIXED, rtol=1e-10)
    np.testing.assert_allclose([flat.sum().item(), flat[0, 0, 3, 4].item(), flat[0, 0, 7, 7].item()],
                               FLAT_FIXED, rtol=1e-10)
    assert torch.equal(get_explainer("lrp", "paper")(m, x), get_explainer("lrp", "paper")(m, x))
    assert not torch.allclose(get_explainer("lrp", "paper")(m, x), get_explainer("lrp", "paper-flat")(m, x))


def _layer_matrix(layer, in_shape):
    """The dense (out, in) matrix of a linear map without bias, from its action on a basis."""
    n = int(np.prod(in_shape))
    basis = torch.eye(n, dtype=torch.float64).view(n, *in_shape)
    with torch.no_grad():
        if isinstance(layer, nn.Conv2d):
            out = F.conv2d(basis, layer.weight, None, layer.stride, layer.padding)
        elif isinstance(layer, nn.MaxPool2d):  # the release treats max-pooling as average pooling
            out = F.avg_pool2d(basis, layer.kernel_size)
        else:
            out = basis @ layer.weight.T
    return out.reshape(n, -1).T.numpy()


def _lrp_reference(model, x, flat_first=False):
    """Slow, explicit z+ LRP in matrix form (float64 numpy, loops over neurons); ``flat_first``:
    the first layer's input replaced by ones (the flat rule)."""
    layers = list(model.layers)
    acts = [x[0]]
    with torch.no_grad():
        for l in layers:
            acts.append(l(acts[-1][None])[0])
    R = acts[-1].numpy().ravel()
    first = next(i for i, l in enumerate(layers) if isinstance(l, (nn.Conv2d, nn.Linear)))
    for i in range(len(layers) - 1, -1, -1):
        l = layers[i]
        if isinstance(l, (nn.ReLU, nn.Dropout, nn.Flatten)):
            continue
        a = acts[i].numpy().ravel()
        if i == first and flat_first:
            a = np.ones_like(a)
        M = np.clip(_layer_matrix(l, tuple(acts[i].shape)), 0, None)
        R_in = np.zeros_like(a)
        for j in range(M.shape[0]):
            z = sum(a[k] * M[j, k] for k in range(M.shape[1])) + 1e-9
            for k in np.nonzero(M[j])[0]:
                R_in[k] += a[k] * M[j, k] / z * R[j]
        R = R_in
    return R.reshape(x.shape[1:])


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("flat_first", [False, True])
def test_lrp_paper_equals_matrix_reference(channels, flat_first):
    m = _small_net(seed=channels, channels=channels)
    x = torch.rand(2, channels, 8, 8, dtype=torch.float64)
    got = lrp_paper_relevance(m, x, flat_first=flat_first)
    for i in range(2):
        ref = _lrp_reference(m, x[i:i + 1], flat_first=flat_first)
        np.testing.assert_allclose(got[i].numpy(), ref, rtol=1e-9, atol=1e-12)


def test_lrp_standard_explains_one_class(tiny_classifier):
    """Single-class LRP: the map of the predicted class differs from the all-class paper map."""
    x = torch.rand(2, 1, 32, 32)
    std = get_explainer("lrp", "standard")(tiny_classifier, x)
    paper = get_explainer("lrp", "paper")(tiny_classifier, x)
    assert not torch.allclose(std, paper, atol=1e-2)


def test_unknown_explainer_or_variant():
    with pytest.raises(GnimeRayError, match="unknown explainer 'cam'"):
        get_explainer("cam")
    with pytest.raises(GnimeRayError, match="variant 'exact'"):
        get_explainer("grad", "exact")
