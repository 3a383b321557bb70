"""The command-line flags shared by the study scripts in studies/."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from .. import GnimeRayError
from ..config import PRESETS, get_preset, parse_overrides


def study_parser(description: str, *, name: str, num_samples: int, seeds: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--name", default=name, help="study name (re-running a name resumes it)")
    p.add_argument("--preset", default="quick", choices=list(PRESETS), help="training budgets")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a preset field (repeatable)")
    p.add_argument("--data-root", default=None, help="dataset root on disk (not needed for digits)")
    p.add_argument("--out", default="results", help="results root: a path or a pyarrow URI such as s3://bucket/prefix")
    p.add_argument("--cache-dir", default=None, help="prepare/GNIME cache (default: $GNIME_RAY_CACHE or ~/.cache/gnime_ray)")
    p.add_argument("--address", default=None,
                   help="Ray address (default: $RAY_ADDRESS, else a running cluster, else start local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray started by this script")
    p.add_argument("--num-samples", type=int, default=num_samples, help="trials of the search")
    p.add_argument("--max-concurrent", type=int, default=2, help="trials running at once")
    p.add_argument("--seeds", type=int, default=seeds, help="attack seeds per cell")
    p.add_argument("--trial-gpu", type=float, default=0.25, help="GPU fraction of a trial (where there are GPUs)")
    p.add_argument("--attacker-gpu", type=float, default=0.25, help="GPU fraction of an attacker task")
    p.add_argument("--attackers-per-trial", type=int, default=2, help="attacker bundles in a trial's placement group")
    p.add_argument("--study-seed", type=int, default=0, help="seed of prepare, GNIME and the search")
    return p


def common_spec_kwargs(args: argparse.Namespace, dataset: str) -> dict:
    return dict(out=args.out, preset=get_preset(args.preset, dataset, **parse_overrides(args.overrides)),
                attack_seeds=args.seeds, study_seed=args.study_seed, num_samples=args.num_samples,
                max_concurrent_trials=args.max_concurrent, trial_gpu=args.trial_gpu, attacker_gpu=args.attacker_gpu,
                attackers_per_trial=args.attackers_per_trial, cache_dir=args.cache_dir, data_root=args.data_root)


def run_script(main: Callable[[], int]) -> None:
    """Run a study script's main: input errors print one line and exit 2."""
    try:
        sys.exit(main())
    except (GnimeRayError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
