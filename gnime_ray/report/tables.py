"""Tables 1 and 2 in the paper's layout, from result rows, beside the paper's own numbers.

Every number is a row's test-image metric (the plain metric columns; pipeline/cell.py): the
selection images' ``select_*`` columns are what a search chose on, and no table reads them. Rows
written before the evaluation split was divided (no ``split`` column) are refused in one line.

Rows: MSE (higher = better defence), SSIM, TCA, DeePSiM (lower = better defence). Columns:
PredMI, then per explainer ExpMI (no defence), RND, OND, GNIME (Table 1), or ExpMI and GNIME with
the attacker trained on an auxiliary dataset (Table 2: ``aux='facescrub'``). RND and OND are the
paper's, matched to GNIME's perturbation; rows of RND and OND matched to GNIME's utility
(pipeline/match.py) belong to the frontier (report/frontier.py) and are left out here. A cell shows mean +- std over the
attack seeds (sample standard deviation, ddof=1; 0 for a single seed), as the paper reports over
its five attack runs. When the rows come from several independently trained GNIMEs (the matrix's
``--gnime-seeds``), a cell shows the mean and two spreads: over the attack seeds (pooled within
each GNIME) and over the GNIMEs (the std of their means). The paper's numbers come from gnime_ray/reference/paper_tables.csv (Tables 1-3
of the paper as numbers, shipped with the package); digits is compared with the paper's MNIST row.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

import pyarrow as pa

from .. import GnimeRayError
from ..cellspec import PAPER_EXPLAINERS
from ..paper import PAPER_DATASET, PAPER_TABLES_ENV, TABLE2_DEFENSES, paper_tables_path

METRICS = (("mse", "MSE ↑"), ("ssim", "SSIM ↓"), ("tca", "TCA ↓"), ("deepsim", "DeePSiM ↓"))


def _finite(rows: list[dict], column: str) -> bool:
    return bool(rows) and all(isinstance(r.get(column), float) and math.isfinite(r[column]) for r in rows)


def _deepsim_columns(rows: list[dict]) -> tuple[str, str, str]:
    """(DeePSiM column, utility column, how N is chosen): the release's DeePSiM estimated at the paper's
    N (``*_paper_n``: metrics.py ``deepsim_at``) where every row has it, else as measured (N = the test
    images): the release's formula depends on N, and only at the paper's N do the two compare."""
    if _finite(rows, "deepsim_paper_n"):
        ns = sorted({r["paper_n"] for r in rows})
        return "deepsim_paper_n", "utility_deepsim_paper_n", f"N = {', '.join(map(str, ns))}, the paper's"
    return "deepsim", "utility_deepsim", "N = the test images"
DEFENSE_COLUMNS = (("none", "ExpMI"), ("rnd", "RND"), ("ond", "OND"), ("gnime", "GNIME"))
def _columns(explainers: Sequence[str], aux: str = "same") -> list[tuple[str, str, str, str]]:
    cols = [("predmi", "none", "none", "PredMI")]
    for e in explainers:
        cols += [("expmi", e, d, f"{e} {label}") for d, label in DEFENSE_COLUMNS
                 if aux == "same" or d in TABLE2_DEFENSES]
    return cols


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{sum(values) / len(values):.4f} ± {_std(values):.4f}"


def _fmt_two_spreads(by_gnime: dict[int, list[float]]) -> str:
    """mean ± attack-seed spread / GNIME-seed spread: the pooled sample std within each trained
    GNIME (over its attack seeds), and the sample std of the per-GNIME means ('–' for a column
    with one GNIME, such as PredMI and ExpMI without defence)."""
    groups = [v for v in by_gnime.values() if v]
    if not groups:
        return "–"
    values = [v for g in groups for v in g]
    within = math.sqrt(sum(_std(g) ** 2 for g in groups) / len(groups))
    between = _std([sum(g) / len(g) for g in groups]) if len(groups) > 1 else None
    return f"{sum(values) / len(values):.4f} ± {within:.4f} / " + ("–" if between is None else f"{between:.4f}")


GNIME_SEED_IN_CELL = re.compile(r"-n\d+(?=/s\d+$)")


def base_cell(cell: str) -> str:
    """A cell's key without its GNIME seed: the cells one table column aggregates."""
    return GNIME_SEED_IN_CELL.sub("", cell)


def _gnime_seed(row: dict) -> int:
    return row.get("gnime_seed") or 0  # rows of earlier versions: null


