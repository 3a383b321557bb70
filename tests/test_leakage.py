"""The leakage table (report/leakage.py): explainers ranked by ExpMI - PredMI in attack SSIM, GNIME's
reduction and GNIME against RND/OND, each a paired difference with its interval, from held-out rows."""

import numpy as np
import pyarrow as pa
import pytest

from gnime_ray import GnimeRayError
from gnime_ray.report.leakage import leakage_table


def _row(attack, explainer, defense, seed, values, gnime_seed=None):
    cell = f"digits/same/{explainer}-paper/{defense}/{attack}/lam100-w1-gnone{'' if gnime_seed is None else f'-n{gnime_seed}'}/s0"
    return {"study": "s", "dataset": "digits", "aux_dataset": "same", "matched_on": None if defense in ("none", "gnime")
            else "perturbation", "split": "test", "attack": attack, "explainer": explainer, "defense": defense,
            "cell": cell, "attack_seed": seed, "gnime_seed": gnime_seed, "ssim_per_image": list(map(float, values))}


def _rows(rng, n=40):
    rows = [_row("predmi", "none", "none", s, 0.30 + 0.01 * rng.standard_normal(n)) for s in (0, 1)]
    # lrp leaks far more than the prediction, grad a little, gxi less than it
    for e, level in (("lrp", 0.80), ("grad", 0.40), ("gxi", 0.20)):
        rows += [_row("expmi", e, "none", s, level + 0.01 * rng.standard_normal(n)) for s in (0, 1)]
        for g in (0, 1):  # GNIME brings each down to 0.25; RND and OND of its size to 0.5
            rows += [_row("expmi", e, "gnime", s, 0.25 + 0.01 * rng.standard_normal(n), g) for s in (0, 1)]
            rows += [_row("expmi", e, d, s, 0.50 + 0.01 * rng.standard_normal(n), g) for d in ("rnd", "ond") for s in (0, 1)]
    return rows


def test_explainers_are_ranked_by_leakage_with_paired_intervals():
    rows = _rows(np.random.default_rng(0))
    text = leakage_table(pa.Table.from_pylist(rows), "digits", ["grad", "lrp", "gxi"])
    lines = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [line.split(" | ")[1] for line in lines] == ["lrp", "grad", "gxi"]
    predmi = np.mean([r["ssim_per_image"] for r in rows if r["attack"] == "predmi"])
    lrp = np.mean([r["ssim_per_image"] for r in rows if r["explainer"] == "lrp" and r["defense"] == "none"])
    cells = lines[0].split(" | ")
    assert cells[3].startswith(f"{lrp - predmi:+.4f} [") and cells[4] == "yes" and cells[7] == "yes"
    assert lines[2].split(" | ")[4] == "no: less than the prediction"  # gxi: 0.2 against 0.3
    assert all(line.split(" | ")[8].startswith("-0.2") for line in lines)  # GNIME 0.25 against RND 0.5
    assert "2 attack seeds x 2 GNIMEs" in text and "40 test images" in text


def test_without_predmi_or_with_mixed_configurations_it_says_so():
    rows = [r for r in _rows(np.random.default_rng(1)) if r["attack"] != "predmi"]
    with pytest.raises(GnimeRayError, match="no PredMI rows"):
        leakage_table(pa.Table.from_pylist(rows), "digits", ["lrp"])
    rows = _rows(np.random.default_rng(1))
    rows.append({**rows[-1], "cell": rows[-1]["cell"].replace("lam100", "lam50")})
    with pytest.raises(GnimeRayError, match="mixes configurations"):
        leakage_table(pa.Table.from_pylist(rows), "digits", ["lrp"])
