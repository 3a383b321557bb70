"""The command-line flags shared by the study scripts in studies/, their start-up (validate the
study, join or start Ray: tune/cluster.py; the one GPU decision: tune/resources.py), how they
print a search and its held-out report (tune/heldout.py), and how they end: bad input in one line
with status 2, an interruption in one line with status 130 (the same command resumes)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Callable

from .. import GnimeRayError, Interrupted, echo
from ..cachedir import add_cache_dir_option
from ..config import PRESETS, get_preset, parse_overrides
from ..store.root import probe_out
from .cluster import connect
from .console import quiet_ray_logging
from .resources import decide_gpu
from .spec import ALLOCATORS, StudySpec


def study_parser(description: str, *, name: str, num_samples: int, seeds: int,
                 final_gnime_seeds: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--name", default=name, help="study name (re-running a name with the same settings resumes it)")
    p.add_argument("--preset", default="quick", choices=list(PRESETS), help="training budgets")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a preset field (repeatable)")
    p.add_argument("--data-root", default=None, help="dataset root on every node (not needed for digits)")
    p.add_argument("--out", default="results",
                   help="results root: a path (one machine, or a path every node mounts) or s3://bucket/prefix, "
                        "gs://bucket/prefix (a cluster)")
    add_cache_dir_option(p)
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
    p.add_argument("--final-gnime-seeds", type=int, default=final_gnime_seeds,
                   help="independently trained GNIMEs at each reported configuration (after a search: the chosen "
                        "trial's and N - 1 more); the tables show the attack-seed and the GNIME-seed spreads")
    return p


def common_spec_kwargs(args: argparse.Namespace, dataset: str) -> dict:
    """The StudySpec fields every script takes from its flags (bad values: one line, before Ray)."""
    if args.final_gnime_seeds < 1:
        raise GnimeRayError(f"--final-gnime-seeds must be an integer >= 1, got {args.final_gnime_seeds}")
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


def print_trials(result: dict) -> None:
    """A search's trials as the search saw them (its attackers on the selection images), best first."""
    spec = result["spec"]
    trials = sorted(result["trials"], key=lambda t: (t["explainer"], t["objective"]))
    print(f"\n{spec.name}: {len(trials)} trials, as the search saw them (its attackers on the selection images; "
          f"objective = ExpMI's SSIM against GNIME, penalised below utility {spec.utility_floor}):")
    print("| explainer | trial | lambda | NG width | gamma | attack SSIM | attack TCA | utility | perturbation MSE | "
          "objective | Pareto | chosen |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for t in trials:
        print(f"| {t['explainer']} | {t['trial']} | {t['lambda']!r} | {t['ng_width']:g} | {t['gamma']!r} | "
              f"{t['select_attack_ssim']:.4f} | {t['select_attack_tca']:.4f} | {t['select_utility']:.4f} | "
              f"{t['select_perturbation_mse']:.4f} | {t['objective']:.4f} | {t['pareto']} | {t.get('chosen', False)} |")


def print_reports(outcome: dict, dataset: str) -> None:
    """Each explainer's held-out table (test images, fresh attackers) beside the paper's numbers,
    GNIME's operating point beside Table 3, and the optimism of the search."""
    import pyarrow as pa

    from ..store import paper_table, table1
    from ..provenance import command_line
    from ..store.report import operating_points, provenance
    from .heldout import describe_optimism

    for explainer, report in outcome["reports"].items():
        c = outcome["chosen"][explainer]
        rows = pa.Table.from_pylist(report["rows"])
        n = len(report["spec"].gnime_seeds)
        print(f"\nTable 1, {dataset}, {explainer}: the held-out report of trial {c['trial']} (lambda {c['lambda']!r}, "
              f"width {c['ng_width']!r}, gamma {c['gamma']!r}), study {report['spec'].name}: test images, fresh "
              f"attack seeds, {n} GNIME{'s' if n > 1 else ''} at that configuration\n")
        print(table1(rows, dataset, [explainer]))
        if n == 1:
            print("\n(one GNIME at the chosen configuration, --final-gnime-seeds 1: the spreads are over attack seeds "
                  "only; another GNIME of the same configuration can move its column by more)")
        print()
        search = outcome["search"]["spec"].name
        print(operating_points(rows, dataset, [explainer],
                               chosen_by={explainer: f"search {search}, trial {c['trial']}, on the selection images"}))
        print()
        try:
            print(paper_table(dataset, [explainer]))
        except GnimeRayError as exc:
            print(f"({exc})")
        print("\n" + describe_optimism(explainer, c["trial"], outcome["optimism"][explainer]))
        print(f"\n{provenance(rows)}; printed by: {command_line()}")


def run_script(main: Callable[[], int]) -> None:
    """Run a study script's main: input errors print one line and exit 2; an interruption (Ctrl-C)
    prints one line and exits 130, and the same command resumes the study."""
    try:
        sys.exit(main())
    except (GnimeRayError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume the study", file=sys.stderr)
        sys.exit(130)
