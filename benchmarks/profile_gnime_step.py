#!/usr/bin/env python
"""Where the GNIME step's time goes, and each convolution against TensorFlow's kernel on this machine
(numbers, no pass/fail; docs/performance.md keeps its output per CPU kind).

1. torch's profiler over a few GNIME steps at the study's default speed settings (width 1, batch 128,
   32x32x1, as ``python -m gnime_ray.bench``): the top ops by self time, each with its share of the
   step, its calls per step and, for convolutions, the layer's shapes.
2. The work the step does, counted by torch's FLOP counter per part (NG forward, INV forward on the
   noisy and on the clean map, the backward pass, the two Adam steps), against the release's step
   (the same forward passes; its backward runs from two gradient tapes).
3. The U-Net's last conv as two convs over [decoder, skip] (the default, models/unet.py) against the conv
   over their concatenation, GNIME steps interleaved in one process, in both memory formats.
4. Every convolution of the step, timed alone per pass (forward, gradient of the input, gradient of
   the weights) in torch (channels_last or contiguous, as the step runs) and, with ``--release-python``
   (a Python with TensorFlow, or ``$GNIME_RAY_TF_PYTHON``), in TensorFlow (NHWC, ``tf.function``,
   the ``Conv2D``/``Conv2DBackpropInput``/``Conv2DBackpropFilter`` ops its Keras layers run), with the
   ratio, so the ops where one framework's kernel loses are named with their shapes and times.

    python benchmarks/profile_gnime_step.py [--release-python /tmp/tf/bin/python] [--batch 128]

The TensorFlow half runs this same file as ``PY benchmarks/profile_gnime_step.py --tf-convs JSON``
(it imports neither torch nor gnime_ray).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (kernel selection, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def tf_convs(layers: list[dict], repeats: int) -> list[dict]:
    """Seconds per pass of each convolution in TensorFlow (NHWC float32, tf.function)."""
    import tensorflow as tf

    out = []
    for layer in layers:
        n, c, h, w = layer["input"]
        o = layer["out_channels"]
        x = tf.random.uniform((n, h, w, c))
        k = tf.random.uniform((3, 3, c, o))
        dy = tf.random.uniform((n, h, w, o))
        fwd = tf.function(lambda: tf.nn.conv2d(x, k, 1, "SAME"))
        bwd_in = tf.function(lambda: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=[n, h, w, c], filter=k, out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME"))
        bwd_w = tf.function(lambda: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=[3, 3, c, o], out_backprop=dy, strides=[1, 1, 1, 1], padding="SAME"))
        out.append({name: _median_seconds(lambda f=f: f().numpy(), repeats)
                    for name, f in (("forward", fwd), ("grad input", bwd_in), ("grad weight", bwd_w))})
    return out


def torch_convs(layers: list[dict], channels_last: bool, repeats: int) -> list[dict]:
    """Seconds per pass of each convolution in torch, in the step's memory format."""
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = []
    for layer in layers:
        n, c, h, w = layer["input"]
        o = layer["out_channels"]
        x = torch.rand(n, c, h, w).contiguous(memory_format=fmt)
        k = torch.rand(o, c, 3, 3).contiguous(memory_format=fmt)
        bias = torch.rand(o)
        dy = torch.rand(n, o, h, w).contiguous(memory_format=fmt)
        back = torch.ops.aten.convolution_backward

        def grad(mask):
            return lambda: back(dy, x, k, [o], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)
        with torch.no_grad():
            out.append({"forward": _median_seconds(lambda: torch.nn.functional.conv2d(x, k, bias, padding=1), repeats),
                        "grad input": _median_seconds(grad([True, False, False]), repeats),
                        "grad weight": _median_seconds(grad([False, True, True]), repeats)})
    return out


def step_convs(batch: int) -> list[dict]:
    """The distinct convolutions one GNIME step runs (input shape, output channels, calls per step)."""
    import torch

    from gnime_ray.defenses.gnime import GnimeConfig, build_networks

    seen: dict[tuple, dict] = {}
    ng, inv = build_networks((1, 32, 32), (1, 32, 32), 10, GnimeConfig(batch_size=batch))

    def hook(module, args, _out):
        key = (tuple(args[0].shape), module.out_channels)
        seen.setdefault(key, {"input": list(args[0].shape), "out_channels": module.out_channels, "calls": 0})
        seen[key]["calls"] += 1
    for net, calls in ((ng, 1), (inv, 2)):  # NG once, INV on the noisy and the clean map
        handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
        e, y = torch.rand(batch, 1, 32, 32), torch.rand(batch, 10)
        with torch.no_grad():
            for _ in range(calls):
                net(e, y)
        for handle in handles:
            handle.remove()
    # convs the hook does not see (functional calls, models/unet.py): the first decoder conv's skip half
    # (its bottleneck half is a matmul) and the last conv's two halves over [decoder, skip]; at width 1
    # for 32x32 maps: (512 -> 256) at 4x4, and (64 -> 1) twice at 32x32, per U-Net pass
    for shape, out_channels, per_pass in (((batch, 512, 4, 4), 256, 1), ((batch, 64, 32, 32), 1, 2)):
        key = (shape, out_channels)
        seen.setdefault(key, {"input": list(shape), "out_channels": out_channels, "calls": 0})
        seen[key]["calls"] += 3 * per_pass  # NG once, INV twice
    return list(seen.values())


