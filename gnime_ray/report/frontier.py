"""The held-out privacy-utility frontier: GNIME against RND and OND at matched perturbation AND at
matched utility, with paired intervals and hypervolumes, from a study's test-image rows.

A point is one GNIME configuration (explainer, lambda, NG width, gamma) of a study with several
independently trained GNIMEs (a held-out report: study/heldout.py; a matrix with budgets). At each
point, each defence variant is a line: GNIME; RND and OND matched to GNIME's perturbation (the
paper's protocol) and to its utility (DeePSiM at the paper's N, and the top-k agreement;
pipeline/match.py); ExpMI without defence and PredMI as reference lines. A line shows the mean
attack SSIM over GNIME seeds and attack seeds with the GNIME-seed spread (sample std of the
per-GNIME means), the perturbation and both utilities, and for RND and OND the difference
GNIME - defence in attack SSIM with its 95% interval (statistics.py ``paired_bootstrap``: the same
test images under both, crossed with the GNIME seeds, attack seeds resampled too) and a verdict:
``GNIME lower`` when the interval lies below 0, ``GNIME higher`` above, else ``no difference
shown``. The hypervolume of each defence's held-out points in (attack SSIM, utility) against the
fixed reference ``HV_REFERENCE`` (SSIM 1, DeePSiM utility 0.8, the default utility floor; for the
top-k utility, 0) says which defence's front is better overall.

Written beside the rows as ``OUT/_frontier/<study>-points.csv`` and ``<study>-hypervolume.csv``
(``write_frontier``) and printed as markdown (``frontier_markdown``). Test-image numbers only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .. import GnimeRayError
from ..cellspec import MATCHES, derive_seed
from ..statistics import Interval, hypervolume_2d, paired_bootstrap
from ..store.root import write_csv
from .tables import require_held_out

HV_REFERENCE = {"utility_deepsim_paper_n": (1.0, 0.8), "utility_topk": (1.0, 0.0)}
UTILITIES = ("utility_deepsim_paper_n", "utility_topk")
POINT_COLUMNS = ("study", "dataset", "explainer", "lambda", "ng_width", "gamma", "defense", "matched_on", "gnime_seeds",
                 "attack_seeds", "ssim", "ssim_gnime_spread", "ssim_attack_spread", "perturbation_mse",
                 "utility_deepsim_paper_n", "utility_topk", "noise_mse", "delta_ssim", "delta_low", "delta_high",
                 "verdict")
HV_COLUMNS = ("study", "dataset", "explainer", "defense", "utility", "reference_ssim", "reference_utility", "points",
              "hypervolume")


def _nan_to_none(v) -> Optional[float]:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _utility(row: dict, column: str) -> float:
    v = row.get(column)
    if column == "utility_deepsim_paper_n" and not (isinstance(v, float) and math.isfinite(v)):
        v = row.get("utility_deepsim")  # a dataset without a paper N: DeePSiM as measured
    return float("nan") if v is None else float(v)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


@dataclass
class Line:
    """One defence variant at one point (module docstring)."""

    defense: str
    matched_on: str
    rows: list[dict]

    def by_gnime(self) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = defaultdict(list)
        for r in self.rows:
            out[r.get("gnime_seed") or 0].append(r)
        return dict(sorted(out.items()))

    def summary(self) -> dict:
        groups = self.by_gnime()
        means = [_mean([r["ssim"] for r in g]) for g in groups.values()]
        within = math.sqrt(_mean([_std([r["ssim"] for r in g]) ** 2 for g in groups.values()]))
        mean = lambda column: _mean([_mean([_utility(r, column) if column in UTILITIES else r[column]  # noqa: E731
                                            for r in g]) for g in groups.values()])
        return {"defense": self.defense, "matched_on": self.matched_on, "gnime_seeds": len(groups),
                "attack_seeds": len({r["attack_seed"] for r in self.rows}), "ssim": _mean(means),
                "ssim_gnime_spread": _std(means), "ssim_attack_spread": within,
                "perturbation_mse": mean("perturbation_mse"),
                "utility_deepsim_paper_n": mean("utility_deepsim_paper_n"), "utility_topk": mean("utility_topk"),
                "noise_mse": mean("matched_mse") if self.defense in ("rnd", "ond") else float("nan")}

    def per_image(self, gnime_seeds: Sequence[int]) -> list[np.ndarray]:
        """Per GNIME seed, the (attack seeds, test images) array of per-image SSIM."""
        groups = self.by_gnime()
        return [np.array([r["ssim_per_image"] for r in sorted(groups[g], key=lambda r: r["attack_seed"])])
                for g in gnime_seeds]


def _points(rows: list[dict]) -> dict[tuple, dict[tuple[str, str], Line]]:
    """{(explainer, lambda, width, gamma): {(defence, matched_on): Line}} of the ExpMI rows built on GNIME."""
    points: dict[tuple, dict[tuple[str, str], Line]] = defaultdict(dict)
    for r in rows:
        if r["attack"] != "expmi" or r["defense"] not in ("gnime", "rnd", "ond"):
            continue
        key = (r["explainer"], r["lambda"], r["ng_width"], _nan_to_none(r["gamma"]))
        match = r.get("matched_on") or "perturbation" if r["defense"] != "gnime" else ""
        line = points[key].setdefault((r["defense"], match), Line(r["defense"], match, []))
        line.rows.append(r)
    return points


def compare_lines(gnime: Line, other: Line, seed: int = 0) -> Optional[Interval]:
    """GNIME - ``other`` in attack SSIM with its interval, over the GNIME seeds both have (None if none)."""
    seeds = sorted(set(gnime.by_gnime()) & set(other.by_gnime()))
    if not seeds:
        return None
    return paired_bootstrap(gnime.per_image(seeds), other.per_image(seeds), seed=seed)


def verdict(interval: Optional[Interval]) -> str:
    if interval is None:
        return "not measured"
    if interval.high < 0:
        return "GNIME lower"
    if interval.low > 0:
        return "GNIME higher"
    return "no difference shown"


def frontier(rows: list[dict], study: str = "", seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(points, hypervolumes): the lines of every point (POINT_COLUMNS) and each defence's
    hypervolume per explainer and utility (HV_COLUMNS), from test-image rows of one study."""
    require_held_out(rows)
    if not rows:
        raise GnimeRayError("no rows to draw a frontier from")
    dataset = rows[0]["dataset"]
    out: list[dict] = []
    by_defense: dict[tuple[str, str], list[dict]] = defaultdict(list)  # (explainer, defence) -> its lines
    for (explainer, lam, width, gamma), lines in sorted(_points(rows).items(), key=lambda kv: str(kv[0])):
        gnime = lines.get(("gnime", ""))
        order = [("gnime", "")] + [(d, m) for d in ("rnd", "ond") for m in MATCHES]
        for key in order:
            line = lines.get(key)
            if line is None:
                continue
            s = line.summary()
            interval = None
            if key[0] != "gnime" and gnime is not None:
                interval = compare_lines(gnime, line, seed=derive_seed(seed, "frontier", explainer, lam, width,
                                                                       str(gamma), *key))
            s.update(study=study, dataset=dataset, explainer=explainer, **{"lambda": lam}, ng_width=width,
                     gamma=float("nan") if gamma is None else gamma,
                     verdict="" if key[0] == "gnime" else verdict(interval),
                     delta_ssim=interval.estimate if interval else float("nan"),
                     delta_low=interval.low if interval else float("nan"),
                     delta_high=interval.high if interval else float("nan"))
            out.append(s)
            by_defense[(explainer, key[0])].append(s)
    for explainer in sorted({r["explainer"] for r in rows if r["attack"] == "expmi"}):
        unprotected = [r for r in rows if (r["attack"], r["explainer"], r["defense"]) == ("expmi", explainer, "none")]
        if unprotected:
            out.append(_reference(unprotected, study, dataset, explainer, "none"))
    predmi = [r for r in rows if r["attack"] == "predmi"]
    if predmi:
        out.append(_reference(predmi, study, dataset, "none", "predmi"))
    hv = []
    for (explainer, defense), lines in sorted(by_defense.items()):
        for utility in UTILITIES:
            ref = HV_REFERENCE[utility]
            pts = [(line["ssim"], line[utility]) for line in lines]
            hv.append({"study": study, "dataset": dataset, "explainer": explainer, "defense": defense,
                       "utility": utility, "reference_ssim": ref[0], "reference_utility": ref[1], "points": len(pts),
                       "hypervolume": hypervolume_2d(pts, ref)})
    return out, hv


