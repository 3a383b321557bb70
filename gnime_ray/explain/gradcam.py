"""Grad-CAM (Selvaraju et al.) on the classifier's last conv activation (after ReLU, before
pooling), for the predicted class. The model must provide ``cam_forward(x) -> (activation, logits)``.

``paper`` (release quirks, kept on purpose): the channel weights are the gradient's mean over
the batch AND H, W, so a map depends on the other images in its batch; the map is the channel
MEAN of weights*activations, without ReLU; abs; min-max; NOT upsampled (16x16 for 32x32 inputs).

``standard``: per-sample weights (mean over H, W), channel sum, ReLU, bilinear upsampling to
the input size (align_corners=False), min-max. Batch-invariant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .grad import top_logit_sum
from .normalize import minmax_per_channel


def _activation_and_grad(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)  # keeps the graph even when the model's parameters are frozen
    with torch.enable_grad():
        a, logits = model.cam_forward(x)
        (g,) = torch.autograd.grad(top_logit_sum(logits), a)
    return a.detach(), g


def gradcam_paper(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x: (N, C, H, W) float32 in [0, 1] -> (N, 1, h, w) float32 in [0, 1], h, w of the last conv."""
    a, g = _activation_and_grad(model, x)
    weights = g.mean(dim=(0, 2, 3))[None, :, None, None]
    cam = (a * weights).mean(dim=1, keepdim=True)
    return minmax_per_channel(cam.abs())


def gradcam_standard(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x: (N, C, H, W) float32 in [0, 1] -> (N, 1, H, W) float32 in [0, 1]."""
    a, g = _activation_and_grad(model, x)
    weights = g.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((a * weights).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return minmax_per_channel(cam)
