#!/usr/bin/env python
"""What the CUDA path does that the CPU tests cannot reach, checked in a few minutes on a GPU machine,
as a checklist with the figures expected (numbers and verdicts; never run by CI, which has no GPU).

Each line is ``[ok]`` (as expected), ``[check]`` (outside what is expected: read the figure), or
``[skip]`` (no GPU, or the device lacks the feature). The items:

1. the device: name, memory, native bf16 (expected on Ampere and later);
2. pinned memory: ``data/host_rows.py to_device`` pins each batch and copies it without blocking;
   its bandwidth against a pageable copy (expected at least 0.9x) and against memory pinned
   beforehand (the ceiling), GB/s;
3. one CUDA stream per attack-pool thread (``tune/attack_pool.py on_own_stream``): two threads get
   two distinct non-default streams, and their small kernels overlap (two threads' work in less than
   1.8x one thread's time);
4. the per-process memory cap of a GPU fraction (``tune/resources.py cap_gpu_memory``), in a child
   process capped at 0.25 of the card: an allocation of 0.2 of the card succeeds, one of 0.3 fails;
5. the GNIME step at width 1, batch 128, 32x32x1 (``python -m gnime_ray.bench``'s step) in fp32
   contiguous, fp32 channels_last (the CUDA default: expected at least as fast) and bf16 autocast
   (expected at least 1.5x fp32; an older H100 run gave 2.2x at batch 1024), images/s each;
6. compiled code: the GNIME step compiled by torch.compile gives eager's losses over three steps
   (relative 1e-3; TF32 and kernel choice differ) and its speed against eager, with the compile's
   seconds (expected under 120 s; the study decides ``compile`` as ``never`` on CUDA until such a
   figure is known: models/training_format.py);
7. the speed decision a study makes on CUDA (``study/opening.py decide_speed``): channels_last, fp32,
   eager.

    python benchmarks/cuda_checklist.py        # also the first part of benchmarks/gpu_celeba_check.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def line(verdict: str, item: str, detail: str) -> bool:
    print(f"[{verdict}] {item}: {detail}", flush=True)
    return verdict != "check"


def _seconds(fn, repeats: int = 5) -> float:
    import torch

    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def check_pinned() -> bool:
    import torch

    from gnime_ray.data.host_rows import to_device

    host = torch.rand(1024, 3, 128, 128)  # a CelebA batch of maps, 201 MB
    gb = host.numel() * 4 / 1e9
    staged = host.pin_memory()
    dma = _seconds(lambda: staged.to("cuda", non_blocking=True))
    ours = _seconds(lambda: to_device(host, "cuda"))  # as the code runs it: pinned per batch, then copied
    pageable = _seconds(lambda: host.to("cuda"))
    return line("ok" if pageable / ours >= 0.9 else "check", "pinned copies (data/host_rows.py to_device)",
                f"{gb / ours:.1f} GB/s per batch pinned and copied, {gb / pageable:.1f} GB/s pageable, "
                f"{gb / dma:.1f} GB/s from memory pinned beforehand (expected: to_device at least 0.9x "
                f"the pageable copy; far below the pinned DMA: pin the host rows once instead)")


def check_streams() -> bool:
    import torch

    from gnime_ray.tune.attack_pool import on_own_stream

    a = torch.rand(512, 512, device="cuda")

    def work():
        for _ in range(200):
            a @ a
        return torch.cuda.current_stream()
    one = _seconds(lambda: on_own_stream(work), 3)
    streams: list = []
    t0 = time.perf_counter()
    threads = [threading.Thread(target=lambda: streams.append(on_own_stream(work))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    two = time.perf_counter() - t0
    distinct = len({s.cuda_stream for s in streams}) == 2 and all(s != torch.cuda.default_stream() for s in streams)
    ok = distinct and two < 1.8 * one
    return line("ok" if ok else "check", "a stream per attack-pool thread",
                f"{'two distinct non-default streams' if distinct else 'streams shared: ' + str(streams)}; "
                f"two threads {1000 * two:.0f} ms, one {1000 * one:.0f} ms ({two / one:.2f}x; expected < 1.8x)")


CAP_CHILD = """
import torch
from gnime_ray.tune.resources import cap_gpu_memory
cap_gpu_memory(0.25)
total = torch.cuda.get_device_properties(0).total_memory
ok = torch.empty(int(0.2 * total) // 4, device="cuda")
del ok
try:
    torch.empty(int(0.3 * total) // 4, device="cuda")
    print("over the cap: allocated")
except torch.OutOfMemoryError:
    print("over the cap: refused")
"""


def check_memory_cap() -> bool:
    done = subprocess.run([sys.executable, "-c", CAP_CHILD], capture_output=True, text=True, cwd=ROOT)
    out = done.stdout.strip()
    return line("ok" if out == "over the cap: refused" else "check", "memory cap of a 0.25 fraction",
                f"0.2 of the card allocated, 0.3 {out.rsplit(' ', 1)[-1] if out else 'failed: ' + done.stderr[-200:]}"
                " (expected: refused)")


def check_formats_and_bf16() -> bool:
    import torch

    from gnime_ray.bench import _gnime_rate
    from gnime_ray.models.training_format import choose

    dev = torch.device("cuda")
    rates = {"fp32 contiguous": _gnime_rate(dev, 128, 1.0, 10, choose(dev, "contiguous")),
             "fp32 channels_last": _gnime_rate(dev, 128, 1.0, 10, choose(dev, "channels_last"))}
    ok = line("ok" if rates["fp32 channels_last"] >= 0.95 * rates["fp32 contiguous"] else "check",
              "channels_last on CUDA", f"{rates['fp32 channels_last']:.0f} images/s, contiguous "
              f"{rates['fp32 contiguous']:.0f} (expected channels_last at least as fast)")
    if not torch.cuda.is_bf16_supported():
        return line("skip", "bf16 autocast", "this GPU has no native bf16") and ok
    bf16 = _gnime_rate(dev, 128, 1.0, 10, choose(dev, "channels_last", True))
    ratio = bf16 / rates["fp32 channels_last"]
    return line("ok" if ratio >= 1.5 else "check", "bf16 autocast, channels_last",
                f"{bf16:.0f} images/s, {ratio:.2f}x fp32 (expected >= 1.5x; findings not yet re-checked in bf16)") and ok


def check_compiled() -> bool:
    import torch

    from gnime_ray.defenses.gnime import GnimeConfig, GnimeModel, build_networks, gnime_step, make_optimisers

    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(0)
    e = torch.rand(128, 1, 32, 32, generator=gen).to(dev).contiguous(memory_format=torch.channels_last)
    x = torch.rand(128, 1, 32, 32, generator=gen).to(dev).contiguous(memory_format=torch.channels_last)
    y = torch.randn(128, 10, generator=gen).to(dev)
    losses, rates, first = {}, {}, 0.0
    for compiled in (False, True):
        cfg = GnimeConfig(batch_size=128)
        ng, inv = (n.to(dev, memory_format=torch.channels_last) for n in build_networks((1, 32, 32), (1, 32, 32), 10, cfg))
        model = GnimeModel(ng, inv, 0.3, 0.2, cfg)
        opt_ng, opt_inv = make_optimisers(model)
        stepper = GnimeModel(torch.compile(ng), torch.compile(inv), 0.3, 0.2, cfg) if compiled else model
        t0 = time.perf_counter()
        losses[compiled] = [gnime_step(stepper, opt_ng, opt_inv, e, y, x)["l_adv"] for _ in range(3)]
        if compiled:
            first = time.perf_counter() - t0
        rates[compiled] = 128 / _seconds(lambda: gnime_step(stepper, opt_ng, opt_inv, e, y, x), 10)
    same = all(abs(a - b) <= 1e-3 * abs(a) for a, b in zip(losses[False], losses[True]))
    ok = same and first < 120
    return line("ok" if ok else "check", "compiled GNIME step",
                f"losses {'equal eager' if same else 'differ: ' + str(losses)} over 3 steps; {rates[True]:.0f} images/s "
                f"compiled, {rates[False]:.0f} eager ({rates[True] / rates[False]:.2f}x); first three steps with the "
                f"compile {first:.0f}s (expected < 120 s)")


def check_decision() -> bool:
    from gnime_ray.config import get_preset
    from gnime_ray.study.opening import decide_speed, describe_speed

    speed = decide_speed("cuda", get_preset("paper", "celeba"), shape=(3, 128, 128))
    ok = speed["memory_format"] == "channels_last" and speed["precision"] == "fp32" and speed["compile"] == "never"
    return line("ok" if ok else "check", "a study's speed decision on CUDA", describe_speed(speed))


def run_checklist() -> bool:
    """Every item (module docstring); False when one is outside what is expected."""
    import torch

    if not torch.cuda.is_available():
        line("skip", "every item", "no CUDA device here")
        return True
    p = torch.cuda.get_device_properties(0)
    line("ok", "device", f"{p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 "
                         f"{'native' if torch.cuda.is_bf16_supported() else 'not native'}, torch {torch.__version__}")
    results = []
    for check in (check_pinned, check_streams, check_memory_cap, check_formats_and_bf16, check_compiled, check_decision):
        try:
            results.append(check())
        except Exception as exc:  # one failed item must not hide the others
            results.append(line("check", check.__name__, f"raised {type(exc).__name__}: {exc}"))
    print(f"checklist: {sum(results)} of {len(results)} items as expected", flush=True)
    return all(results)


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    run_checklist()