def _reference(rows: list[dict], study: str, dataset: str, explainer: str, defense: str) -> dict:
    ssim = [r["ssim"] for r in rows]
    nan = float("nan")
    return {"study": study, "dataset": dataset, "explainer": explainer, "lambda": nan, "ng_width": nan, "gamma": nan,
            "defense": defense, "matched_on": "", "gnime_seeds": 0, "attack_seeds": len(ssim), "ssim": _mean(ssim),
            "ssim_gnime_spread": nan, "ssim_attack_spread": _std(ssim), "perturbation_mse": nan,
            "utility_deepsim_paper_n": nan, "utility_topk": nan, "noise_mse": nan, "delta_ssim": nan,
            "delta_low": nan, "delta_high": nan, "verdict": ""}


def write_frontier(out: str, study: str, points: list[dict], hv: list[dict]) -> tuple[str, str]:
    """``OUT/_frontier/<study>-points.csv`` and ``-hypervolume.csv``; returns their paths."""
    return (write_csv([{c: p.get(c, "") for c in POINT_COLUMNS} for p in points], out, f"_frontier/{study}-points.csv"),
            write_csv([{c: h.get(c, "") for c in HV_COLUMNS} for h in hv], out, f"_frontier/{study}-hypervolume.csv"))


MATCHED = {"perturbation": "at GNIME's perturbation", "utility": "at GNIME's utility (DeePSiM)",
           "utility-topk": "at GNIME's utility (top-k)"}
