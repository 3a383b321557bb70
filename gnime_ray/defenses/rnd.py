"""RND: i.i.d. Gaussian noise on each released map (paper Sec. 5.3.1; release).

The noise variance equals GNIME's measured perturbation MSE on the evaluation set, so RND and
GNIME perturb the maps by the same average amount. Noise is drawn afresh for every released map
(attack-train and evaluation maps get independent draws). Like the release, the noisy maps are
NOT clipped to [0, 1] (clipping would lower the perturbation below the matched MSE).
"""

from __future__ import annotations

import math

import torch


def rnd_release(e: torch.Tensor, variance: float, seed: int | torch.Generator) -> torch.Tensor:
    """e: (N, C, H, W) clean maps -> e + N(0, variance) noise (float32), drawn from a CPU generator
    seeded by ``seed``, or from ``seed`` itself when it is a generator: a split released batch by
    batch from one generator gets the same noise as in one call, as long as a map's number of
    values is a multiple of 16 (every map shape here), since PyTorch draws normals in blocks of 16."""
    if not variance >= 0:
        raise ValueError(f"RND variance must be >= 0, got {variance!r}")
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randn(e.shape, generator=gen, dtype=torch.float32) * math.sqrt(variance)
    return e.float() + noise.to(e.device)
