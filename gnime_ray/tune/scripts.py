"""The command-line flags shared by the study scripts in studies/, and their start-up: validate
the study, join or start Ray (tune/cluster.py), make the one GPU decision (tune/resources.py)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Callable

from .. import GnimeRayError, echo
from ..config import PRESETS, get_preset, parse_overrides
from ..store.parquet import probe_out
from .cluster import connect
from .console import quiet_ray_logging
from .resources import decide_gpu
from .spec import ALLOCATORS, StudySpec


def study_parser(description: str, *, name: str, num_samples: int, seeds: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--name", default=name, help="study name (re-running a name with the same settings resumes it)")
    p.add_argument("--preset", default="quick", choices=list(PRESETS), help="training budgets")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a preset field (repeatable)")
    p.add_argument("--data-root", default=None, help="dataset root on every node (not needed for digits)")
    p.add_argument("--out", default="results",
                   help="results root: a path (one machine, or a path every node mounts) or s3://bucket/prefix, "
                        "gs://bucket/prefix (a cluster)")
    p.add_argument("--cache-dir", default=None, help="node-local cache (default: $GNIME_RAY_CACHE or ~/.cache/gnime_ray)")
    p.add_argument("--address", default=None,
                   help="Ray to use: HOST:PORT or ray://... joins that cluster, 'auto' the cluster this machine is a "
                        "node of (ray start / ray up), 'local' a private Ray (default: $RAY_ADDRESS, else this "
                        "machine's ray start cluster, else a private local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a private local Ray started by this script")
    p.add_argument("--cpu-only", action="store_true",
                   help="bundles ask for CPUs only (default: GPU fractions on a cluster, which make an autoscaler add "
                        "GPU nodes; on a private local Ray, GPUs when this machine has them)")
    p.add_argument("--verbose", action="store_true",
                   help="also show Ray's and Tune's own log lines and the workers' output")
    p.add_argument("--num-samples", type=int, default=num_samples, help="trials of the search")
    p.add_argument("--max-concurrent", type=int, default=2, help="trials running at once")
    p.add_argument("--seeds", type=int, default=seeds, help="attack seeds per cell")
    p.add_argument("--trial-gpu", type=float, default=0.25, help="GPU fraction of a trial")
    p.add_argument("--attacker-gpu", type=float, default=0.25, help="GPU fraction of an attacker (a trial's attack pool asks for k of them)")
    p.add_argument("--attackers-per-trial", type=int, default=2, help="attackers at once in a trial's attack pool (one process), beside the one in the trial itself")
    p.add_argument("--pool-allocator", choices=ALLOCATORS, default="jemalloc",
                   help="malloc of the attack pools' processes: jemalloc (Ray's copy; less memory per attacker "
                        "thread) or the C library's")
    p.add_argument("--study-seed", type=int, default=0, help="seed of prepare, GNIME and the search")
    return p


def common_spec_kwargs(args: argparse.Namespace, dataset: str) -> dict:
    return dict(out=args.out, preset=get_preset(args.preset, dataset, **parse_overrides(args.overrides)),
                attack_seeds=args.seeds, study_seed=args.study_seed, num_samples=args.num_samples,
                max_concurrent_trials=args.max_concurrent, trial_gpu=args.trial_gpu, attacker_gpu=args.attacker_gpu,
                attackers_per_trial=args.attackers_per_trial, pool_allocator=args.pool_allocator,
                cache_dir=args.cache_dir, data_root=args.data_root)


def start_ray(args: argparse.Namespace, spec: StudySpec) -> StudySpec:
    """Check the results root answers, join or start Ray as the flags say, and return ``spec``
    with the study's GPU decision."""
    probe_out(spec.out)  # an unreachable bucket fails here, before Ray starts
    quiet_ray_logging(args.verbose)
    started_here = connect(args.address, num_cpus=args.num_cpus, verbose=args.verbose)
    return dataclasses.replace(spec, use_gpu=decide_gpu(args.cpu_only, started_here, echo))


def run_script(main: Callable[[], int]) -> None:
    """Run a study script's main: input errors print one line and exit 2."""
    try:
        sys.exit(main())
    except (GnimeRayError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
