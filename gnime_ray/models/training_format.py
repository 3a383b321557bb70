"""The memory format and precision a network trains in (``Speed``): the fastest correct settings of
the machine a process runs on, measured once per machine (``probe``, ``choose``).

Memory format (the preset field ``memory_format``: ``auto``, ``channels_last`` or ``contiguous``):
``auto`` is decided by measurement, because no rule from CPU flags held across the project's
machines (``python -m gnime_ray.bench --compare``, one GNIME step at width 1, batch 128, 32x32x1):
on a 2-core AMD EPYC with AVX-512 channels_last gave 55.2 against 42.7 images/s; on a 2-core AMD
EPYC with AVX2 only it gave 35.7 against 26.3 with torch 2.14.1, where an earlier torch build had
shown no difference at all. So:
- CUDA: channels_last (NHWC is what cuDNN's tensor-core convolutions work in);
- CPU: a short timed probe (``probe``): training steps of the release's U-Net at the run's map
  shape and width in both formats, alternating (a passing load slows both alike), a few seconds
  once; channels_last when it is at least 5% faster, contiguous otherwise. On a busy machine the
  verdict can still be wrong; delete ``CACHE/speed/`` to measure again, or set ``memory_format``. The verdict is kept per machine (CPU model and flags, torch
  version, thread count, shape, width) under ``CACHE/speed/``, so every later process on the
  machine reads it instead of measuring, and concurrent processes measure once (a file lock).
A study decides once (study/opening.py ``decide_speed``, at its dataset's image shape and network width),
records the decision (study/record.py) and passes it down as a concrete ``memory_format``, so that every
trial and attacker of the study, on whichever node, trains in the same format, and a resumed study
in the format it started with (the format changes float rounding, and GNIME's minimax is chaotic:
rounding alone can move a training's end point).
The choice only changes float rounding, never the computation, and only in training: a trained
network returns to the contiguous format (``Speed.trained``), so maps, releases and evaluations do
not depend on it. It is printed in a run's log and recorded in each row (``config.runtime.memory_format``), and ``gnime-ray reproduce`` uses the
recorded one.

bf16 autocast (the preset field ``bf16``) changes the numbers, so it stays what the preset says
(default off), on every device: it is about 2.2x faster on an H100 and about 20x slower on a CPU
without bf16 units, and the digits findings have not been re-checked under it yet.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..cachedir import atomic_path, file_lock, resolve_cache_dir
from ..cellspec import content_hash

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
# channels_last must beat contiguous by this factor to be chosen (timing noise on a busy machine)
MARGIN = 0.95
# 2: both formats' steps alternate, batch 64 at 32x32 (1: one format after the other, batch 32)
PROBE_VERSION = 2
# the probe's shape and width when a caller does not say (the release's 32x32x1 networks)
DEFAULT_SHAPE = (1, 32, 32)


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """The CPU's model name and feature flags (Linux /proc/cpuinfo; the platform's name elsewhere)."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = frozenset(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return model, flags


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

    @staticmethod
    def trained(module: torch.nn.Module) -> torch.nn.Module:
        """The module back in the contiguous format once training ends (in place): what a trained
        network computes afterwards (maps, releases, evaluations) is then the same whichever format
        it trained in and whether it was trained in this process or loaded from a file."""
        return module.to(memory_format=torch.contiguous_format)

    def batch(self, t: torch.Tensor) -> torch.Tensor:
        """A 4-d batch in this memory format (others unchanged)."""
        return t.contiguous(memory_format=self.memory_format) if self.channels_last and t.ndim == 4 else t

    def describe(self) -> str:
        return f"{self.name}{', bf16 autocast' if self.bf16 else ', fp32'} ({self.reason})"


def _step_seconds(shape: Sequence[int], width: float, steps: int = 3) -> dict[str, float]:
    """Median seconds of one training step (forward, backward, Adam) of the release's U-Net from
    ``shape`` to ``shape`` at ``width``, on CPU, per memory format. The formats' steps alternate
    (after one warm-up step each), so a load that comes and goes slows both alike."""
    from .unet import UNet  # the probe's workload (imported here: the U-Net does not need this module)

    c, h, w = shape
    batch = max(4, 65536 // (h * w))
    runs = {}
    for name, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        gen = torch.Generator().manual_seed(0)
        net = UNet(shape, shape, 10, width=width, generator=gen).to(memory_format=fmt)
        e = torch.rand(batch, c, h, w, generator=gen).contiguous(memory_format=fmt)
        runs[name] = (net, torch.optim.Adam(net.parameters(), lr=1e-4), e, torch.randn(batch, 10, generator=gen))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(steps + 1):
        for name, (net, opt, e, y) in runs.items():
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(net(e, y), e).backward()
            opt.step()
            times[name].append(time.perf_counter() - t0)
    return {name: sorted(t[1:])[len(t[1:]) // 2] for name, t in times.items()}


def probe(shape: Sequence[int] = DEFAULT_SHAPE, width: float = 1.0,
          cache_dir: Optional[str] = None) -> dict:
    """This machine's CPU verdict for ``shape`` and ``width``: {"channels_last": bool,
    "seconds": {format: s}, ...}, measured once and kept under ``CACHE/speed/`` (module docstring)."""
    model, flags = cpu_info()
    facts = {"probe": PROBE_VERSION, "cpu": model, "flags": sorted(flags), "torch": torch.__version__,
             "threads": torch.get_num_threads(), "shape": [int(s) for s in shape], "width": float(width)}
    folder = resolve_cache_dir(cache_dir) / "speed"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"probe-{content_hash(facts)}.json"
    with file_lock(path):  # one process measures; the others wait and read
        if path.exists():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass  # a damaged file: measure again
        seconds = _step_seconds(shape, width)
        verdict = {**facts, "seconds": seconds,
                   "channels_last": seconds["channels_last"] < MARGIN * seconds["contiguous"]}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(verdict, indent=1))
        return verdict


def choose(device: torch.device | str, memory_format: str = "auto", bf16: bool = False, *,
           shape: Sequence[int] = DEFAULT_SHAPE, width: float = 1.0, cache_dir: Optional[str] = None) -> Speed:
    """The settings for ``device`` (module docstring): ``memory_format`` other than ``auto`` wins;
    on a CPU, ``auto`` follows the probe at ``shape`` and ``width`` (the run's maps and networks)."""
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
    if memory_format != "auto":
        return Speed(memory_format == "channels_last", bf16, "the study's setting")
    if torch.device(device).type == "cuda":
        return Speed(True, bf16, "CUDA")
    verdict = probe(shape, width, cache_dir)
    s = verdict["seconds"]
    ratio = s["contiguous"] / s["channels_last"]
    return Speed(bool(verdict["channels_last"]), bf16,
                 f"measured on this CPU: channels_last {ratio:.2f}x the speed of contiguous")
