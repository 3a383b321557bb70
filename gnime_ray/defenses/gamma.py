"""The gamma bound of Eq. 3 (paper Sec. 4; not in the release).

e' = e + n / sqrt(var(n) / gamma), n = e_hat - e, per map, where var is the population variance
over all pixels (and channels) of the map. Each map's noise then has pixel variance exactly
gamma. Clipping e' to [0, 1] (``clip=True``) keeps released maps valid but breaks that equality:
every pixel's noise shrinks towards zero in magnitude (e lies in [0, 1], so clipping moves e'
towards e), hence the clipped perturbation MSE never exceeds the unclipped one, and the
variance is usually below gamma. A map with no noise is released unchanged.
"""

from __future__ import annotations

import torch


def apply_gamma_bound(e: torch.Tensor, e_hat: torch.Tensor, gamma: float, clip: bool = False) -> torch.Tensor:
    """e, e_hat: (N, C, H, W) float, clean and GNIME maps -> (N, C, H, W) maps whose noise
    e' - e has per-map pixel variance gamma (exactly, unless ``clip``)."""
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma!r}")
    if e.shape != e_hat.shape:
        raise ValueError(f"e and e_hat must have one shape, got {tuple(e.shape)} and {tuple(e_hat.shape)}")
    n = (e_hat - e).double()
    var = n.flatten(1).var(dim=1, unbiased=False).view(-1, *([1] * (e.ndim - 1)))
    scale = torch.where(var > 0, torch.sqrt(gamma / var.clamp_min(1e-300)), torch.zeros_like(var))
    out = (e.double() + n * scale).to(e.dtype)
    return out.clamp_(0.0, 1.0) if clip else out
