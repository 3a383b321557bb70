"""Throughput benchmark: ``python -m gnime_ray.bench [--device cpu|cuda] [--bf16] [--memory-format F] [--compare]``.

Prints images/s for one GNIME training step (one NG forward, two INV forwards, one backward,
two Adam steps), one ExpMI attacker step and each explainer (the paper's three in both variants,
Captum's methods at the paper preset's settings, with ms per image), on 32x32x1 inputs with 10 classes,
at width 1 (the release's networks) and batch 128 by default, plus each step's FLOPs per image
(torch.utils.flop_counter), so that the achieved GFLOP/s can be read against the machine.
``--memory-format`` defaults to ``auto``, the settings a study would choose on this machine
(gnime_ray/models/training_format.py), printed in the header. ``--compare`` prints the CPU's model and flags, then
times the GNIME step in fp32 in every memory format, in bf16 autocast where the device has native
bf16, compiled by torch.compile with ``--compile``, and the release's TensorFlow step when
``--release-python`` (or ``$GNIME_RAY_TF_PYTHON``) names a Python with TensorFlow, each with its
ratio to the release, and says how the default compares with the best. Numbers only: no pass/fail.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .attacks import build_attacker
from .optim import KerasAdam
from .models.training_format import MEMORY_FORMATS, choose, cpu_info
from .defenses.gnime import GnimeConfig, GnimeModel, build_networks, gnime_step, make_optimisers
from .config import get_preset
from .explain import CAPTUM_EXPLAINERS, PAPER_EXPLAINERS, explainer_settings, get_explainer
from .models import build_classifier


def _time(fn: Callable[[], None], warmup: int, repeats: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def _flops(fn: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _gnime_rate(dev: torch.device, b: int, width: float, repeats: int, speed, compiled: bool = False) -> float:
    """Images/s of the GNIME step in ``speed``'s settings; ``compiled``: NG and INV compiled by
    torch.compile (inductor), the first step's seconds (compilation included) printed."""
    gen = torch.Generator().manual_seed(0)
    cfg = GnimeConfig(ng_width=width, inv_width=width, batch_size=b, bf16=speed.bf16)
    ng, inv = (speed.model(n.to(dev)) for n in build_networks((1, 32, 32), (1, 32, 32), 10, cfg))
    model = GnimeModel(torch.compile(ng) if compiled else ng, torch.compile(inv) if compiled else inv, 0.3, 0.2, cfg)
    opt_ng, opt_inv = make_optimisers(model)
    e = speed.batch(model.standardise(torch.rand(b, 1, 32, 32, generator=gen).to(dev)))
    x, y = speed.batch(torch.rand(b, 1, 32, 32, generator=gen).to(dev)), torch.randn(b, 10, generator=gen).to(dev)
    if compiled:
        t0 = time.perf_counter()
        gnime_step(model, opt_ng, opt_inv, e, y, x)
        print(f"torch.compile: first step {time.perf_counter() - t0:.1f}s (compilation included)")
    return b / _time(lambda: gnime_step(model, opt_ng, opt_inv, e, y, x), 1, repeats, dev)


WATCHED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
RELEASE_BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_release_tf.py"


