"""OND: optimised noise by projected gradient ascent (paper Sec. 5.3.1; not in the release).

For each map, PGD (Madry et al.) maximises the trained GNIME inversion network's reconstruction
loss mean((INV(s(e + d), y_hat) - x)^2) over the perturbation d (s: how INV takes a noisy map, the
scale its GNIME variant trained it on: defenses/gnime.py ``inv_noisy_input``), under an L2 bound per
map chosen so that the perturbation MSE equals GNIME's average: ||d||_2 <= rho = sqrt(mse * D),
D the number of values in a map. Each step moves d along the L2-normalised gradient by
``step_size * rho`` (default 2.5 / steps, Madry's rule of thumb) and projects back onto the ball;
the final d is scaled onto the sphere ||d||_2 = rho, so every OND map has perturbation MSE exactly
``target_mse`` (the paper clips RND and OND to GNIME's average perturbation size). Like RND, OND
maps are not clipped to [0, 1]. The paper does not give PGD's steps or step size: ours are
documented defaults (``ond_steps`` in the presets).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..data.host_rows import to_device


def ond_release(e: torch.Tensor, y: torch.Tensor, x: torch.Tensor, inv: nn.Module, noisy_input: Callable,
                target_mse: float, steps: int = 20, step_size: float | None = None, batch_size: int = 256) -> torch.Tensor:
    """e: (N, C', H', W') clean maps in [0, 1]; y: (N, K) logits; x: (N, C, H, W) images in [0, 1];
    inv: the trained GNIME INV; noisy_input: what INV takes for a noisy map (GnimeModel
    ``inv_noisy_input``). Returns e + d with mean(d^2) = target_mse per map."""
    if not target_mse >= 0:
        raise ValueError(f"OND target MSE must be >= 0, got {target_mse!r}")
    if steps < 1:
        raise ValueError(f"OND steps must be >= 1, got {steps}")
    alpha = 2.5 / steps if step_size is None else step_size
    dims = e[0].numel()
    rho = math.sqrt(target_mse * dims)
    dev = next(inv.parameters()).device
    was = inv.training
    inv.eval()
    out = []
    try:
        for i in range(0, e.shape[0], batch_size):
            eb, yb, xb = (to_device(t[i:i + batch_size], dev) for t in (e, y, x))
            d = torch.zeros_like(eb)
            for _ in range(steps):
                d.requires_grad_(True)
                with torch.enable_grad():
                    loss = F.mse_loss(inv(noisy_input(eb + d), yb), xb, reduction="sum")
                    (g,) = torch.autograd.grad(loss, d)
                g_norm = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (g.ndim - 1)))
                d = d.detach() + alpha * rho * g / g_norm
                d = _project(d, rho, onto_sphere=False)
            out.append((eb + _project(d, rho, onto_sphere=True)).to(e.device))
    finally:
        inv.train(was)
    return torch.cat(out)


def _project(d: torch.Tensor, rho: float, onto_sphere: bool) -> torch.Tensor:
    norm = d.flatten(1).norm(dim=1).view(-1, *([1] * (d.ndim - 1)))
    factor = rho / norm.clamp_min(1e-12)
    if not onto_sphere:
        factor = factor.clamp(max=1.0)
    return d * factor
