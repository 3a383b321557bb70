"""The paper's own numbers and protocol constants, in one place every layer may import: which paper
dataset a dataset is compared with, the N of its DeePSiM numbers (the release's evaluation sets),
Table 2's defences, and its Tables 1-3 as numbers (gnime_ray/reference/paper_tables.csv, shipped
with the package; the paper's operating point of GNIME per dataset and explainer)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional

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
