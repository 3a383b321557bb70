"""Keras default initialisation, which the release relies on: glorot_uniform weights, zero biases.

PyTorch's ``xavier_uniform_`` computes fan_in = in*kh*kw and fan_out = out*kh*kw for a conv
weight (out, in, kh, kw), which is exactly Keras' glorot_uniform for Conv2D and Dense.
"""

from __future__ import annotations

from torch import nn


def scaled(channels: int, width: float) -> int:
    """A layer width times the width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


def keras_init_(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module