def require_held_out(rows: list[dict]) -> None:
    """GnimeRayError (one line) when a row was written before the evaluation split was divided into
    selection and test images: its metrics cover images a search may have chosen on."""
    old = sorted({r["study"] for r in rows if r.get("split") != "test"})
    if old:
        raise GnimeRayError(f"the rows of {', '.join(old)} were written by an earlier version of gnime_ray: their "
                            f"metrics cover the whole evaluation split, without the selection/test division (no "
                            f"'split' column), so no held-out table or figure can be made from them; run the study "
                            f"again with this version")


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def table_columns(table: pa.Table, dataset: str, aux: str = "same"
                  ) -> tuple[list[dict], dict[tuple[str, str, str], list[dict]]]:
    """(rows, rows by (attack, explainer, defence)): ``dataset``'s held-out rows of attackers trained on
    ``aux``, RND and OND matched to GNIME's perturbation, as a table's columns read them; GnimeRayError
    when a column mixes configurations or holds an attack seed twice (rows of several studies)."""
    rows = [r for r in table.to_pylist() if r["dataset"] == dataset and r.get("aux_dataset", "same") == aux
            and (r.get("matched_on") or "perturbation") == "perturbation"]
    require_held_out(rows)
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["attack"], r["explainer"], r["defense"])].append(r)
    for key, group in groups.items():
        cells = {base_cell(r["cell"]) for r in group}
        if len(cells) > 1:
            raise GnimeRayError(f"column {key} mixes configurations {sorted(cells)}; select one study or config first")
        seeds = [(_gnime_seed(r), r["attack_seed"]) for r in group]
        if len(seeds) != len(set(seeds)):
            studies = sorted({r["study"] for r in group})
            raise GnimeRayError(f"column {key} holds the same attack seed more than once (studies {', '.join(studies)}); "
                                f"select one study first")
    return rows, groups


def table1(table: pa.Table, dataset: str, explainers: Sequence[str] = ("grad", "gradcam", "lrp"),
           aux: str = "same") -> str:
    """Markdown Table 1 for ``dataset`` from result rows (one configuration per column); with an
    auxiliary attacker dataset ``aux``, Table 2's columns from the rows of that attacker. Rows of
    several trained GNIMEs of one configuration form one column with two spreads (module docstring)."""
    rows, groups = table_columns(table, dataset, aux)
    cols = _columns(explainers, aux)
    gnimes = sorted({_gnime_seed(r) for r in rows if r["defense"] in ("gnime", "rnd", "ond")})

    def cell_text(group: list[dict], m: str) -> str:
        if len(gnimes) < 2:
            return _fmt([g[m] for g in group])
        by_gnime: dict[int, list[float]] = defaultdict(list)
        for g in group:
            by_gnime[_gnime_seed(g)].append(g[m])
        return _fmt_two_spreads(by_gnime)

    deepsim_column, _, n_text = _deepsim_columns(rows)
    metrics = [(deepsim_column, f"{label} ({n_text})") if m == "deepsim" else (m, label) for m, label in METRICS]
    body = [[label] + [cell_text(groups.get((a, e, d), []), m) for a, e, d, _ in cols] for m, label in metrics]
    seeds = sorted({r["attack_seed"] for r in rows})
    where = "" if aux == "same" else f", attacker trained on {aux}"
    runs = f"{len(seeds)} seeds" if len(gnimes) < 2 else f"{len(seeds)} attack seeds x {len(gnimes)} GNIMEs"
    text = _markdown([f"{dataset} (ours{where}, {runs})"] + [c[3] for c in cols], body)
    if len(gnimes) > 1:
        text += ("\n\nmean ± attack-seed spread / GNIME-seed spread (pooled sample std over each trained GNIME's "
                 "attack seeds / sample std of the per-GNIME means)")
    return text


