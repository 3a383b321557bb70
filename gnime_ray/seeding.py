"""The process's global torch RNG, shared safely by threads.

Network initialisation draws from torch's global generator (``torch.manual_seed`` then the
layers' constructors). An attack pool (tune/attack_pool.py) runs several attackers as threads of one
process, so two threads drawing at once would interleave their draws and change each other's
weights. Every draw from the global generator therefore happens under one process-wide lock:
``seeded(seed)`` from the seeding to the end of the draws (a network built inside it gets exactly
the weights it gets alone in its own process), ``global_rng()`` around a construction whose
weights are overwritten at once (a network loaded from a file: its constructor draws too).
Everything else that is random (batch order, RND's noise, splits) uses its own ``torch.Generator``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import torch

_global_rng = threading.RLock()


def global_rng() -> threading.RLock:
    """The lock of torch's global generator: hold it while drawing from it without seeding."""
    return _global_rng


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator with ``seed`` and keep it to this thread within the block."""
    with _global_rng:
        torch.manual_seed(seed)
        yield
