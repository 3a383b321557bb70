"""The Table 1 matrix for one dataset without Ray: PredMI, and ExpMI x {none, rnd, ond, gnime}
x explainers, each at several attack seeds; with an auxiliary attacker dataset (Table 2), PredMI
and ExpMI x {none, gnime} x explainers, every attacker trained on the auxiliary data. One GNIME training per explainer is shared by its
gnime, rnd and ond cells (cached). With ``gnime_seeds`` > 1, each explainer's gnime, rnd and ond
cells are repeated on that many independently trained GNIMEs (CellSpec.gnime_seed), so that the
table can report GNIME's own training variance beside the attack seeds'. With ``calibrate``
(``paper`` or a perturbation MSE), each explainer's lambda is first searched so that GNIME's
perturbation matches the target (pipeline/calibrate.py; on GNIME seed 0), and the rows of the
cells built on GNIME record that search in their ``calibration`` column. ``gammas`` attacks every
GNIME at several perturbation budgets (Eq. 3; no retraining), and ``matches`` adds RND and OND
matched to GNIME's utility beside the paper's perturbation-matched ones (pipeline/match.py): the
rows of a held-out frontier (report/frontier.py), with the GNIME seeds as its repetitions. Each
row is written to Parquet as soon as its cell finishes (a line per cell with the time left at the
rate so far, and a tqdm bar in cells on a terminal: gnime_ray/progress.py); cells whose (study, cell, attack seed) row already exists under ``out`` are skipped, so an
interrupted matrix resumes where it stopped; the study's record (study/opening.py) refuses to
resume it with another preset or calibration target, and keeps its one memory-format decision.
Nothing here chooses on evaluation numbers (the calibration reads the target half), so every row's
test numbers are what the table reports. The trained networks land in ``out``'s artifact
store beside the rows (store/artifacts.py).
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Optional, Sequence

from .. import echo, time_left
from ..cellspec import DEFENSES, CellSpec
from ..config import Preset
from ..paper import TABLE2_DEFENSES
from ..progress import around_bars, progress_bar
from ..store import read_rows, write_rows
from .calibrate import Calibration, calibrate_lambda, parse_target
from .cell import run_cell
from ..study.cells import baseline_cells, defence_cells
from .device import pick_device
from ..study.opening import begin_study
from .prepare import prepare

Log = Callable[[str], None]


def matrix_specs(dataset: str, explainers: Sequence[str], seeds: int, study_seed: int = 0,
                 variant: str = "paper", lam: Optional[float] = None, width: float = 1.0,
                 gammas: Mapping[str, Sequence[Optional[float]]] | Sequence[Optional[float]] = (None,),
                 aux: str = "same", gnime_seeds: int = 1, lam_by_explainer: Optional[Mapping[str, float]] = None,
                 matches: Sequence[str] = ("perturbation",)) -> list[CellSpec]:
    """The matrix's cells; ``lam_by_explainer`` (calibrated lambdas) overrides ``lam`` per explainer;
    ``gammas``: the gammas of every explainer, or per explainer (budgets)."""
    specs = baseline_cells(dataset, explainers, range(seeds), study_seed=study_seed, variant=variant, aux=aux)
    for e in explainers:
        base = CellSpec(dataset, explainer=e, lam=(lam_by_explainer or {}).get(e, lam), width=width, variant=variant,
                        study_seed=study_seed, aux_dataset=aux)
        specs += defence_cells(base, gammas[e] if isinstance(gammas, Mapping) else gammas,
                               DEFENSES if aux == "same" else TABLE2_DEFENSES, matches, range(seeds), range(gnime_seeds))
    return specs


def run_matrix(dataset: str, preset: Preset, *, seeds: int, out: str, study: str,
               explainers: Sequence[str] = ("grad", "gradcam", "lrp"), study_seed: int = 0, variant: str = "paper",
               lam: Optional[float] = None, width: float = 1.0,
               gammas: Mapping[str, Sequence[Optional[float]]] | Sequence[Optional[float]] = (None,),
               cache_dir: Optional[str] = None, data_root: Optional[str] = None, device: Optional[str] = None,
               aux: str = "same", gnime_seeds: int = 1, calibrate: Optional[str] = None,
               matches: Sequence[str] = ("perturbation",), log: Log = echo) -> list[dict]:
    """Run (or resume) the matrix; returns the rows of this study for ``dataset``. ``calibrate``:
    None (lambda as given), ``paper`` or a perturbation MSE as text (module docstring)."""
    prep = None
    calibrations: dict[str, Calibration] = {}
    targets = {e: parse_target(calibrate, dataset, e) for e in explainers} if calibrate is not None else {}
    preset = begin_study(out, study, "matrix", dataset, preset, pick_device(device), cache_dir, log,
                         calibrate=calibrate)  # a changed preset under an old name fails here, before any work
    if calibrate is not None:
        prep = prepare(dataset, preset, study_seed, explainers=explainers, variant=variant, cache_dir=cache_dir,
                       data_root=data_root, device=device, log=log, out=out)
        for e in explainers:
            first = (gammas[e] if isinstance(gammas, Mapping) else gammas)[0]
            start = CellSpec(dataset, explainer=e, lam=lam, width=width, gamma=first, variant=variant,
                             study_seed=study_seed)
            calibrations[e] = calibrate_lambda(prep, start, preset, targets[e][0], source=targets[e][1],
                                               device=pick_device(device), log=log)
    specs = matrix_specs(dataset, explainers, seeds, study_seed, variant, lam, width, gammas, aux, gnime_seeds,
                         {e: c.lam for e, c in calibrations.items()}, matches)
    done = {(r["cell"], r["attack_seed"]) for r in read_rows(out).to_pylist() if r["study"] == study}
    todo = [s for s in specs if (s.key(), s.seed) not in done]
    log(f"matrix {study}: {len(specs)} cells, {len(specs) - len(todo)} already done")
    if todo:
        if prep is None:
            prep = prepare(dataset, preset, study_seed, explainers=explainers, variant=variant, cache_dir=cache_dir,
                           data_root=data_root, device=device, log=log, out=out)
        bar, log = progress_bar(len(todo), f"matrix {study}", "cell"), around_bars(log)
        t0 = time.perf_counter()
        for i, spec in enumerate(todo, 1):
            row = run_cell(spec, preset, device=device, study=study, log=log, prep=prep, cache_dir=cache_dir,
                           data_root=data_root)
            if spec.explainer in calibrations and spec.uses_gnime:
                row["calibration"] = calibrations[spec.explainer].to_json()
            write_rows([row], out)
            log(f"[{i}/{len(todo)}] {spec.attack} {spec.explainer} {spec.defense}"
                f"{'' if spec.match == 'perturbation' else ' at ' + spec.match}"
                f"{'' if spec.gamma is None else f' gamma {spec.gamma:g}'}"
                f"{f' GNIME {spec.gnime_seed}' if gnime_seeds > 1 and spec.uses_gnime else ''} seed {spec.seed}: "
                f"SSIM {row['ssim']:.4f} TCA {row['tca']:.4f} MSE {row['mse']:.4f} "
                f"({row['wall_seconds']:.0f}s{time_left(time.perf_counter() - t0, i, len(todo))})")
            bar.update(1)
        bar.close()
    return [r for r in read_rows(out).to_pylist() if r["study"] == study and r["dataset"] == dataset]