LABELS = {("gnime", ""): "GNIME", ("none", ""): "ExpMI, no defence", ("predmi", ""): "PredMI",
          **{(d, m): f"{d.upper()} {text}" for d in ("rnd", "ond") for m, text in MATCHED.items()}}
DEFENSE_NAMES = {"gnime": "GNIME", "rnd": "RND", "ond": "OND"}


def _f(v: float, digits: int = 4) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def frontier_markdown(points: list[dict], hv: list[dict]) -> str:
    """The frontier as markdown: per point a table of its lines, then the hypervolumes."""
    parts = []
    configs = []
    for p in points:
        key = (p["explainer"], p["lambda"], p["ng_width"], p["gamma"])
        if p["defense"] in ("gnime", "rnd", "ond") and key not in configs:
            configs.append(key)
    header = ["defence", "GNIMEs x attack seeds", "attack SSIM ↓ (± GNIME-seed spread)", "perturbation MSE",
              "utility DeePSiM (paper N) ↑", "utility top-k ↑", "GNIME - defence, SSIM [95% interval]", "verdict"]
    for explainer, lam, width, gamma in configs:
        lines = [p for p in points if p["defense"] in ("gnime", "rnd", "ond")
                 and (p["explainer"], p["lambda"], p["ng_width"], p["gamma"]) == (explainer, lam, width, gamma)]
        refs = [p for p in points if p["defense"] in ("none", "predmi") and p["explainer"] in (explainer, "none")]
        title = (f"{explainer}, lambda {lam:g}, NG width {width:g}, gamma "
                 f"{'none' if isinstance(gamma, float) and math.isnan(gamma) else f'{gamma:g}'} (test images)")
        body = []
        for p in lines + refs:
            delta = ("" if isinstance(p["delta_ssim"], float) and math.isnan(p["delta_ssim"])
                     else f"{p['delta_ssim']:+.4f} [{p['delta_low']:+.4f}, {p['delta_high']:+.4f}]")
            spread = "" if p["defense"] in ("none", "predmi") else f" ± {_f(p['ssim_gnime_spread'])}"
            runs = (f"{p['attack_seeds']} seeds" if p["defense"] in ("none", "predmi")
                    else f"{p['gnime_seeds']} x {p['attack_seeds']}")
            body.append([LABELS[(p["defense"], p["matched_on"])], runs, f"{_f(p['ssim'])}{spread}",
                         _f(p["perturbation_mse"], 5), _f(p["utility_deepsim_paper_n"]), _f(p["utility_topk"]), delta,
                         p["verdict"]])
        parts.append(f"**{title}**\n\n" + _table(header, body))
    if hv:
        body = [[h["explainer"], DEFENSE_NAMES[h["defense"]],
                 "DeePSiM (paper N)" if h["utility"] == "utility_deepsim_paper_n" else "top-k",
                 f"({h['reference_ssim']:g}, {h['reference_utility']:g})", str(h["points"]), f"{h['hypervolume']:.5f}"]
                for h in hv]
        parts.append("**Hypervolume of each defence's held-out points** (attack SSIM down, utility up; larger is "
                     "better)\n\n" + _table(["explainer", "defence", "utility", "reference (SSIM, utility)", "points",
                                             "hypervolume"], body))
    return "\n\n".join(parts)


def _table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
