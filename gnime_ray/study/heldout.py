"""The held-out frontier after a search: choose on one set of images, report on another, with fresh
GNIMEs and fresh attackers (docs/studies.md, "The search's question and the held-out frontier").
This module decides what is reported (no Ray); tune/search_then_report.py runs it on Ray.

A search chooses on the SELECTION images of the evaluation split (study/objective.py ``objective``), so
its trials' own scores are optimistic twice over: each is the best of several noisy draws (GNIME's
training and the attackers' seeds), measured on the images it was chosen on. What a table reports
after a search is therefore a fresh experiment, per explainer (the search itself runs no baselines,
whatever its spec says: they answer nothing it asks, and the report runs them with its own seeds):

1. the chosen points: for a two-objective search, the feasible Pareto-optimal trials (Optuna's
   front: utility at or above the floor on the selection images), at most ``front_points`` of them
   spread along the front (0: all); for the single objective, the trial with the lowest objective.
   Written into the search's record (study/record.py) the first time the search has ended and read
   from there afterwards, so nothing that follows depends on an outcome that could change between
   runs; an interrupted search raises ``Interrupted`` before anything is chosen;
2. a grid study ``<search>-<explainer>-report`` over exactly those points (lambda, NG width, gamma,
   or every budget): at each, ``final_gnime_seeds`` GNIMEs trained afresh (GNIME seeds 1, 2, ...:
   the searched network, seed 0, is left out, so its selection luck never reaches a reported
   number), each attacked by ExpMI against GNIME, and against RND and OND matched to its
   perturbation and to its utility (DeePSiM and top-k: pipeline/match.py), plus ExpMI without
   defence and PredMI, with the attack seeds REPORT_FIRST_SEED, ... (disjoint from every search's,
   which start at 0); its numbers are the TEST images';
3. the frontier of that report (report/frontier.py): per point, every defence line with the paired
   95% interval of GNIME - defence and its verdict, and each defence's hypervolume; written beside
   the rows (``OUT/_frontier/``);
4. the optimism of the search: each chosen trial's selection score beside its fresh GNIMEs' mean
   score on the test images, printed and written into the search's ``_trials/<search>.csv``
   (columns ``chosen``, ``report_study``, ``test_attack_ssim_gnimes``).
"""

from __future__ import annotations

import dataclasses
import math

from ..cellspec import MATCHES
from .spec import StudySpec

# the first attack seed of every held-out report (a search's attack seeds start at 0)
REPORT_FIRST_SEED = 1000


def _point(t: dict) -> dict:
    return {"trial": t["trial"], "lambda": t["lambda"], "ng_width": t["ng_width"],
            "gamma": None if math.isnan(t["gamma"]) else t["gamma"], "objective": t["objective"],
            "select_attack_ssim": t["select_attack_ssim"], "select_utility": t["select_utility"]}


def choose_front_points(trials: list[dict], objective: str = "multi", front_points: int = 0) -> dict[str, list[dict]]:
    """Per explainer, the points to report (module docstring, 1), measured on the selection images:
    the feasible Pareto-optimal trials in order of attack SSIM (at most ``front_points`` of them, the
    ends and evenly between; 0: all), or the lowest objective for a single-objective search."""
    chosen: dict[str, list[dict]] = {}
    for explainer in sorted({t["explainer"] for t in trials}):
        done = [t for t in trials if t["explainer"] == explainer and t["status"] == "finished"]
        if objective == "single":
            picked = sorted(done, key=lambda t: t["objective"])[:1]
        else:
            front = sorted((t for t in done if t["pareto"]), key=lambda t: t["select_attack_ssim"])
            if 0 < front_points < len(front):
                step = (len(front) - 1) / max(1, front_points - 1)
                front = [front[round(i * step)] for i in range(front_points)] if front_points > 1 else front[:1]
            picked = front
        if picked:
            chosen[explainer] = [_point(t) for t in picked]
    return chosen


def report_name(search: str, explainer: str) -> str:
    return f"{search}-{explainer}-report"


def report_spec(search: StudySpec, explainer: str, points: list[dict], final_gnime_seeds: int,
                matches: tuple[str, ...] = MATCHES) -> StudySpec:
    """The held-out report of ``search``'s chosen ``points`` for ``explainer`` (module docstring, 2)."""
    return dataclasses.replace(
        search, name=report_name(search.name, explainer), explainers=(explainer,), search="grid", num_samples=1,
        points=tuple((p["lambda"], p["ng_width"], p["gamma"]) for p in points), gamma_range=None,
        defenses=("gnime", "rnd", "ond"), matches=tuple(matches), baselines=True,
        gnime_seeds=tuple(range(1, final_gnime_seeds + 1)), first_attack_seed=REPORT_FIRST_SEED,
        report_of=f"{search.name}/{','.join(p['trial'] for p in points)}")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def optimism(point: dict, report_rows: list[dict]) -> dict:
    """A chosen trial's select score and its fresh GNIMEs' scores on the test images: the mean over
    them (``test_attack_ssim_gnimes``) and the spread of the per-GNIME means."""
    same = lambda r: r["lambda"] == point["lambda"] and r["ng_width"] == point["ng_width"] and (  # noqa: E731
        point["gamma"] is None or r["gamma"] == point["gamma"])
    gnime = [r for r in report_rows if r["defense"] == "gnime" and r["attack"] == "expmi" and same(r)]
    per_gnime: dict[int, list[float]] = {}
    for r in gnime:
        per_gnime.setdefault(r["gnime_seed"], []).append(r["ssim"])
    means = [_mean(v) for _, v in sorted(per_gnime.items())]
    return {"select_attack_ssim": point["select_attack_ssim"], "test_attack_ssim_gnimes": _mean(means),
            "gnime_spread": _std(means), "gnimes": len(means),
            "attack_seeds": sorted({r["attack_seed"] for r in gnime})}


def describe_optimism(explainer: str, trial: str, o: dict) -> str:
    if not o["gnimes"]:
        return f"optimism of the search ({explainer}, trial {trial}): no report rows"
    return (f"optimism of the search ({explainer}): trial {trial} scored attack SSIM {o['select_attack_ssim']:.4f} on "
            f"the selection images with the search's GNIME and attackers; {o['gnimes']} GNIME(s) trained afresh at its "
            f"configuration score {o['test_attack_ssim_gnimes']:.4f} ± {o['gnime_spread']:.4f} (GNIME-seed spread) on "
            f"the test images with fresh attackers (seeds {o['attack_seeds'][0]}..{o['attack_seeds'][-1]}): "
            f"{o['test_attack_ssim_gnimes'] - o['select_attack_ssim']:+.4f}")
