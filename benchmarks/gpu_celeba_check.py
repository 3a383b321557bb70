#!/usr/bin/env python
"""The CelebA study on one GPU, measured (numbers, no pass/fail; for a machine with a GPU, never CI).

First the CUDA checklist (benchmarks/cuda_checklist.py: pinned copies, a stream per attack-pool
thread, the memory cap of a GPU fraction, channels_last and bf16, the compiled step, the study's
speed decision, each against the figure expected; ``--checklist-only`` stops after it). Then it
runs the synthetic full-size CelebA (30,000 aligned JPEGs, benchmarks/bench_scale.py's data) through
the real study engine on a private local Ray: prepare with the paper preset (its classifier
epochs bounded), then one trial (the paper's CelebA lambda 500, width 1) at the default GPU
fractions (0.25 per attacker: the trial's bundle plus an attack pool of one attacker, so two
attackers run at once, one of them in the trial's own process) for a bounded number of GNIME and attacker epochs. Meanwhile it
polls nvidia-smi every second. It prints: seconds per GNIME epoch (a batch of 128) and per attacker
epoch, each process's peak GPU memory against its fraction of the card, the GPU's utilisation over
the run, and the projected GPU-hours of the default `studies/celeba_lambda.py --preset paper` study
(24 trials of 500 GNIME epochs, 3 attackers each, 6 baseline attackers; prepare apart) for 50 and
for 300 attacker epochs (early stopping decides where in between), as a range: the measured
process-seconds divided by four (four 0.25 bundles overlapping perfectly) up to undivided. Its
last line is one JSON object.

    python benchmarks/gpu_celeba_check.py                         # on a GPU machine
    python benchmarks/gpu_celeba_check.py --identities 20 --gnime-epochs 3 --attack-epochs 1 --classifier-epochs 1
                                                               # a smoke run (on a CPU it fakes the GPU)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def poll_gpu(samples: list, stop: threading.Event) -> None:
    """Every second: (utilisation %, memory used MiB, {pid: MiB}) from nvidia-smi."""
    while not stop.is_set():
        try:
            util, used = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                         "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                        timeout=10).stdout.strip().splitlines()[0].split(",")
            apps = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
            procs = {int(a.split(",")[0]): float(a.split(",")[1]) for a in apps if a.strip()}
            samples.append((float(util), float(used), procs))
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            pass
        stop.wait(1.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--identities", type=int, default=1000)
    p.add_argument("--gnime-epochs", type=int, default=100, help="GNIME epochs of the trial (the study has 500)")
    p.add_argument("--attack-epochs", type=int, default=3, help="epochs of each attacker (early stopping: 50-300)")
    p.add_argument("--classifier-epochs", type=int, default=3, help="epochs of f and f_E (the paper: up to 100)")
    p.add_argument("--work", default=None, help="where the synthetic data is kept (default: a folder under the cache)")
    p.add_argument("--checklist-only", action="store_true",
                   help="print the CUDA checklist (benchmarks/cuda_checklist.py) and stop")
    args = p.parse_args()
    from cuda_checklist import run_checklist

    run_checklist()
    if args.checklist_only:
        return 0
    import ray
    import torch

    from bench_scale import synthetic_celeba
    from gnime_ray import echo
    from gnime_ray.cachedir import resolve_cache_dir
    from gnime_ray.config import get_preset
    from gnime_ray.tune import StudySpec, run_study
    from gnime_ray.tune.placement import Placement

    gpu = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if gpu else "no GPU (faked for scheduling)"
    total_mib = torch.cuda.get_device_properties(0).total_memory / 2**20 if gpu else float("nan")
    work = Path(args.work) if args.work else resolve_cache_dir() / "bench-scale"
    data = synthetic_celeba(work, args.identities, echo)
    preset = get_preset("paper", "celeba", celeba_identities=args.identities, celeba_images_per_identity=30,
                        classifier_epochs=args.classifier_epochs, gnime_epochs=args.gnime_epochs,
                        attack_epochs=args.attack_epochs)
    out = tempfile.mkdtemp(prefix="gpu-check-")
    spec = StudySpec(name="gpu-check", dataset="celeba", out=out, explainers=("lrp",), preset=preset, search="grid",
                     lam_range=(500.0, 500.0), widths=(1.0,), num_samples=1, attack_seeds=2,
                     baselines=False, data_root=str(data), cache_dir=str(work / "gpu-cache"))
    placement = Placement(attackers_per_trial=1, checkpoint_every=max(1, args.gnime_epochs), use_gpu=True)
    ray.init(address="local", num_gpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    samples: list = []
    stop = threading.Event()
    poller = threading.Thread(target=poll_gpu, args=(samples, stop), daemon=True)
    if gpu:
        poller.start()
    t0 = time.perf_counter()
    result = run_study(spec, placement)
    wall = time.perf_counter() - t0
    stop.set()
    ray.shutdown()
    (trial,) = result["trials"]
    rows = result["rows"]
    gnime_epoch_s = trial["gnime_seconds"] / args.gnime_epochs
    attack_epoch_s = sum(r["wall_seconds"] / max(1, r["attack_epochs_run"]) for r in rows) / len(rows)
    per_proc = {}
    for _, _, procs in samples:
        for pid, mib in procs.items():
            per_proc[pid] = max(per_proc.get(pid, 0.0), mib)
    util = [u for u, _, _ in samples]
    # the default study: 24 trials x (500 GNIME epochs + 3 attackers), 6 baseline attackers, in process-
    # seconds at the speeds measured here (two processes sharing the card). Card time lies between a quarter
    # of that (four 0.25 bundles overlapping perfectly at these speeds) and all of it (no overlap).
    processes_s = {e: 24 * (500 * gnime_epoch_s + 3 * e * attack_epoch_s) + 6 * e * attack_epoch_s for e in (50, 300)}
    gpu_hours = {e: (0.25 * s / 3600, s / 3600) for e, s in processes_s.items()}
    echo(f"\n{name}, {time.strftime('%Y-%m-%d')}: study wall {wall:.0f}s")
    echo(f"GNIME: {gnime_epoch_s:.3f} s per epoch (batch 128, 3x128x128) in a 0.25 bundle")
    echo(f"attackers: {attack_epoch_s:.1f} s per epoch ({len(rows)} attackers, 10,800 training maps each)")
    for pid, mib in sorted(per_proc.items()):
        echo(f"process {pid}: peak GPU memory {mib:.0f} MiB ({100 * mib / total_mib:.0f}% of the card; fraction 25%)")
    if util:
        echo(f"GPU utilisation over the run: mean {sum(util) / len(util):.0f}%, max {max(util):.0f}%")
    for e, (low, high) in gpu_hours.items():
        echo(f"projected default celeba_lambda study at {e} attacker epochs: {low:.1f} to {high:.1f} GPU-hours (24 "
             f"trials of 500 GNIME epochs and 3 attackers, 6 baseline attackers; four 0.25 bundles overlapping "
             f"perfectly, or not at all; prepare not included)")
    print(json.dumps({"gpu": name, "gnime_seconds_per_epoch": gnime_epoch_s, "attack_seconds_per_epoch": attack_epoch_s,
                      "peak_gpu_mib_per_process": per_proc, "gpu_util_mean": sum(util) / len(util) if util else None,
                      "projected_gpu_hours": gpu_hours, "prepare_seconds": wall - trial["gnime_seconds"]
                      - trial["attack_phase_seconds"]}))
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
