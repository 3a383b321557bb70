"""The command-line flags shared by the named studies (tune/named_studies.py: `gnime-ray study NAME`
and the scripts in studies/), their start-up (validate the
study, join or start Ray: tune/cluster.py; the one GPU decision: tune/resources.py), how they
print a search and its held-out report (study/heldout.py), and how they end: bad input in one line
with status 2, an interruption in one line with status 130 (the same command resumes)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Callable

from .. import GnimeRayError, Interrupted, echo
from ..cachedir import add_cache_dir_option
from ..cellspec import MATCHES
from ..config import get_preset, parse_overrides
from ..flags import (
    add_attack_seeds,
    add_data_root,
    add_gnime_seeds,
    add_matches,
    add_out,
    add_preset,
    add_study,
    add_study_seed,
    numbers,
    positive,
    seed,
)
from ..store.root import probe_out
from ..study.spec import DEFAULT_SAMPLER, OBJECTIVES, SAMPLERS, StudySpec
from .cluster import connect
from .console import quiet_ray_logging
from .placement import ALLOCATORS, Placement
from .resources import concurrent_trials, decide_gpu


def add_study_flags(p: argparse.ArgumentParser, *, study: str, num_samples: int, attack_seeds: int, gnime_seeds: int,
                    front_points: int = 0, search: bool = True, preset: str = "quick") -> argparse.ArgumentParser:
    """The flags every study takes (gnime_ray/flags.py: the same spellings as gnime-ray's other
    commands), added to ``p`` (a script's parser, or `gnime-ray study NAME`'s); ``search``: a
    search's flags too."""
    add_study(p, study, help="the study's name (the same name with the same settings resumes it)")
    add_preset(p, preset)
    add_data_root(p)
    add_out(p, help="results root: a path (one machine, or a path every node mounts) or s3://bucket/prefix, "
                    "gs://bucket/prefix (a cluster)")
    add_cache_dir_option(p)
    p.add_argument("--address", default=None,
                   help="Ray to use: HOST:PORT or ray://... joins that cluster, 'auto' the cluster this machine is a "
                        "node of (ray start / ray up), 'local' a private Ray (default: $RAY_ADDRESS, else this "
                        "machine's ray start cluster, else a private local Ray)")
    p.add_argument("--num-cpus", type=positive, default=None, help="CPUs of a private local Ray started by this script")
    p.add_argument("--cpu-only", action="store_true",
                   help="bundles ask for CPUs only (default: GPU fractions on a cluster, which make an autoscaler add "
                        "GPU nodes; on a private local Ray, GPUs when this machine has them)")
    p.add_argument("--verbose", action="store_true",
                   help="also show Ray's and Tune's own log lines and the workers' output")
    p.add_argument("--num-samples", type=positive, default=num_samples, help="trials of the search")
    p.add_argument("--max-concurrent", type=positive, default=None,
                   help="trials running at once (default: as many as the cluster's GPUs hold, counting those its "
                        "autoscaler can add; 2 without GPUs)")
    add_attack_seeds(p, attack_seeds)
    p.add_argument("--trial-gpu", type=float, default=0.25, help="GPU fraction of a trial")
    p.add_argument("--attacker-gpu", type=float, default=0.25,
                   help="GPU fraction of an attacker (a trial's attack pool asks for k of them)")
    p.add_argument("--attackers-per-trial", type=positive, default=2,
                   help="attackers at once in a trial's attack pool (one process), beside the one in the trial itself")
    p.add_argument("--pool-allocator", choices=ALLOCATORS, default="jemalloc",
                   help="malloc of the attack pools' processes: jemalloc (Ray's copy; less memory per attacker "
                        "thread) or the C library's")
    add_study_seed(p)
    add_gnime_seeds(p, gnime_seeds, "independently trained GNIMEs at each reported configuration (after a search: "
                                    "trained afresh, the searched network left out); the tables show the "
                                    "attack-seed and the GNIME-seed spreads and the intervals are over them")
    if search:
        p.add_argument("--objective", choices=OBJECTIVES, default="multi",
                       help="multi: attack SSIM down and utility up, the utility floor a constraint (a front); "
                            "single: attack SSIM, penalised below the floor")
        p.add_argument("--utility-floor", type=float, default=0.8,
                       help="the lowest utility (DeePSiM at the paper's N, on the selection images) a trial may keep")
        p.add_argument("--sampler", choices=SAMPLERS, default=DEFAULT_SAMPLER,
                       help="the search's Optuna sampler (chosen by python -m gnime_ray.tune.samplers)")
        p.add_argument("--budgets", type=numbers, default=None, metavar="B1,B2,...",
                       help="fixed perturbation budgets as multiples of the paper's Table 3 perturbation (e.g. "
                            "0.5,1,2): each trial is attacked at every budget and lambda and the NG width are "
                            "searched (default: gamma searched)")
        p.add_argument("--front-points", type=seed, default=front_points,
                       help="at most this many of the search's Pareto-optimal trials re-measured held out, spread "
                            "along the front (0: all)")
        add_matches(p, MATCHES)
    return p


def common_spec_kwargs(args: argparse.Namespace, dataset: str) -> dict:
    """The StudySpec fields every script takes from its flags (bad values: one line, before Ray)."""
    search = {}
    if hasattr(args, "objective"):
        search = dict(objective=args.objective, utility_floor=args.utility_floor, sampler=args.sampler,
                      budgets=tuple(args.budgets or ()))
    return dict(out=args.out, preset=get_preset(args.preset, dataset, **parse_overrides(args.overrides)), **search,
                attack_seeds=args.attack_seeds, study_seed=args.study_seed, num_samples=args.num_samples,
                cache_dir=args.cache_dir, data_root=args.data_root)


