"""The fastest correct settings of the machine a process runs on, chosen once per process.

Memory format (the preset field ``memory_format``: ``auto``, ``channels_last`` or ``contiguous``):
``auto`` follows a rule from what was measured (``python -m gnime_ray.bench``, one GNIME step at
width 1, batch 128, 32x32x1):
- CUDA: channels_last (NHWC is what cuDNN's tensor-core convolutions work in);
- a CPU with AVX-512: channels_last (oneDNN's NHWC kernels: 55.2 against 42.7 images/s on a
  2-core AMD EPYC with AVX-512, the release's TensorFlow at 57.2);
- any other CPU: contiguous (on the AVX2 machines channels_last was no faster: 17.2 against 17.2).
The choice only changes float rounding, never the computation. It is printed in a run's log and
recorded in each row (``config.runtime.memory_format``), and ``gnime-ray reproduce`` uses the
recorded one.

bf16 autocast (the preset field ``bf16``) changes the numbers, so it stays what the preset says
(default off), on every device: it is about 2.2x faster on an H100 and about 20x slower on a CPU
without bf16 units, and the digits findings have not been re-checked under it yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@dataclass(frozen=True)
class Speed:
    """The settings a process trains and evaluates with, and why."""

    channels_last: bool
    bf16: bool
    reason: str

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def name(self) -> str:
        return "channels_last" if self.channels_last else "contiguous"

    def model(self, module: torch.nn.Module) -> torch.nn.Module:
        """The module with its 4-d weights in this memory format (in place)."""
        return module.to(memory_format=self.memory_format) if self.channels_last else module

    def batch(self, t: torch.Tensor) -> torch.Tensor:
        """A 4-d batch in this memory format (others unchanged)."""
        return t.contiguous(memory_format=self.memory_format) if self.channels_last and t.ndim == 4 else t

    def describe(self) -> str:
        return f"{self.name}{', bf16 autocast' if self.bf16 else ', fp32'} ({self.reason})"


def choose(device: torch.device | str, memory_format: str = "auto", bf16: bool = False) -> Speed:
    """The settings for ``device`` (module docstring); ``memory_format`` other than ``auto`` wins."""
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
    if memory_format != "auto":
        return Speed(memory_format == "channels_last", bf16, "set by the preset")
    if torch.device(device).type == "cuda":
        return Speed(True, bf16, "CUDA")
    if "avx512f" in cpu_flags():
        return Speed(True, bf16, "a CPU with AVX-512")
    return Speed(False, bf16, "a CPU without AVX-512")
