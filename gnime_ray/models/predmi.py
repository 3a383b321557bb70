"""PredMI, the prediction-only inversion network as used in the paper's tables (release).

logits -> Dense1024-ReLU -> 1x1x1024 -> nearest upsample x4 -> at r = 4, 8, ... below the output
size: Conv3x3 with 4096/r filters + ReLU + upsample x2 (1024@4, 512@8, 256@16; CelebA adds 128@32,
64@64) -> linear Conv3x3 to C at the output size. ``width`` multiplies every filter count.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .initialisation import default_generator, keras_init_, on_meta, scaled


class PredMI(nn.Module):
    """logits (N, K) -> images (N, C, H, H), linear output."""

    def __init__(self, out_shape: Sequence[int], num_classes: int, width: float = 1.0,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        c_out, h, w = out_shape
        if h != w or h < 8 or h & (h - 1):
            raise ValueError(f"PredMI needs a square power-of-two output >= 8, got {tuple(out_shape)}")
        self.out_shape = tuple(out_shape)
        with on_meta():  # no draw: the weights come from ``generator`` (models/initialisation.py)
            d = scaled(1024, width)
            self.fc = nn.Linear(num_classes, d)
            self.convs = nn.ModuleList()
            c, r = d, 4
            while r < h:
                ch = scaled(4096 // r, width)
                self.convs.append(nn.Conv2d(c, ch, 3, padding=1))
                c, r = ch, r * 2
            self.out = nn.Conv2d(c, c_out, 3, padding=1)
        keras_init_(self, default_generator(generator))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(y))[:, :, None, None].expand(-1, -1, 4, 4)
        for conv in self.convs:
            h = F.interpolate(F.relu(conv(h)), scale_factor=2, mode="nearest")
        return self.out(h)
