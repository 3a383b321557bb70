#!/usr/bin/env python
"""Scaling benchmark of the Ray engine (numbers, no pass/fail): the quickstart study (4 trials by
default) on local Ray with 1 CPU and with 2 CPUs. Prints each wall time, the speedup, and the
share of the study's CPU time (wall x CPUs) not spent in trial work (GNIME training and attacker
cells): the orchestration overhead (Ray and Tune start-up, scheduling, idle bundles).

The prepare step (f, f_E, maps) is run once before timing and copied into each run's own cache, so
both runs measure the search itself and neither reuses the other's trained GNIMEs.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = r"""
import json, sys, time, ray
from gnime_ray.config import get_preset
from gnime_ray.tune import StudySpec, run_study
from gnime_ray.tune.placement import Placement
ncpu, out, cache, preset, samples, seeds = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
t0 = time.perf_counter()
ray.init(address="local", num_cpus=ncpu, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
spec = StudySpec(name="scaling", dataset="digits", out=out, explainers=("lrp",), preset=get_preset(preset),
                 attack_seeds=seeds, num_samples=samples, lam_range=(5.0, 200.0), widths=(0.5, 1.0),
                 gamma_range=(5e-4, 5e-3), baselines=True, cache_dir=cache)
result = run_study(spec, Placement(max_concurrent_trials=ncpu, attackers_per_trial=1, checkpoint_every=50),
                   log=lambda _: None)
wall = time.perf_counter() - t0
work = sum(t["gnime_seconds"] + t["attack_seconds"] for t in result["trials"])
work += sum(r["wall_seconds"] for r in result["rows"] if r["trial"] == "baseline")
print(json.dumps({"wall": wall, "work": work, "trials": len(result["trials"])}))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick")
    p.add_argument("--num-samples", type=int, default=4)
    p.add_argument("--seeds", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = str(Path(tmp) / "cache")
        from gnime_ray.config import get_preset
        from gnime_ray.pipeline.prepare import prepare

        prepare("digits", get_preset(args.preset), 0, explainers=["lrp"], cache_dir=base, log=lambda _: None)
        results = {}
        for ncpu in (1, 2):
            out = str(Path(tmp) / f"out{ncpu}")
            cache = str(Path(tmp) / f"cache{ncpu}")
            shutil.copytree(base, cache)
            proc = subprocess.run([sys.executable, "-c", RUN, str(ncpu), out, cache, args.preset,
                                   str(args.num_samples), str(args.seeds)], capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            results[ncpu] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[ncpu]
            overhead = 1 - r["work"] / (r["wall"] * ncpu)
            print(f"{ncpu} CPU: wall {r['wall']:.1f}s, trial work {r['work']:.1f} CPU-s, "
                  f"{r['trials']} trials, orchestration overhead {100 * overhead:.0f}% of wall x CPUs", flush=True)
        print(f"speedup 1 -> 2 CPUs: {results[1]['wall'] / results[2]['wall']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
