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

Compiled or eager (the preset field ``compile``: ``auto``, ``never``, ``always``, or the decided
``images>=N``): ``torch.compile`` (inductor) traces and compiles a network's training step once per
process, which took 27 s (the issue's AVX-512 EPYC) to 30-51 s (this project's 2-core AVX2 EPYC)
for the release's U-Net at width 1, and it can be faster or slower per step (``bench --compare
--compile``: 1.13x eager on the AVX-512 EPYC, 0.80-0.96x on the AVX2 one). So ``auto`` is decided once
per study (``decide_compile``) from a measurement on the study's machine (``compile_probe``: the
U-Net's training step at the run's shape, width and memory format, eager and compiled, and the
compile time, kept under ``CACHE/speed/`` like the format probe): compiling repays after N training
images, N = compile seconds / (eager - compiled seconds per image), and every U-Net a study trains
(GNIME's NG and INV, each attacker) is compiled in a process whose training budget (epochs x batches
x batch size, before early stopping) reaches N, eager otherwise (``choose(..., images=...)``). A
study whose GNIME training would take under ``COMPILE_FLOOR_S`` eager is decided ``never`` without
measuring (no compile repays there, and its attackers train on fewer images than its GNIME).
Classifiers train eager: their dropout draws masks from the study's generator through a module hook
(pipeline/fit.py ``dropout_from``), which a compiled graph would break around. On CUDA ``auto`` is
``never`` until a GPU run has measured it (benchmarks/gpu_celeba_check.py prints the compiled step).
Compiled and eager steps compute the same function (tested: the same losses within float
tolerance over a few steps); a row records whether its attacker and its GNIME ran compiled.

