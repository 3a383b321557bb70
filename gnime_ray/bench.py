"""Throughput benchmark: ``python -m gnime_ray.bench [--device cpu|cuda] [--bf16] [--memory-format F] [--compare]``.

Prints images/s for one GNIME training step (one NG forward, two INV forwards, one backward,
two Adam steps), one ExpMI attacker step and each explainer, on 32x32x1 inputs with 10 classes,
at width 1 (the release's networks) and batch 128 by default, plus each step's FLOPs per image
(torch.utils.flop_counter), so that the achieved GFLOP/s can be read against the machine.
``--memory-format`` defaults to ``auto``, the settings a study would choose on this machine
(gnime_ray/speed.py), printed in the header. ``--compare`` times the GNIME step in fp32 in every
memory format and says how the default compares with the best. Numbers only: no pass/fail.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .attacks import build_attacker
from .optim import KerasAdam
from .speed import MEMORY_FORMATS, choose
from .defenses.gnime import GnimeConfig, GnimeModel, build_networks, gnime_step, make_optimisers
from .explain import EXPLAINER_NAMES, get_explainer
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


def _gnime_rate(dev: torch.device, b: int, width: float, repeats: int, speed) -> float:
    """Images/s of the GNIME step in ``speed``'s settings."""
    gen = torch.Generator().manual_seed(0)
    cfg = GnimeConfig(ng_width=width, inv_width=width, batch_size=b, bf16=speed.bf16)
    ng, inv = build_networks((1, 32, 32), (1, 32, 32), 10, cfg)
    model = GnimeModel(speed.model(ng.to(dev)), speed.model(inv.to(dev)), 0.3, 0.2, cfg)
    opt_ng, opt_inv = make_optimisers(model)
    e = speed.batch(model.standardise(torch.rand(b, 1, 32, 32, generator=gen).to(dev)))
    x, y = speed.batch(torch.rand(b, 1, 32, 32, generator=gen).to(dev)), torch.randn(b, 10, generator=gen).to(dev)
    return b / _time(lambda: gnime_step(model, opt_ng, opt_inv, e, y, x), 1, repeats, dev)


def _compare(dev: torch.device, b: int, width: float, repeats: int) -> int:
    default = choose(dev, width=width)
    rates = {fmt: _gnime_rate(dev, b, width, repeats, choose(dev, fmt)) for fmt in ("contiguous", "channels_last")}
    best = max(rates, key=rates.get)
    for fmt, rate in rates.items():
        print(f"gnime step, fp32, {fmt:13s}: {rate:8.1f} images/s")
    ratio = rates[default.name] / rates[best]
    print(f"default on this machine: {default.describe()}: {100 * ratio:.1f}% of the best ({best})")
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
                   help="time the fp32 GNIME step in every memory format against the default, then stop")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    dev, b = torch.device(args.device), args.batch
    speed = choose(dev, args.memory_format, args.bf16, width=args.width)
    if args.compare:
        return _compare(dev, b, args.width, args.repeats)
    fmt = speed.memory_format
    gen = torch.Generator().manual_seed(0)
    e = torch.rand(b, 1, 32, 32, generator=gen).to(dev).contiguous(memory_format=fmt)
    x = torch.rand(b, 1, 32, 32, generator=gen).to(dev).contiguous(memory_format=fmt)
    y = torch.randn(b, 10, generator=gen).to(dev)
    print(f"device {dev}, batch {b}, width {args.width:g}, settings {speed.describe()}, "
          f"threads {torch.get_num_threads()}")

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
    for name in EXPLAINER_NAMES:
        for variant in ("paper", "standard"):
            fn = get_explainer(name, variant)
            run = lambda: fn(clf, x)
            try:
                dt = _time(run, 1, args.repeats, dev)
            except ImportError as exc:  # zennit missing from this environment
                print(f"{name:8s} {variant:8s}: skipped ({exc})")
                continue
            print(f"{name:8s} {variant:8s}: {b / dt:8.1f} images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
