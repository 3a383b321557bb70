"""The one U-Net-like builder used for NG, INV and the ExpMI attacker (release; B = 2048).

Encoder, at each resolution r > 2 of the input map: Conv3x3 with B/r filters + ReLU (kept as a
skip), MaxPool 2x2. It ends at 2x2x512.
Bottleneck: Flatten -> Dense64-ReLU; concatenate [that, the whole flattened input map, the
logits y_hat]; Dense512-ReLU; reshape 1x1x512; nearest upsample x4 -> 4x4.
Decoder, at r = 4, 8, ... below the output size: concatenate the skip of resolution r if there
is one ([decoder, skip]), Conv3x3 with 1024/r filters + ReLU, nearest upsample x2. At the output
resolution: concatenate the skip if there is one, then a final *linear* Conv3x3 to C_out.

This reproduces the release's parameter counts exactly at width 1: 5,341,825 for
32x32x1 -> 32x32x1 with 10 classes, 30,559,027 for 128x128x3 -> 128x128x3 with 1,000 classes.
``width`` multiplies every filter count and both dense widths (the NG-capacity knob).
The input map may be smaller than the output (the release's 16x16 Grad-CAM maps for 32x32
images); sizes must be powers of two. Flattening is NCHW (Keras: NHWC), a permutation that
changes nothing learnable.

Speed (same function, same weights): the first decoder conv sees [the bottleneck vector upsampled
to 4x4, the 4x4 skip]. On the bottleneck half the input is constant over the 4x4 grid, so its
zero-padded 3x3 conv is computed exactly as one matmul of the vector with the kernel (N, O, 3, 3)
followed by summing the kernel taps that fall inside the grid at each position
(``_conv_of_constant``), instead of a conv over 16 copies of the vector. That removes about a
tenth of the GNIME step's FLOPs, in its least efficient convolution; tests compare it with the
plain conv, values and gradients.

The last conv, at the output resolution, runs over [decoder, skip]; when it has few output channels
(at most 4: the map's or image's channels, always so here) it is computed as the sum of two convs, one
per half of its kernel, so the concatenation is never built: oneDNN's one-output-channel conv
runs at a tenth of its usual rate on a CPU, and the concatenation and its backward copies cost as
much again. On a 2-core AVX2 EPYC that made the GNIME step 7-10% faster in both memory formats
(benchmarks/profile_gnime_step.py; docs/performance.md). Same function, float rounding aside
(tests compare values and gradients with the plain conv over the concatenation).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .initialisation import default_generator, keras_init_, on_meta, scaled

B = 2048
# the last conv with at most this many output channels runs as two convs (module docstring)
FEW_CHANNELS = 4


def _pow2(n: int) -> bool:
    return n >= 4 and (n & (n - 1)) == 0


class UNet(nn.Module):
    """(map (N, C_in, h, h), logits (N, K)) -> (N, C_out, H, H), linear output."""

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], num_classes: int, width: float = 1.0,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        c_in, h_in, w_in = in_shape
        c_out, h_out, w_out = out_shape
        if h_in != w_in or h_out != w_out or not _pow2(h_in) or not _pow2(h_out) or h_in > h_out:
            raise ValueError(f"UNet needs square power-of-two sizes with input <= output, got {tuple(in_shape)} -> "
                             f"{tuple(out_shape)}")
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.num_classes = num_classes
        with on_meta():  # no draw: the weights come from ``generator`` (models/initialisation.py)
            self.enc = nn.ModuleList()
            skip_channels: dict[int, int] = {}
            c, r = c_in, h_in
            while r > 2:
                ch = scaled(B // r, width)
                self.enc.append(nn.Conv2d(c, ch, 3, padding=1))
                skip_channels[r] = ch
                c, r = ch, r // 2
            self.fc_bottleneck = nn.Linear(c * 2 * 2, scaled(64, width))
            n_mix = scaled(512, width)
            self.fc_mix = nn.Linear(scaled(64, width) + c_in * h_in * w_in + num_classes, n_mix)
            self.dec = nn.ModuleList()
            c, r = n_mix, 4
            self.dec_resolutions: list[int] = []
            while r < h_out:
                c_cat = c + skip_channels.get(r, 0)
                ch = scaled(1024 // r, width) if r <= 1024 else 1
                self.dec.append(nn.Conv2d(c_cat, ch, 3, padding=1))
                self.dec_resolutions.append(r)
                c, r = ch, r * 2
            self.out = nn.Conv2d(c + skip_channels.get(h_out, 0), c_out, 3, padding=1)
        keras_init_(self, default_generator(generator))

    def forward(self, e: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        skips: dict[int, torch.Tensor] = {}
        h = e
        for conv in self.enc:
            h = F.relu(conv(h))
            skips[int(h.shape[-1])] = h  # int: spatial sizes are static (and so under torch.jit.trace)
            h = F.max_pool2d(h, 2)
        b = F.relu(self.fc_bottleneck(h.flatten(1)))
        z = F.relu(self.fc_mix(torch.cat([b, e.flatten(1), y], dim=1)))
        h = z
        for conv, r in zip(self.dec, self.dec_resolutions):
            if h.ndim == 2:  # the bottleneck vector, upsampled x4 (see the module docstring)
                out = _conv_of_constant(conv, h, 4)
                if r in skips:
                    out = out + F.conv2d(skips[r], conv.weight[:, h.shape[1]:], None, padding=1)
            else:
                out = conv(torch.cat([h, skips[r]], dim=1) if r in skips else h)
            h = F.interpolate(F.relu(out), scale_factor=2, mode="nearest")
        if h.ndim == 2:  # a 4x4 output: no decoder conv ran
            h = h[:, :, None, None].expand(-1, -1, 4, 4)
        r = int(h.shape[-1])
        if r not in skips:
            return self.out(h)
        if self.out.out_channels <= FEW_CHANNELS:  # [h, skip] never built (module docstring)
            c = h.shape[1]
            return (F.conv2d(h, self.out.weight[:, :c], self.out.bias, padding=1)
                    + F.conv2d(skips[r], self.out.weight[:, c:], None, padding=1))
        return self.out(torch.cat([h, skips[r]], dim=1))


def _conv_of_constant(conv: nn.Conv2d, z: torch.Tensor, size: int) -> torch.Tensor:
    """``conv`` (3x3, padding 1) restricted to its first z.shape[1] input channels, applied to z
    (N, C) broadcast over a size x size grid, plus the conv's bias: (N, O, size, size). Exact: the
    tap (a, b) of the kernel contributes at (i, j) iff (i + a - 1, j + b - 1) lies in the grid."""
    w = conv.weight[:, :z.shape[1]]
    taps = torch.einsum("nc,ocab->noab", z, w)
    pos = torch.arange(size, device=z.device)[:, None] + torch.arange(3, device=z.device)[None, :] - 1
    inside = ((pos >= 0) & (pos < size)).to(taps.dtype)  # (size, 3)
    out = torch.einsum("ia,jb,noab->noij", inside, inside, taps)
    return out + conv.bias[None, :, None, None].to(out.dtype)
