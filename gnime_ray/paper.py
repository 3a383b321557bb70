"""The paper's own numbers and protocol constants, in one place every layer may import: which paper
dataset a dataset is compared with, the N of its DeePSiM numbers (the release's evaluation sets),
Table 2's defences, its Table 3 perturbations (the calibration's target, the budgets' unit), and its Tables 1-3 as numbers (gnime_ray/reference/paper_tables.csv, shipped
with the package; the paper's operating point of GNIME per dataset and explainer)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional

from . import GnimeRayError

PAPER_DATASET = {"digits": "mnist", "mnist5k": "mnist"}  # compared with the paper's MNIST numbers
# the release's evaluation sets (its eval scripts: the last 20% of the attack half), over which its DeePSiM's N runs
PAPER_EVAL_IMAGES = {"mnist": 7000, "cifar10": 6000, "celeba": 3000}


def paper_eval_images(dataset: str) -> Optional[int]:
    """The N of the paper's DeePSiM numbers for ``dataset`` (None where the release has none)."""
    return PAPER_EVAL_IMAGES.get(PAPER_DATASET.get(dataset, dataset))


PAPER_TABLES_ENV = "GNIME_RAY_PAPER_TABLES"


def paper_tables_path() -> Path:
    """The paper's Tables 1-3 shipped with the package (or $GNIME_RAY_PAPER_TABLES)."""
    env = os.environ.get(PAPER_TABLES_ENV)
    return Path(env) if env else Path(__file__).resolve().parent / "reference" / "paper_tables.csv"


def paper_target(dataset: str, explainer: str) -> tuple[float, str]:
    """The paper's Table 3 perturbation MSE for ``dataset`` (digits -> MNIST) and ``explainer``."""
    name = PAPER_DATASET.get(dataset, dataset)
    with open(paper_tables_path(), newline="") as fh:
        for r in csv.DictReader(fh):
            if (r["table"], r["dataset"], r["explainer"], r["metric"]) == ("3", name, explainer, "perturbation_mse"):
                return float(r["mean"]), f"paper Table 3, {name} {explainer}"
    raise GnimeRayError(f"the paper's Table 3 has no perturbation MSE for {name!r} {explainer!r}; "
                        f"give the target as a number (--calibrate 0.005)")


def budget_gammas(dataset: str, explainer: str, budgets: tuple[float, ...]) -> tuple[float, ...]:
    """Perturbation budgets given as multiples of the paper's Table 3 perturbation for ``dataset``
    and ``explainer``, as Eq. 3's gammas (3 significant digits, so a cell's key shows them exactly)."""
    paper = paper_target(dataset, explainer)[0]
    return tuple(float(f"{b * paper:.3g}") for b in budgets)


TABLE2_DEFENSES = ("none", "gnime")  # the defences of the paper's Table 2 (an auxiliary attacker dataset)


def paper_operating_point(dataset: str, explainer: str, path: Optional[Path] = None) -> Optional[dict[str, float]]:
    """The paper's GNIME for ``dataset`` (digits, mnist5k -> MNIST) and ``explainer``: its attack SSIM
    (Table 1) at its perturbation MSE and utility DeePSiM (Table 3); None where the paper has none."""
    name = PAPER_DATASET.get(dataset, dataset)
    path = path or paper_tables_path()
    if not path.exists():
        return None
    found: dict[str, float] = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["dataset"] != name or r["explainer"] != explainer or r["aux"] != "same" or r["defense"] != "gnime":
                continue
            if (r["table"], r["attack"], r["metric"]) == ("1", "expmi", "ssim"):
                found["ssim"] = float(r["mean"])
            elif r["table"] == "3" and r["metric"] in ("perturbation_mse", "utility_deepsim"):
                found[r["metric"]] = float(r["mean"])
    return found if len(found) == 3 else None


# the eight CelebA attributes of the attribute-leakage study (paper Fig. 6 does not name them in
# its text; Fig. 1 shows sunglasses, a cap and gender): our named choice
PAPER_ATTRIBUTES = ("Eyeglasses", "Wearing_Hat", "Male", "Smiling", "Young", "Bangs", "Mustache", "Blond_Hair")
