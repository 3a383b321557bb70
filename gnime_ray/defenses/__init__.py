"""Defences behind one interface: fitted on the target half, then ``release(e, y, x, seed)``.

- ``none``: the clean maps.
- ``gnime``: the trained noise generator (optionally with the gamma bound of Eq. 3).
- ``rnd``: Gaussian noise at GNIME's measured perturbation MSE.
- ``ond``: PGD against GNIME's INV at GNIME's measured perturbation MSE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

import torch

from ..cellspec import DEFENSES
from .gamma import apply_gamma_bound
from .gnime import GnimeConfig, GnimeModel, gnime_step, train_gnime
from .ond import ond_release
from .rnd import rnd_release


class Defense(Protocol):
    name: str

    def release(self, e: torch.Tensor, y: torch.Tensor, x: torch.Tensor, seed: int | torch.Generator) -> torch.Tensor:
        """e: (N, C', H', W') clean maps in [0, 1]; y: (N, K) target logits; x: (N, C, H, W) the
        queried images (the defender has them) -> released maps, float32, same shape as e.
        ``seed``: the randomness of a stochastic defence (RND), a seed or a generator shared by
        the batches of one split; per-map defences (GNIME, OND, the gamma bound) give each map
        the same release whatever the batches."""


@dataclass
class NoDefense:
    name: str = "none"

    def release(self, e, y, x, seed):
        return e.float()


@dataclass
class GnimeDefense:
    model: GnimeModel
    gamma: Optional[float] = None
    name: str = "gnime"

    def release(self, e, y, x, seed):
        e_hat = self.model.release(e, y)
        return e_hat if self.gamma is None else apply_gamma_bound(e.float(), e_hat, self.gamma)


@dataclass
class RndDefense:
    variance: float
    name: str = "rnd"

    def release(self, e, y, x, seed):
        return rnd_release(e, self.variance, seed)


@dataclass
class OndDefense:
    model: GnimeModel
    target_mse: float
    steps: int = 20
    name: str = "ond"

    def release(self, e, y, x, seed):
        return ond_release(e.float(), y, x, self.model.inv, self.model.inv_noisy_input, self.target_mse, self.steps)


__all__ = ["DEFENSES", "Defense", "NoDefense", "GnimeDefense", "RndDefense", "OndDefense", "GnimeConfig",
           "GnimeModel", "apply_gamma_bound", "gnime_step", "train_gnime", "ond_release", "rnd_release"]
