"""Which explainers leak, and whether GNIME's protection carries over: the leakage table, one line
per explainer, ranked by leakage (docs/explainers.md).

From a matrix's held-out rows (test images; rows matched to GNIME's perturbation, as Table 1), per
explainer, in attack SSIM (lower = less is reconstructed):
- leakage: ExpMI (the attacker given the undefended map and the prediction) minus PredMI (given the
  prediction alone); above zero, the explanation leaks more than the prediction does;
- GNIME's reduction: ExpMI minus ExpMI against GNIME's released maps; above zero, GNIME protects;
- GNIME against RND and OND at GNIME's perturbation: GNIME minus each; below zero, GNIME protects
  better than the noise of the same size.
Each difference is the mean over test images and attack seeds (and GNIMEs) with its 95% interval
from statistics.py ``paired_bootstrap`` (the same test images under both, resampled together;
attack seeds and GNIME seeds resampled too; ExpMI and PredMI have no GNIME, so they enter every
GNIME's pair as the same arrays). The verdict words say whether the interval excludes zero.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa

from .. import GnimeRayError
from ..statistics import Interval, paired_bootstrap
from .tables import _gnime_seed, _markdown, table_columns


def _seeds(rows: list[dict]) -> np.ndarray:
    """(attack seeds, test images) per-image SSIM of one configuration's rows."""
    return np.array([r["ssim_per_image"] for r in sorted(rows, key=lambda r: r["attack_seed"])], dtype=np.float64)


def _by_gnime(rows: list[dict]) -> list[np.ndarray]:
    groups: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        groups[_gnime_seed(r)].append(r)
    return [_seeds(groups[g]) for g in sorted(groups)]


def _interval_text(i: Optional[Interval]) -> str:
    return "–" if i is None else f"{i.estimate:+.4f} [{i.low:+.4f}, {i.high:+.4f}]"


def _verdict(i: Optional[Interval], above: str, below: str) -> str:
    if i is None:
        return "–"
    return above if i.low > 0 else below if i.high < 0 else "not resolved"


def leakage_table(table: pa.Table, dataset: str, explainers: Sequence[str], seed: int = 0) -> str:
    """Markdown: the explainers of ``dataset``'s rows ranked by leakage (module docstring);
    GnimeRayError when there is no PredMI or a column is not one configuration's (``table_columns``)."""
    rows, groups = table_columns(table, dataset)
    predmi = groups.get(("predmi", "none", "none"))
    if not predmi:
        raise GnimeRayError(f"no PredMI rows for {dataset}: the leakage table compares every explainer with it")
    base = _seeds(predmi)
    lines = []
    for e in explainers:
        expmi = groups.get(("expmi", e, "none"))
        if not expmi:
            continue
        ex = _seeds(expmi)
        leak = paired_bootstrap([ex], [base], seed=seed)
        gnime = _by_gnime(groups.get(("expmi", e, "gnime"), []))
        reduction = paired_bootstrap([ex] * len(gnime), gnime, seed=seed) if gnime else None
        against = {}
        for d in ("rnd", "ond"):
            other = _by_gnime(groups.get(("expmi", e, d), []))
            against[d] = paired_bootstrap(gnime, other, seed=seed) if gnime and len(other) == len(gnime) else None
        lines.append((leak.estimate, [
            e, f"{ex.mean():.4f}", _interval_text(leak), _verdict(leak, "yes", "no: less than the prediction"),
            f"{np.mean([g.mean() for g in gnime]):.4f}" if gnime else "–", _interval_text(reduction),
            _verdict(reduction, "yes", "no: GNIME leaks more"), _interval_text(against["rnd"]),
            _interval_text(against["ond"])]))
    if not lines:
        raise GnimeRayError(f"no ExpMI rows for the explainers {', '.join(explainers)} of {dataset}")
    lines.sort(key=lambda item: -item[0])
    header = ["rank", "explainer", "ExpMI SSIM", "ExpMI - PredMI [95%]", "leaks more than the prediction",
              "GNIME SSIM", "ExpMI - GNIME [95%]", "GNIME protects", "GNIME - RND [95%]", "GNIME - OND [95%]"]
    gnimes = sorted({_gnime_seed(r) for r in rows if r["defense"] == "gnime"})
    seeds = sorted({r["attack_seed"] for r in rows})
    return (f"Leakage by explainer, {dataset}: attack SSIM on {base.shape[1]} test images, PredMI "
            f"{base.mean():.4f}; {len(seeds)} attack seeds x {len(gnimes)} GNIMEs; ranked by ExpMI - PredMI\n\n"
            + _markdown(header, [[str(k + 1)] + cells for k, (_, cells) in enumerate(lines)]))