bf16 autocast (the preset field ``bf16``) changes the numbers, so it stays what the preset says
(default off), on every device: it is about 2.2x faster on an H100 and about 20x slower on a CPU
without bf16 units, and the digits findings have not been re-checked under it on a machine with
native bf16 (docs/performance.md: the comparison waits for one).
"""

from __future__ import annotations

import json
import math
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
# the preset field ``compile`` (module docstring); a decided study holds ``images>=N``
COMPILE_CHOICES = ("auto", "never", "always")
# a study whose GNIME training is estimated below this many seconds eager is never compiled (no
# compile measured on this project's CPUs took less: 27 to 51 s)
COMPILE_FLOOR_S = 60.0
COMPILE_PROBE_VERSION = 1


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
    compiled: bool = False

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

    def compile(self, module: torch.nn.Module) -> torch.nn.Module:
        """What a training loop calls: ``torch.compile(module)`` when compiled (the module itself
        keeps the weights, its state and what runs after training), else the module."""
        return torch.compile(module) if self.compiled else module

    def describe(self) -> str:
        return (f"{self.name}{', bf16 autocast' if self.bf16 else ', fp32'}{', compiled' if self.compiled else ', eager'}"
                f" ({self.reason})")


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


def compile_threshold(setting: str) -> Optional[int]:
    """The training images from which a network is compiled under the ``compile`` setting: None for
    ``never`` and for an undecided ``auto`` (a process outside a study trains eager), 0 for
    ``always``, N for ``images>=N``; ValueError naming the field otherwise."""
    if setting in ("auto", "never"):
        return None
    if setting == "always":
        return 0
    if isinstance(setting, str) and setting.startswith("images>="):
        n = setting[len("images>="):]
        if n.isdigit():
            return int(n)
    raise ValueError(f"compile must be one of {', '.join(COMPILE_CHOICES)} or images>=N (N an integer), got {setting!r}")


def choose(device: torch.device | str, memory_format: str = "auto", bf16: bool = False, *,
           shape: Sequence[int] = DEFAULT_SHAPE, width: float = 1.0, cache_dir: Optional[str] = None,
           compile: str = "never", images: int = 0) -> Speed:
    """The settings for ``device`` (module docstring): ``memory_format`` other than ``auto`` wins;
    on a CPU, ``auto`` follows the probe at ``shape`` and ``width`` (the run's maps and networks).
    Compiled when the ``compile`` setting's threshold is reached by ``images``, the training images
    of the network about to train (its budget)."""
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
    threshold = compile_threshold(compile)
    compiled = threshold is not None and images >= threshold
    if memory_format != "auto":
        return Speed(memory_format == "channels_last", bf16, "the study's setting", compiled)
    if torch.device(device).type == "cuda":
        return Speed(True, bf16, "CUDA", compiled)
    verdict = probe(shape, width, cache_dir)
    s = verdict["seconds"]
    ratio = s["contiguous"] / s["channels_last"]
    return Speed(bool(verdict["channels_last"]), bf16,
                 f"measured on this CPU: channels_last {ratio:.2f}x the speed of contiguous", compiled)


def _compile_seconds(shape: Sequence[int], width: float, channels_last: bool, steps: int = 3) -> dict[str, float]:
    """The U-Net's training step (as ``_step_seconds``) eager and compiled by torch.compile: median
    seconds per image of each, and the compile's seconds (the first compiled step less a later one)."""
    from .unet import UNet

    c, h, w = shape
    batch = max(4, 65536 // (h * w))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    net = UNet(shape, shape, 10, width=width, generator=gen).to(memory_format=fmt)
    e = torch.rand(batch, c, h, w, generator=gen).contiguous(memory_format=fmt)
    y = torch.randn(batch, 10, generator=gen)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step(fn) -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(fn(e, y), e).backward()
        opt.step()
        return time.perf_counter() - t0
    compiled = torch.compile(net)
    first = step(compiled)
    step(net)  # warm-up
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(steps):  # alternating, as the format probe
        times["eager"].append(step(net))
        times["compiled"].append(step(compiled))
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"eager_per_image": med["eager"] / batch, "compiled_per_image": med["compiled"] / batch,
            "compile": max(0.0, first - med["compiled"])}


def compile_probe(shape: Sequence[int], width: float, channels_last: bool, cache_dir: Optional[str] = None) -> dict:
    """This machine's compile verdict for the U-Net at ``shape``, ``width`` and memory format:
    {"seconds": {...}, "break_even_images": N or None (no gain)}, measured once (a minute or so) and
    kept under ``CACHE/speed/`` (module docstring)."""
    model, flags = cpu_info()
    facts = {"compile_probe": COMPILE_PROBE_VERSION, "cpu": model, "flags": sorted(flags), "torch": torch.__version__,
             "threads": torch.get_num_threads(), "shape": [int(s) for s in shape], "width": float(width),
             "channels_last": bool(channels_last)}
    folder = resolve_cache_dir(cache_dir) / "speed"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"compile-{content_hash(facts)}.json"
    with file_lock(path):
        if path.exists():
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass
        seconds = _compile_seconds(shape, width, channels_last)
        gain = seconds["eager_per_image"] - seconds["compiled_per_image"]
        repays = seconds["compiled_per_image"] < MARGIN * seconds["eager_per_image"]
        verdict = {**facts, "seconds": seconds,
                   "break_even_images": math.ceil(seconds["compile"] / gain) if repays else None}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(verdict, indent=1))
        return verdict


def decide_compile(device: torch.device | str, setting: str, *, shape: Sequence[int], width: float,
                   channels_last: bool, gnime_images: int, cache_dir: Optional[str] = None) -> tuple[str, str]:
    """A study's compile decision (module docstring): (the setting every process follows, why).
    ``gnime_images``: the images one GNIME training steps through (3 U-Net passes each)."""
    compile_threshold(setting)  # a bad value: ValueError naming the field
    if setting != "auto":
        return setting, "the study's setting"
    if torch.device(device).type == "cuda":
        return "never", "not measured on CUDA (benchmarks/gpu_celeba_check.py prints the compiled step)"
    eager = probe(shape, width, cache_dir)["seconds"]["channels_last" if channels_last else "contiguous"]
    estimate = 3 * gnime_images * eager / max(4, 65536 // (shape[1] * shape[2]))
    if estimate < COMPILE_FLOOR_S:
        return "never", (f"GNIME's training, about {estimate:.0f}s eager here, is shorter than any compile "
                         f"({COMPILE_FLOOR_S:.0f}s)")
    verdict = compile_probe(shape, width, channels_last, cache_dir)
    s = verdict["seconds"]
    ratio = s["eager_per_image"] / s["compiled_per_image"]
    if verdict["break_even_images"] is None:
        return "never", f"measured on this CPU: compiled {ratio:.2f}x the speed of eager, compile {s['compile']:.0f}s"
    n = verdict["break_even_images"]
    return f"images>={n}", (f"measured on this CPU: compiled {ratio:.2f}x the speed of eager, compile "
                            f"{s['compile']:.0f}s, repaid after {n} training images")
