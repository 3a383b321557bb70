"""Grad (Simonyan et al.): |d logit_top / d x|, min-max per image and channel (release and
standard agree). Colour channels are kept (3-channel maps for RGB inputs)."""

from __future__ import annotations

import torch
from torch import nn

from .normalize import minmax_per_channel


def top_logit_sum(logits: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of each sample's predicted-class logit; its gradient w.r.t. the batch
    is each sample's own gradient, since samples do not interact in eval mode."""
    return logits.gather(1, logits.argmax(dim=1, keepdim=True)).sum()


def grad_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x: (N, C, H, W) float32 in [0, 1] -> (N, C, H, W) float32 in [0, 1]."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(top_logit_sum(model(x)), x)
    return minmax_per_channel(g.abs())
