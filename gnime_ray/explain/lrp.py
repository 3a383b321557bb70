"""Layer-wise relevance propagation (Bach et al.).

``paper`` reproduces the release's hand-written LRP as its scripts ran it, on a classifier whose
layers form one ``nn.Sequential`` (``model.layers``: Conv2d, Linear, ReLU, MaxPool2d, Flatten,
Dropout):
- the initial relevance is the WHOLE logit vector (all classes, not one);
- dense and conv layers, the first conv included, use the z+ rule with biases ignored and
  eps = 1e-9: R_i = a_i * sum_j w+_ij R_j / (sum_i a_i w+_ij + eps);
- max-pool relevance is redistributed like AVERAGE pooling (in proportion to the activations
  in each window);
- abs, then min-max per image and channel with 1e-9 added to the denominator.

``paper-flat`` is the same LRP with the flat-w+ input rule at the first conv (x replaced by ones,
with the positive weights): what the release's ``relprop_conv`` (``scripts/xai.py``) does when the
first convolution is NAMED ``conv2d``. Its prepare scripts build the evaluation model first and the
target second in one process, so the target's first convolution is ``conv2d_2`` and the flat rule
never fires; models loaded from the authors' saved files keep those names. The published tables
were therefore made with z+ on the input (``paper``); ``paper-flat`` is the code as written, kept
to measure the difference (0.2 at most per map value, correlation 0.994, on digits).
It is computed layer by layer in closed form (conv transposes), batched; the tests check it
against a slow matrix-form reference and check conservation (sum of input relevance = sum of
the logits, up to relevance lost at neurons whose z+ is zero).

``standard``: single-class LRP (the predicted class, initial relevance = its logit) through
Zennit's EpsilonPlusFlat composite (flat rule on the first layer, z+ on convs, epsilon on dense
layers, gradient through max-pool), then abs and the same min-max.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .normalize import minmax_per_channel

EPS = 1e-9


def _z_plus_conv(a: torch.Tensor, layer: nn.Conv2d, R: torch.Tensor) -> torch.Tensor:
    w = layer.weight.clamp(min=0)
    z = F.conv2d(a, w, None, layer.stride, layer.padding, layer.dilation, layer.groups) + EPS
    s = R / z
    out_pad = [a.shape[-2] - ((z.shape[-2] - 1) * layer.stride[0] - 2 * layer.padding[0] + layer.dilation[0] * (w.shape[-2] - 1) + 1),
               a.shape[-1] - ((z.shape[-1] - 1) * layer.stride[1] - 2 * layer.padding[1] + layer.dilation[1] * (w.shape[-1] - 1) + 1)]
    c = F.conv_transpose2d(s, w, None, layer.stride, layer.padding, out_pad, layer.groups, layer.dilation)
    return a * c


def _z_plus_linear(a: torch.Tensor, layer: nn.Linear, R: torch.Tensor) -> torch.Tensor:
    w = layer.weight.clamp(min=0)
    z = a @ w.T + EPS
    return a * ((R / z) @ w)


def _pool_as_average(a: torch.Tensor, layer: nn.MaxPool2d, R: torch.Tensor) -> torch.Tensor:
    k, s = layer.kernel_size, layer.stride
    if not (k == s and isinstance(k, int) and layer.padding == 0):
        raise TypeError(f"paper LRP supports non-overlapping square max-pooling only, got {layer}")
    h, w = R.shape[-2] * k, R.shape[-1] * k
    a_used = a[..., :h, :w]
    z = F.avg_pool2d(a_used, k) + EPS
    c = (R / z).repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1) / (k * k)
    out = torch.zeros_like(a)
    out[..., :h, :w] = a_used * c
    return out


@torch.no_grad()
def lrp_paper_relevance(model: nn.Module, x: torch.Tensor, flat_first: bool = False) -> torch.Tensor:
    """Raw (signed, unnormalised) paper-variant relevance of x: (N, C, H, W) -> (N, C, H, W);
    ``flat_first``: the flat rule at the first conv (``paper-flat``)."""
    layers = list(model.layers)
    acts = [x]
    for layer in layers:
        acts.append(layer(acts[-1]))
    first = next(i for i, l in enumerate(layers) if isinstance(l, (nn.Conv2d, nn.Linear)))
    R = acts[-1].clone()
    for i in range(len(layers) - 1, -1, -1):
        layer, a = layers[i], acts[i]
        if i == first and flat_first:
            a = torch.ones_like(a)
        if isinstance(layer, nn.Conv2d):
            R = _z_plus_conv(a, layer, R)
        elif isinstance(layer, nn.Linear):
            R = _z_plus_linear(a, layer, R)
        elif isinstance(layer, nn.MaxPool2d):
            R = _pool_as_average(a, layer, R)
        elif isinstance(layer, nn.Flatten):
            R = R.reshape(a.shape)
        elif isinstance(layer, (nn.ReLU, nn.Dropout)):
            pass
        else:
            raise TypeError(f"paper LRP does not support layer {type(layer).__name__}")
    return R


def lrp_paper(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x: (N, C, H, W) float32 in [0, 1] -> (N, C, H, W) float32 in [0, 1]."""
    return minmax_per_channel(lrp_paper_relevance(model, x).abs(), eps=EPS)


def lrp_paper_flat(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``lrp_paper`` with the flat rule at the first conv (the release's code as written)."""
    return minmax_per_channel(lrp_paper_relevance(model, x, flat_first=True).abs(), eps=EPS)


def lrp_standard(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x: (N, C, H, W) float32 in [0, 1] -> (N, C, H, W) float32 in [0, 1]."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    def one_class(logits: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(logits).scatter_(1, logits.argmax(1, keepdim=True), 1.0)
        return mask * logits

    x = x.detach().requires_grad_(True)
    with torch.enable_grad(), Gradient(model=model, composite=EpsilonPlusFlat()) as attributor:
        _, relevance = attributor(x, one_class)
    return minmax_per_channel(relevance.abs(), eps=EPS)