def placement_of(args: argparse.Namespace) -> Placement:
    """The placement the flags ask for (bad values: one line, before Ray); ``max_concurrent_trials``
    is the flag's, or 2 until ``start_ray`` sizes it from the cluster."""
    return Placement(max_concurrent_trials=args.max_concurrent or 2, trial_gpu=args.trial_gpu,
                     attacker_gpu=args.attacker_gpu, attackers_per_trial=args.attackers_per_trial,
                     pool_allocator=args.pool_allocator)


def start_ray(args: argparse.Namespace, spec: StudySpec, placement: Placement) -> Placement:
    """Check the results root answers, join or start Ray as the flags say, and return ``placement``
    with the study's GPU decision (and, without --max-concurrent, the trials the cluster holds)."""
    probe_out(spec.out)  # an unreachable bucket fails here, before Ray starts
    quiet_ray_logging(args.verbose)
    started_here = connect(args.address, num_cpus=args.num_cpus, verbose=args.verbose)
    placement = dataclasses.replace(placement, use_gpu=decide_gpu(args.cpu_only, started_here, echo))
    if args.max_concurrent is None:
        placement = dataclasses.replace(placement, max_concurrent_trials=concurrent_trials(placement, echo))
    return placement


def print_trials(result: dict) -> None:
    """A search's trials as the search saw them (its attackers on the selection images), best first."""
    spec = result["spec"]
    trials = sorted(result["trials"], key=lambda t: (t["explainer"], t["select_attack_ssim"]))
    what = (f"two objectives, attack SSIM down and utility up, utility >= {spec.utility_floor} a constraint"
            if spec.objective == "multi" else f"objective = attack SSIM, penalised below utility {spec.utility_floor}")
    budgets = f"; each trial at the budgets {', '.join(f'{b:g}' for b in spec.budgets)} x the paper's " \
              f"perturbation (means over them)" if spec.budgets else ""
    print(f"\n{spec.name}: {len(trials)} trials, as the search saw them (ExpMI against GNIME on the selection images; "
          f"{what}{budgets}):")
    print("| explainer | trial | lambda | NG width | gamma | attack SSIM | utility | perturbation MSE | feasible | "
          "Pareto | chosen |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for t in trials:
        print(f"| {t['explainer']} | {t['trial']} | {t['lambda']!r} | {t['ng_width']:g} | {t['gammas']} | "
              f"{t['select_attack_ssim']:.4f} | {t['select_utility']:.4f} | {t['select_perturbation_mse']:.4f} | "
              f"{t['feasible']} | {t['pareto']} | {t.get('chosen', False)} |")


def print_reports(outcome: dict, dataset: str) -> None:
    """Each explainer's held-out frontier: per chosen point Table 1 (the paper's protocol: RND and
    OND at GNIME's perturbation) beside the paper's row, GNIME's operating point beside Table 3,
    then every defence line with its interval (report/frontier.py), the hypervolumes and the
    optimism of the search."""
    import pyarrow as pa

    from ..provenance import command_line
    from ..report.frontier import frontier_markdown
    from ..report.tables import operating_points, paper_table, provenance, table1
    from ..study.heldout import describe_optimism

    for explainer, report in outcome["reports"].items():
        spec = report["spec"]
        n = len(spec.gnime_seeds)
        baselines = [r for r in report["rows"] if r["defense"] == "none" or r["attack"] == "predmi"]
        print(f"\nThe held-out frontier of {dataset}, {explainer} (study {spec.name}): {len(spec.points)} point(s) "
              f"of the search's front, {n} GNIME(s) trained afresh at each (the searched one left out), fresh attack "
              f"seeds, test images")
        for point in outcome["chosen"][explainer]:
            at = [r for r in report["rows"] if r["defense"] != "none" and r["attack"] == "expmi"
                  and r["lambda"] == point["lambda"] and r["ng_width"] == point["ng_width"]]
            for gamma in sorted({r["gamma"] for r in at}, key=str):
                same = [r for r in at if r["gamma"] == gamma or (gamma != gamma and r["gamma"] != r["gamma"])]  # NaN
                rows = pa.Table.from_pylist(same + baselines)
                print(f"\nTable 1 at trial {point['trial']}'s configuration (lambda {point['lambda']!r}, width "
                      f"{point['ng_width']!r}, gamma {gamma!r}); RND and OND at GNIME's perturbation:\n")
                print(table1(rows, dataset, [explainer]))
                print()
                print(operating_points(rows, dataset, [explainer], chosen_by={
                    explainer: f"search {outcome['search']['spec'].name}, trial {point['trial']}, selection images"}))
        print()
        try:
            print(paper_table(dataset, [explainer]))
        except GnimeRayError as exc:
            print(f"({exc})")
        print("\n" + frontier_markdown(*outcome["frontier"][explainer]))
        if n == 1:
            print("\n(one GNIME per point, --gnime-seeds 1: the intervals cover the test images and attack seeds "
                  "only, not GNIME's training luck)")
        for point, o in zip(outcome["chosen"][explainer], outcome["optimism"][explainer]):
            print("\n" + describe_optimism(explainer, point["trial"], o))
        print(f"\n{provenance(pa.Table.from_pylist(report['rows']))}; printed by: {command_line()}")


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