def _native_bf16(dev: torch.device, flags: frozenset[str]) -> bool:
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def _release_rate(python: Optional[str], b: int, repeats: int) -> Optional[float]:
    """images/s of the release's step (benchmarks/bench_release_tf.py) run by ``python``, or None."""
    if not python or not RELEASE_BENCH.is_file():
        return None
    done = subprocess.run([python, str(RELEASE_BENCH), "--batch", str(b), "--repeats", str(max(repeats, 3))],
                          capture_output=True, text=True)
    found = re.search(r"([0-9.]+) images/s", done.stdout)
    if done.returncode != 0 or not found:
        print(f"release: {python} {RELEASE_BENCH.name} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        return None
    return float(found.group(1))


def _compare(dev: torch.device, b: int, width: float, repeats: int, release_python: Optional[str],
             compiled: bool) -> int:
    """The GNIME step in every setting this machine offers, each against the release's step."""
    cpu, flags = cpu_info()
    print(f"cpu: {cpu}; flags: {', '.join(f for f in WATCHED_FLAGS if f in flags) or 'none of ' + ', '.join(WATCHED_FLAGS)}"
          f"; torch {torch.__version__}, {torch.get_num_threads()} threads; device {dev}, batch {b}, width {width:g}")
    default = choose(dev, width=width)
    rates = {f"fp32, {fmt}": _gnime_rate(dev, b, width, repeats, choose(dev, fmt))
             for fmt in ("contiguous", "channels_last")}
    if _native_bf16(dev, flags):
        rates["bf16 autocast, channels_last"] = _gnime_rate(dev, b, width, repeats, choose(dev, "channels_last", True))
    else:
        print("bf16: skipped, this device has no native bf16 (avx512_bf16 / amx_bf16 / a bf16 GPU)")
    if compiled:
        try:
            rates[f"fp32, {default.name}, torch.compile"] = _gnime_rate(dev, b, width, repeats, default, compiled=True)
        except Exception as exc:  # no C++ compiler, an unsupported op: say so and go on
            print(f"torch.compile: failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    release = _release_rate(release_python, b, repeats) if width == 1 else None
    if width != 1:
        print("release: not timed (its networks are at width 1 only)")
    elif release is None and not release_python:
        print("release: not timed (pass --release-python PYTHON, a Python with TensorFlow, to time "
              "benchmarks/bench_release_tf.py in the same run)")
    elif release is not None:
        rates["release (TensorFlow)"] = release
    for name, rate in rates.items():
        vs = f"  {rate / release:5.2f}x the release" if release else ""
        print(f"gnime step, {name:34s}: {rate:8.1f} images/s{vs}")
    ours = {k: v for k, v in rates.items() if k.startswith("fp32, ") and "compile" not in k}
    best = max(ours, key=ours.get)
    ratio = ours[f"fp32, {default.name}"] / ours[best]
    print(f"default on this machine: {default.describe()}: {100 * ratio:.1f}% of the best fp32 eager ({best})")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gnime_ray.bench", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast in the GNIME and attacker steps")
    p.add_argument("--memory-format", default="auto", choices=MEMORY_FORMATS,
                   help="memory format of networks and batches (auto: this machine's default)")
    p.add_argument("--compare", action="store_true",
                   help="time the GNIME step in every setting (fp32 per memory format, bf16 where native, "
                        "compiled with --compile) against the default and the release, then stop")
    p.add_argument("--compile", action="store_true", help="with --compare: also torch.compile's GNIME step")
    p.add_argument("--release-python", default=os.environ.get("GNIME_RAY_TF_PYTHON"),
                   help="with --compare: a Python with TensorFlow that runs benchmarks/bench_release_tf.py "
                        "(default $GNIME_RAY_TF_PYTHON)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    dev, b = torch.device(args.device), args.batch
    speed = choose(dev, args.memory_format, args.bf16, width=args.width)
    if args.compare:
        return _compare(dev, b, args.width, args.repeats, args.release_python, args.compile)
    fmt = speed.memory_format
    gen = torch.Generator().manual_seed(0)
    e = torch.rand(b, 1, 32, 32, generator=gen).to(dev).contiguous(memory_format=fmt)
    x = torch.rand(b, 1, 32, 32, generator=gen).to(dev).contiguous(memory_format=fmt)
    y = torch.randn(b, 10, generator=gen).to(dev)
    cpu, flags = cpu_info()
    print(f"device {dev}, batch {b}, width {args.width:g}, settings {speed.describe()}, "
          f"threads {torch.get_num_threads()}; cpu {cpu}, flags {', '.join(f for f in WATCHED_FLAGS if f in flags)}")

    cfg = GnimeConfig(ng_width=args.width, inv_width=args.width, batch_size=b, bf16=args.bf16)
    ng, inv = build_networks((1, 32, 32), (1, 32, 32), 10, cfg)
    model = GnimeModel(speed.model(ng.to(dev)), speed.model(inv.to(dev)), 0.3, 0.2, cfg)
    opt_ng, opt_inv = make_optimisers(model)
    e_std = model.standardise(e)
    step = lambda: gnime_step(model, opt_ng, opt_inv, e_std, y, x)
    flops = _flops(step) / b
    dt = _time(step, 1, args.repeats, dev)
    print(f"gnime step     : {b / dt:8.1f} images/s  {flops / 1e9:6.2f} GFLOP/image  {flops * b / dt / 1e9:7.1f} GFLOP/s")

    attacker = build_attacker("expmi", (1, 32, 32), (1, 32, 32), 10, args.width).to(dev, memory_format=fmt)
    opt = KerasAdam(attacker.parameters(), lr=1e-4)
    amp = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if args.bf16 else nullcontext

    def attack_step() -> None:
        with amp():
            loss = F.mse_loss(attacker(e, y).float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    flops = _flops(attack_step) / b
    dt = _time(attack_step, 1, args.repeats, dev)
    print(f"expmi step     : {b / dt:8.1f} images/s  {flops / 1e9:6.2f} GFLOP/image  {flops * b / dt / 1e9:7.1f} GFLOP/s")

    clf = build_classifier("small", (1, 32, 32), 10).to(dev, memory_format=fmt).eval()
    paper = get_preset("paper")
    runs = [(n, v) for n in PAPER_EXPLAINERS for v in ("paper", "standard")] + [(n, "") for n in CAPTUM_EXPLAINERS]
    for name, variant in runs:
        settings = explainer_settings(name, paper)
        fn = get_explainer(name, variant or "paper", settings)
        run = lambda: fn(clf, x)
        try:
            dt = _time(run, 1, args.repeats, dev)
        except ImportError as exc:  # zennit or captum missing from this environment
            print(f"{name:10s} {variant:8s}: skipped ({exc})")
            continue
        print(f"{name:10s} {variant:8s}: {b / dt:8.1f} images/s  {1000 * dt / b:7.2f} ms/image"
              + (f"  ({', '.join(f'{k} {v}' for k, v in settings.items())})" if settings else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
