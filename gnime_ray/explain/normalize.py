"""Min-max normalisation per image and per channel, as the release does for every map."""

from __future__ import annotations

import torch


def minmax_per_channel(maps: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """maps: (N, C, H, W) float -> (N, C, H, W) in [0, 1], each (image, channel) scaled by
    (m - min) / (max - min + eps). A constant (image, channel) maps to zeros instead of NaN
    (the release would divide by zero for Grad and Grad-CAM; it adds eps=1e-9 for LRP)."""
    flat = maps.flatten(2)
    lo = flat.amin(dim=2, keepdim=True)
    rng = flat.amax(dim=2, keepdim=True) - lo + eps
    out = torch.where(rng > 0, (flat - lo) / torch.where(rng > 0, rng, torch.ones_like(rng)), torch.zeros_like(flat))
    return out.view_as(maps).clamp_(0.0, 1.0)