def ab_last_conv(batch: int, steps: int) -> None:
    """The U-Net's last conv as two convs over [decoder, skip] (models/unet.py, the default) against the
    conv over the concatenation, GNIME steps interleaved in one process (a load that comes and goes
    slows both alike; separate runs on a shared host differ by more than the effect)."""
    import torch

    from gnime_ray.defenses.gnime import GnimeConfig, GnimeModel, build_networks, gnime_step, make_optimisers
    from gnime_ray.models import unet
    from gnime_ray.models.training_format import choose

    for fmt in ("channels_last", "contiguous"):
        speed = choose("cpu", fmt)
        gen = torch.Generator().manual_seed(0)
        e = speed.batch(torch.rand(batch, 1, 32, 32, generator=gen))
        x = speed.batch(torch.rand(batch, 1, 32, 32, generator=gen))
        y = torch.randn(batch, 10, generator=gen)
        runs = {}
        for few in (unet.FEW_CHANNELS, 0):  # 0: no conv has so few output channels, the concatenation is built
            cfg = GnimeConfig(batch_size=batch)
            model = GnimeModel(*(speed.model(n) for n in build_networks((1, 32, 32), (1, 32, 32), 10, cfg)), 0.3, 0.2, cfg)
            runs[few] = (model, *make_optimisers(model), [])
        default = unet.FEW_CHANNELS
        try:
            for i in range(steps + 1):
                for few, (model, opt_ng, opt_inv, times) in runs.items():
                    unet.FEW_CHANNELS = few
                    t0 = time.perf_counter()
                    gnime_step(model, opt_ng, opt_inv, e, y, x)
                    if i:  # the first step of each warms up
                        times.append(time.perf_counter() - t0)
        finally:
            unet.FEW_CHANNELS = default
        med = {few: sorted(r[3])[len(r[3]) // 2] for few, r in runs.items()}
        print(f"last conv, {fmt}: as two convs {batch / med[default]:.1f} images/s, over the concatenation "
              f"{batch / med[0]:.1f} ({med[0] / med[default]:.2f}x; interleaved, median of {steps})")


def profile_step(batch: int, steps: int, top: int) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from gnime_ray.defenses.gnime import GnimeConfig, GnimeModel, build_networks, gnime_step, make_optimisers
    from gnime_ray.models.training_format import choose, cpu_info

    speed = choose("cpu")
    cpu, flags = cpu_info()
    print(f"cpu: {cpu}; avx512f {'avx512f' in flags}, avx512_bf16 {'avx512_bf16' in flags}, "
          f"amx_bf16 {'amx_bf16' in flags}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"settings {speed.describe()}; batch {batch}")
    gen = torch.Generator().manual_seed(0)
    cfg = GnimeConfig(batch_size=batch)
    ng, inv = (speed.model(n) for n in build_networks((1, 32, 32), (1, 32, 32), 10, cfg))
    model = GnimeModel(ng, inv, 0.3, 0.2, cfg)
    opt_ng, opt_inv = make_optimisers(model)
    e = speed.batch(model.standardise(torch.rand(batch, 1, 32, 32, generator=gen)))
    x = speed.batch(torch.rand(batch, 1, 32, 32, generator=gen))
    y = torch.randn(batch, 10, generator=gen)
    step = lambda: gnime_step(model, opt_ng, opt_inv, e, y, x)
    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sec = (time.perf_counter() - t0) / steps
    print(f"GNIME step: {sec * 1000:.0f} ms ({batch / sec:.1f} images/s), unprofiled, median of {steps}")

    # the work per part, by torch's FLOP counter (GFLOP per image)
    with FlopCounterMode(display=False) as fc:
        n = model.ng(e, y)
    ng_f = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        model.inv(e, y)
    inv_f = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        step()
    total = fc.get_total_flops()
    del n
    print(f"work per image (GFLOP): NG forward {ng_f / batch / 1e9:.3f}, INV forward {inv_f / batch / 1e9:.3f} "
          f"(x2: noisy and clean map), backward {(total - ng_f - 2 * inv_f) / batch / 1e9:.3f} "
          f"(2x the forwards is {2 * (ng_f + 2 * inv_f) / batch / 1e9:.3f}: NG's first conv needs no input "
          f"gradient, nor does INV's on the clean map), step {total / batch / 1e9:.3f}")

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    events = [ev for ev in prof.key_averages() if not ev.key.startswith(("autograd::", "Optimizer."))]
    whole = sum(ev.self_cpu_time_total for ev in events)
    print(f"\ntop ops by self time ({steps} profiled steps, {whole / steps / 1e3:.0f} ms per step under the profiler)")
    print(f"{'op':42s} {'ms/step':>8s} {'share':>6s} {'calls/step':>10s}")
    for ev in sorted(events, key=lambda ev: -ev.self_cpu_time_total)[:top]:
        print(f"{ev.key[:42]:42s} {ev.self_cpu_time_total / steps / 1e3:8.1f} "
              f"{100 * ev.self_cpu_time_total / whole:5.1f}% {ev.count / steps:10.1f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="GNIME steps timed and profiled")
    p.add_argument("--repeats", type=int, default=5, help="timings per convolution pass (median)")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--ab-steps", type=int, default=9, help="interleaved steps of the last-conv comparison")
    p.add_argument("--release-python", default=os.environ.get("GNIME_RAY_TF_PYTHON"),
                   help="a Python with TensorFlow: time every convolution there too")
    p.add_argument("--tf-convs", help=argparse.SUPPRESS)  # JSON layers: the TensorFlow half (stdout: JSON)
    args = p.parse_args()
    if args.tf_convs:
        print(json.dumps(tf_convs(json.loads(args.tf_convs), args.repeats)))
        return 0

    import torch

    from gnime_ray.models.training_format import choose

    profile_step(args.batch, args.steps, args.top)
    print()
    ab_last_conv(args.batch, args.ab_steps)
    layers = step_convs(args.batch)
    channels_last = choose("cpu").channels_last
    ours = torch_convs(layers, channels_last, args.repeats)
    theirs = None
    if args.release_python:
        done = subprocess.run([args.release_python, __file__, "--tf-convs", json.dumps(layers),
                               "--repeats", str(args.repeats)], capture_output=True, text=True)
        if done.returncode == 0:
            theirs = json.loads(done.stdout.strip().splitlines()[-1])
        else:
            print(f"TensorFlow: {args.release_python} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    else:
        print("\nTensorFlow: not timed (pass --release-python, a Python with TensorFlow)")
    fmt = "channels_last" if channels_last else "contiguous"
    print(f"\nconvolutions of one step, ms per call (torch {fmt}{', TensorFlow NHWC' if theirs else ''}); "
          f"'step' = calls per step x (forward + both gradients; the step skips the input's gradient at NG's first conv and INV's on the clean map)")
    head = f"{'input (N, C, H, W) -> out ch':32s} {'calls':>5s}"
    for name in ("forward", "grad input", "grad weight"):
        head += f" {name + ' torch':>18s}" + (f" {'TF':>7s} {'ratio':>6s}" if theirs else "")
    print(head + f" {'step torch':>11s}" + (f" {'step TF':>8s}" if theirs else ""))
    sums = [0.0, 0.0]
    for i, layer in enumerate(layers):
        line = f"{str(tuple(layer['input'])) + ' -> ' + str(layer['out_channels']):32s} {layer['calls']:5d}"
        for name in ("forward", "grad input", "grad weight"):
            line += f" {1000 * ours[i][name]:18.1f}"
            if theirs:
                line += f" {1000 * theirs[i][name]:7.1f} {theirs[i][name] / ours[i][name]:6.2f}"
        per_step = [layer["calls"] * sum(d[i].values()) for d in ((ours, theirs) if theirs else (ours,))]
        sums = [s + t for s, t in zip(sums, per_step + [0.0])]
        print(line + " " + " ".join(f"{1000 * t:{11 if j == 0 else 8}.0f}" for j, t in enumerate(per_step)))
    print(f"all convolutions, ms per step: torch {1000 * sums[0]:.0f}" + (f", TensorFlow {1000 * sums[1]:.0f}" if theirs else "")
          + " (ratio = TF time / torch time: above 1, torch's kernel is faster)")
    del torch
    return 0


if __name__ == "__main__":
    sys.exit(main())
