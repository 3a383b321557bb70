"""What a search reads of a trial: its objective values on the SELECTION images (``objective``;
the test images are only read by reports: data/splits.py), and the worst values, which stand in for
them before a trial's end and for a diverged trial (``worst_result``), and which of a search's
feasible trials are on its front (``pareto_flags``). Why two objectives, and the
utility floor as a constraint: study/spec.py's module docstring."""

from __future__ import annotations

import math
from typing import Any

from .spec import StudySpec


def worst_result(study: StudySpec) -> dict[str, float]:
    """The searched metrics at their worst: the placeholders of non-final reports and the result
    of a diverged trial (infeasible: its constraint is positive)."""
    if study.objective == "single":
        return {"objective": 1.0 + study.utility_floor}
    return {"select_attack_ssim": 1.0, "select_utility": 0.0, "constraint": 1.0}


def objective(rows: list[dict], floor: float, kind: str = "multi") -> dict[str, float]:
    """What a search reads of a trial: its attackers on the SELECTION images (the rows'
    ``select_*`` columns; never the test images, which only reports read: data/splits.py). ``rows``:
    the trial's ExpMI-against-GNIME rows at every gamma it was attacked at (one, or every budget);
    each metric is the mean over its attack seeds per gamma, then over the gammas;
    ``select_utility_min`` is the lowest gamma's utility and ``constraint`` = floor - that (<= 0:
    feasible). ``objective``: for ``kind`` 'single', the attack SSIM if the utility reaches the
    floor, else 1 + floor - utility (any passing trial beats a failing one); for 'multi', the
    attack SSIM (the search's first value; its second is the utility). The utility is Table 3's
    DeePSiM at the paper's N where the dataset has one (``*_paper_n``: the release's formula depends
    on N, and on a few hundred selection images it sits far below the paper's values whatever the
    defence; metrics.py ``deepsim_at``), else as measured."""
    at_paper_n = all(isinstance(r.get("select_utility_deepsim_paper_n"), float)
                     and math.isfinite(r["select_utility_deepsim_paper_n"]) for r in rows)
    utility = "utility_deepsim_paper_n" if at_paper_n else "utility_deepsim"
    by_gamma: dict[Any, list[dict]] = {}
    for r in rows:
        g = r["gamma"]
        by_gamma.setdefault(None if g is None or (isinstance(g, float) and math.isnan(g)) else g, []).append(r)

    def per_gamma(column: str) -> list[float]:
        return [sum(r[f"select_{column}"] for r in group) / len(group) for group in by_gamma.values()]

    def mean(column: str) -> float:
        values = per_gamma(column)
        return sum(values) / len(values)

    ssim, util, util_min = mean("ssim"), mean(utility), min(per_gamma(utility))
    score = ssim if kind == "multi" or util_min >= floor else 1.0 + floor - util_min
    return {"select_attack_ssim": ssim, "select_attack_tca": mean("tca"), "select_utility": util,
            "select_utility_min": util_min, "select_perturbation_mse": mean("perturbation_mse"),
            "constraint": floor - util_min, "objective": score}


def pareto_flags(points: list[tuple[float, float]]) -> list[bool]:
    """Pareto optimality for (ssim to minimise, utility to maximise) pairs."""
    flags = []
    for i, (s, u) in enumerate(points):
        dominated = any((s2 <= s and u2 >= u) and (s2 < s or u2 > u) for j, (s2, u2) in enumerate(points) if j != i)
        flags.append(not dominated and not (math.isnan(s) or math.isnan(u)))
    return flags
