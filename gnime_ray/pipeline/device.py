"""The one device rule of every engine: the device named, else CUDA where torch sees a GPU and the
task was given one, else the CPU."""

from __future__ import annotations

import torch


def pick_device(name: str | None = None, *, gpu_granted: bool = True) -> torch.device:
    """``name`` when given; else CUDA if ``gpu_granted`` and torch sees a GPU, else the CPU.
    ``gpu_granted``: whether the scheduler gave this task a GPU (a Ray task: its GPU request and
    ``ray.get_gpu_ids()``, tune/resources.py ``gpu_granted``; without a scheduler, True). A test
    cluster may fake GPUs on a CPU machine: torch sees none there, so the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if gpu_granted and torch.cuda.is_available() else "cpu")
