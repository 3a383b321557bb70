"""Initialisation from a generator the caller owns, and dropout that draws from one.

Keras' default initialisation, which the release relies on: glorot_uniform weights, zero biases.
PyTorch's ``xavier_uniform_`` computes fan_in = in*kh*kw and fan_out = out*kh*kw for a conv
weight (out, in, kh, kw), which is exactly Keras' glorot_uniform for Conv2D and Dense.

No network here draws from torch's global generator: its layers are made on the meta device
(``on_meta``: no memory, no draw), then ``keras_init_`` gives them storage and draws every weight
from the ``torch.Generator`` it is handed. So attackers initialised at once by the threads of one
process (tune/attack_pool.py) get exactly the weights each gets alone, with no lock.

The weights equal those of ``torch.manual_seed(seed)`` followed by a constructor that lets torch's
layers initialise themselves and then applies glorot_uniform (what gnime_ray did up to commit
3a56a23): ``keras_init_`` first replays the draws of torch's default initialisation (each layer's
``reset_parameters``: kaiming_uniform with a = sqrt(5), bias uniform in +-1/sqrt(fan_in)), in the
order the layers were made, and discards them. That keeps every number made before valid
(tests/test_models.py checks the weights of each network against ones recorded from that version).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import nn


def scaled(channels: int, width: float) -> int:
    """A layer width times the width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


def default_generator(generator: Optional[torch.Generator]) -> torch.Generator:
    """``generator``, or a fresh one seeded 0 (a network built without one gets the same weights every time)."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


@contextmanager
def on_meta() -> Iterator[None]:
    """Make the layers created in this block on the meta device: no storage, no random draw.
    (``torch.device`` as a context is per thread.)"""
    with torch.device("meta"):
        yield


def _layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def keras_init_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give ``module``'s meta (or any) parameters CPU storage and initialise every Conv2d and Linear
    layer from ``generator``: the draws of torch's default initialisation replayed and discarded
    (module docstring), then glorot_uniform weights and zero biases. The layers must have been
    made in the order ``module.modules()`` lists them (true of every network in this package)."""
    if any(p.is_meta for p in module.parameters()):
        module.to_empty(device="cpu")
    with torch.no_grad():
        for m in _layers(module):  # torch's reset_parameters, drawn from the generator
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        for m in _layers(module):
            nn.init.xavier_uniform_(m.weight, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class OwnedDropout(nn.Dropout):
    """``nn.Dropout`` whose masks come from ``generator``, set by whoever trains the network
    (pipeline/fit.py), never from torch's global generator. Same masks and values as
    ``F.dropout`` drawing from a global generator in the same state (tests/test_models.py).
    In eval mode it is the identity, as nn.Dropout."""

    generator: Optional[torch.Generator] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.generator is None:
            raise RuntimeError("dropout in training mode needs a generator: set it with models.dropout_from(...)")
        if self.p == 1:
            return x * 0
        noise = torch.empty_like(x).bernoulli_(1 - self.p, generator=self.generator).div_(1 - self.p)
        return x * noise


@contextmanager
def dropout_from(module: nn.Module, generator: torch.Generator) -> Iterator[nn.Module]:
    """Within the block, every OwnedDropout of ``module`` draws its masks from ``generator``."""
    layers = [m for m in module.modules() if isinstance(m, OwnedDropout)]
    for m in layers:
        m.generator = generator
    try:
        yield module
    finally:
        for m in layers:
            m.generator = None
