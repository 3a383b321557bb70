"""Tables 1 and 2 in the paper's layout, from result rows, beside the paper's own numbers.

Rows: MSE (higher = better defence), SSIM, TCA, DeePSiM (lower = better defence). Columns:
PredMI, then per explainer ExpMI (no defence), RND, OND, GNIME (Table 1), or ExpMI and GNIME with
the attacker trained on an auxiliary dataset (Table 2: ``aux='facescrub'``). A cell shows mean +- std over the
attack seeds (sample standard deviation, ddof=1; 0 for a single seed), as the paper reports over
its five attack runs. The paper's numbers come from gnime_ray/reference/paper_tables.csv (Tables 1-3
of the paper as numbers, shipped with the package); digits is compared with the paper's MNIST row.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

import pyarrow as pa

from .. import GnimeRayError

METRICS = (("mse", "MSE ↑"), ("ssim", "SSIM ↓"), ("tca", "TCA ↓"), ("deepsim", "DeePSiM ↓"))
DEFENSE_COLUMNS = (("none", "ExpMI"), ("rnd", "RND"), ("ond", "OND"), ("gnime", "GNIME"))
PAPER_DATASET = {"digits": "mnist"}
PAPER_TABLES_ENV = "GNIME_RAY_PAPER_TABLES"


def paper_tables_path() -> Path:
    """The paper's Tables 1-3 shipped with the package (or $GNIME_RAY_PAPER_TABLES)."""
    env = os.environ.get(PAPER_TABLES_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "reference" / "paper_tables.csv"


TABLE2_DEFENSES = ("none", "gnime")


def _columns(explainers: Sequence[str], aux: str = "same") -> list[tuple[str, str, str, str]]:
    cols = [("predmi", "none", "none", "PredMI")]
    for e in explainers:
        cols += [("expmi", e, d, f"{e} {label}") for d, label in DEFENSE_COLUMNS
                 if aux == "same" or d in TABLE2_DEFENSES]
    return cols


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def table1(table: pa.Table, dataset: str, explainers: Sequence[str] = ("grad", "gradcam", "lrp"),
           aux: str = "same") -> str:
    """Markdown Table 1 for ``dataset`` from result rows (one configuration per column); with an
    auxiliary attacker dataset ``aux``, Table 2's columns from the rows of that attacker."""
    rows = [r for r in table.to_pylist() if r["dataset"] == dataset and r.get("aux_dataset", "same") == aux]
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["attack"], r["explainer"], r["defense"])].append(r)
    for key, group in groups.items():
        cells = {r["cell"] for r in group}
        if len(cells) > 1:
            raise GnimeRayError(f"column {key} mixes configurations {sorted(cells)}; select one study or config first")
        seeds = [r["attack_seed"] for r in group]
        if len(seeds) != len(set(seeds)):
            studies = sorted({r["study"] for r in group})
            raise GnimeRayError(f"column {key} holds the same attack seed more than once (studies {', '.join(studies)}); "
                                f"select one study first")
    cols = _columns(explainers, aux)
    body = [[label] + [_fmt([g[m] for g in groups.get((a, e, d), [])]) for a, e, d, _ in cols] for m, label in METRICS]
    seeds = sorted({r["attack_seed"] for r in rows})
    where = "" if aux == "same" else f", attacker trained on {aux}"
    return _markdown([f"{dataset} (ours{where}, {len(seeds)} seeds)"] + [c[3] for c in cols], body)


def paper_table(dataset: str, explainers: Sequence[str] = ("grad", "gradcam", "lrp"),
                path: Optional[Path] = None, aux: str = "same") -> str:
    """The paper's Table 1 row block for ``dataset`` (digits -> MNIST), same layout as table1;
    with ``aux``, its Table 2 block (the paper has CelebA attacked with FaceScrub only)."""
    number = "1" if aux == "same" else "2"
    name = PAPER_DATASET.get(dataset, dataset)
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
