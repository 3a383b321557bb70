"""Adam as Keras computes it: the optimiser of everything gnime_ray trains (the classifiers, GNIME's
NG and INV, the attackers, the attribute classifiers), as the release trains them.

Keras/TensorFlow adds epsilon to sqrt(v) BEFORE the bias correction:

    m_t = b1 m + (1 - b1) g        v_t = b2 v + (1 - b2) g^2
    lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)
    p  -= lr_t * m_t / (sqrt(v_t) + eps)

PyTorch's Adam adds it after (p -= lr / (1 - b1^t) * m_t / (sqrt(v_t / (1 - b2^t)) + eps)), so the
same eps moves parameters differently, most in the first steps and for parameters with small
gradients (on GNIME's first step 27% of NG's and 52% of INV's parameters moved by more than 1% of
the learning rate differently). The two agree exactly when PyTorch's eps at step t is
eps / sqrt(1 - b2^t): ``KerasAdam`` is PyTorch's Adam (its fused, foreach and state-dict machinery)
with that eps set before every step, which equals the Keras update up to float rounding (tested
against the closed form).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

KERAS_EPSILON = 1e-7


class KerasAdam(torch.optim.Adam):
    """``torch.optim.Adam`` with Keras' placement of epsilon (module docstring)."""

    def __init__(self, params: Iterable, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = KERAS_EPSILON):
        super().__init__(params, lr=lr, betas=betas, eps=eps)
        for group in self.param_groups:
            group["keras_eps"] = eps

    def _next_step(self, group: dict) -> int:
        for p in group["params"]:
            state = self.state.get(p)
            if state and "step" in state:
                return int(state["step"]) + 1
        return 1

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            t = self._next_step(group)
            group["eps"] = group["keras_eps"] / math.sqrt(1.0 - group["betas"][1] ** t)
        return super().step(closure)