def paper_table(dataset: str, explainers: Sequence[str] = ("grad", "gradcam", "lrp"),
                path: Optional[Path] = None, aux: str = "same") -> str:
    """The paper's Table 1 row block for ``dataset`` (digits -> MNIST), same layout as table1,
    for those of ``explainers`` the paper studies (none of them: GnimeRayError); with ``aux``, its
    Table 2 block (the paper has CelebA attacked with FaceScrub only)."""
    number = "1" if aux == "same" else "2"
    name = PAPER_DATASET.get(dataset, dataset)
    studied = [e for e in explainers if e in PAPER_EXPLAINERS]
    if not studied:
        raise GnimeRayError(f"the paper reports no numbers for {', '.join(explainers)} (it studies "
                            f"{', '.join(PAPER_EXPLAINERS)})")
    explainers = studied
    path = path or paper_tables_path()
    if not path.exists():
        raise GnimeRayError(f"paper tables not found at {path} (set {PAPER_TABLES_ENV})")
    values: dict[tuple[str, str, str, str], tuple[float, float]] = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["table"] == number and r["dataset"] == name and r["aux"] == aux:
                values[(r["attack"], r["explainer"], r["defense"], r["metric"])] = (float(r["mean"]), float(r["std"]))
    if not values:
        raise GnimeRayError(f"the paper has no Table {number} numbers for {name!r}"
                            + ("" if aux == "same" else f" with auxiliary dataset {aux!r}"))
    cols = _columns(explainers, aux)
    body = []
    for m, label in METRICS:
        line = [label]
        for a, e, d, _ in cols:
            v = values.get((a, e, d, m))
            line.append("–" if v is None else f"{v[0]:.4f} ± {v[1]:.4f}")
        body.append(line)
    where = "" if aux == "same" else f", attacker trained on {aux}"
    return _markdown([f"{name} (paper{where}, 5 runs)"] + [c[3] for c in cols], body)


def operating_points(table: pa.Table, dataset: str, explainers: Sequence[str] = ("grad", "gradcam", "lrp"),
                     path: Optional[Path] = None, chosen_by: Optional[dict[str, str]] = None) -> str:
    """Markdown: per explainer, GNIME's operating point in the rows (lambda, how it was chosen:
    ``chosen_by[explainer]`` when given, else the rows' calibration or 'given'; the perturbation MSE
    and the utility DeePSiM of Table 3 on the test images, with the GNIME seeds' spread), beside the
    paper's Table 3 values for the matching dataset."""
    name = PAPER_DATASET.get(dataset, dataset)
    paper: dict[tuple[str, str], float] = {}
    path = path or paper_tables_path()
    if path.exists():
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                if r["table"] == "3" and r["dataset"] == name:
                    paper[(r["explainer"], r["metric"])] = float(r["mean"])
    rows = [r for r in table.to_pylist() if r["dataset"] == dataset and r["defense"] == "gnime"
            and r.get("aux_dataset", "same") == "same"]
    require_held_out(rows)
    _, utility_column, n_text = _deepsim_columns(rows)
    header = ["explainer", "lambda", "chosen by", "GNIMEs", "perturbation MSE (test)", f"paper ({name})",
              f"utility DeePSiM (test, {n_text})", f"paper ({name})"]
    body = []
    for e in explainers:
        group = [r for r in rows if r["explainer"] == e]
        if not group:
            continue
        per_gnime: dict[int, list[dict]] = defaultdict(list)
        for r in group:
            per_gnime[_gnime_seed(r)].append(r)
        cal = json.loads(group[0]["calibration"]) if group[0].get("calibration") else None
        chosen = (chosen_by or {}).get(e) or "given" if cal is None else (
            f"calibrated to {cal['target_mse']:g} ({cal['target_source']}): {cal['achieved_mse']:.4f} on the target "
            f"half after {len(cal['evaluations'])} trainings" + ("" if cal["converged"] else ", NOT converged"))

        def spread(metric: str) -> str:
            means = [sum(r[metric] for r in g) / len(g) for g in per_gnime.values()]
            return f"{sum(means) / len(means):.4f} ± {_std(means):.4f}"

        lams = sorted({r["lambda"] for r in group})
        paper_value = lambda m: f"{paper[(e, m)]:.4f}" if (e, m) in paper else "–"
        body.append([e, ", ".join(f"{v:g}" for v in lams), chosen, str(len(per_gnime)),
                     spread("perturbation_mse"), paper_value("perturbation_mse"),
                     spread(utility_column), paper_value("utility_deepsim")])
    return _markdown(header, body) + "\n\n(± : sample std over the trained GNIMEs; 0 for one)"


def provenance(table: pa.Table) -> str:
    """One line naming the gnime_ray versions and commits that made the rows (their ``code_version``
    and ``code_commit`` columns; rows of earlier versions have no commit)."""
    made: dict[str, int] = defaultdict(int)
    columns = set(table.column_names)
    versions = table.column("code_version").to_pylist() if "code_version" in columns else [None] * table.num_rows
    commits = table.column("code_commit").to_pylist() if "code_commit" in columns else [None] * table.num_rows
    for version, commit in zip(versions, commits):
        made[f"{'gnime_ray ' + version if version else 'a version not recorded'} (commit {commit or 'not recorded'})"] += 1
    if not made:
        return "rows made by: no rows"
    return "rows made by: " + ", ".join(f"{k}: {n} row{'s' if n != 1 else ''}" for k, n in sorted(made.items()))
