"""Lambda calibrated to a perturbation target, several trained GNIMEs per cell, and the table's two
spreads."""

import json
import math

import pyarrow as pa
import pytest

from gnime_ray import GnimeRayError
from gnime_ray.cellspec import CellSpec
from gnime_ray.cli import main
from gnime_ray.config import get_preset
from gnime_ray.pipeline import calibrate as cal
from gnime_ray.report.tables import table1
from gnime_ray.store import SCHEMA
from gnime_ray.report.tables import base_cell, operating_points


class FakeRun:
    """Stands in for GNIME training + measurement: mse = curve(lambda); counts trainings."""

    def __init__(self, monkeypatch, curve):
        self.lams = []
        monkeypatch.setattr(cal, "train_or_load_gnime", lambda prep, spec, preset, device, log: spec)
        monkeypatch.setattr(cal, "target_half_perturbation", lambda prep, spec, model, bs: self.measure(spec.lam))
        self.curve = curve

    def measure(self, lam):
        self.lams.append(lam)
        return self.curve(lam)


def _calibrate(target, **kw):
    spec = CellSpec("digits", explainer="lrp", lam=kw.pop("lam", 100.0))
    return cal.calibrate_lambda(None, spec, get_preset("smoke"), target, device="cpu", log=lambda _: None, **kw)


def test_the_search_finds_the_lambda_of_a_monotone_perturbation(monkeypatch):
    run = FakeRun(monkeypatch, lambda lam: 7e-4 * lam ** 0.7)  # perturbation grows with lambda (L_NG)
    result = _calibrate(0.0077)
    exact = (0.0077 / 7e-4) ** (1 / 0.7)  # about 30.6
    assert result.converged and abs(result.achieved_mse / 0.0077 - 1) <= cal.TOLERANCE
    assert abs(math.log(result.lam / exact)) < math.log(1 + cal.TOLERANCE) / 0.7 + 1e-9
    assert result.lam == float(f"{result.lam:.3g}")  # exactly what is printed: no silent retraining
    assert len(run.lams) == len(set(run.lams)) <= cal.MAX_TRAININGS  # no lambda trained twice
    assert [tuple(e) for e in result.evaluations] == [(lam, 7e-4 * lam ** 0.7) for lam in run.lams]
    assert result.lam < 100
    # the other direction: a target above the start's perturbation raises lambda
    run.lams.clear()
    up = _calibrate(0.2)
    assert up.converged and up.lam > 100 and abs(up.achieved_mse / 0.2 - 1) <= cal.TOLERANCE


def test_a_saturated_perturbation_stops_early_and_says_so(monkeypatch):
    run = FakeRun(monkeypatch, lambda lam: 0.07 + 1e-6 * lam)  # the budget, not lambda, sets it
    result = _calibrate(0.0077)
    assert len(run.lams) == 2 and not result.converged
    assert "lambda cannot move it" in result.note and result.lam in run.lams
    record = json.loads(result.to_json())
    assert record["target_mse"] == 0.0077 and record["converged"] is False and len(record["evaluations"]) == 2


def test_the_search_never_exceeds_its_budget(monkeypatch):
    run = FakeRun(monkeypatch, lambda lam: 0.5 * lam)
    result = _calibrate(1e-9, max_trainings=3)  # unreachable within three decades
    assert len(run.lams) == 3 and not result.converged
    assert result.lam == min(run.lams) == 1.0  # the closest point seen


def test_targets_come_from_the_papers_table_3_or_a_number():
    assert cal.parse_target("paper", "digits", "lrp") == (0.0077, "paper Table 3, mnist lrp")
    assert cal.parse_target("paper", "celeba", "grad") == (0.0026, "paper Table 3, celeba grad")
    assert cal.parse_target("0.01", "digits", "grad") == (0.01, "given")
    for bad in ("abc", "0", "1.5", "nan"):
        with pytest.raises(GnimeRayError, match="--calibrate must be 'paper' or a perturbation MSE"):
            cal.parse_target(bad, "digits", "grad")
    with pytest.raises(GnimeRayError, match="Table 3 has no perturbation MSE for 'facescrub'"):
        cal.parse_target("paper", "facescrub", "grad")


def test_gnime_seeds_are_other_cells_and_other_trainings():
    from gnime_ray.pipeline.defend import gnime_config

    preset = get_preset("smoke")
    base = CellSpec("digits", explainer="lrp", defense="gnime")
    other = CellSpec("digits", explainer="lrp", defense="gnime", gnime_seed=1)
    assert base.key().endswith("-gnone/s0") and other.key().endswith("-gnone-n1/s0")  # seed 0 keeps old keys
    assert base_cell(other.key()) == base.key()
    assert gnime_config(base, preset).seed != gnime_config(other, preset).seed
    assert CellSpec("digits", explainer="lrp", defense="none", gnime_seed=3).gnime_seed == 0  # no GNIME: one cell
    with pytest.raises(ValueError, match="gnime_seed must be an integer >= 0"):
        CellSpec("digits", gnime_seed=-1)


def _row(defense, gnime_seed, attack_seed, ssim, lam=100.0, calibration=""):
    row = {f.name: float("nan") if str(f.type) == "double" else None for f in SCHEMA}
    spec = CellSpec("digits", explainer="lrp", defense=defense, seed=attack_seed, lam=lam, gnime_seed=gnime_seed)
    row.update(study="s", dataset="digits", explainer="lrp", trial="", cell=spec.key(), aux_dataset="same",
               variant="paper", defense=defense, attack="expmi", study_seed=0, attack_seed=attack_seed,
               gnime_seed=spec.gnime_seed, preset="smoke", mse=0.1, ssim=ssim, tca=0.5, deepsim=0.5, lam=lam,
               perturbation_mse=0.01 * (1 + gnime_seed), utility_deepsim=0.9, calibration=calibration, split="test")
    row["lambda"] = lam
    return row


def test_the_table_reports_attack_and_gnime_spreads():
    # two GNIMEs x two attack seeds: GNIME 0 gives SSIM 0.5 and 0.7, GNIME 1 gives 0.8 and 0.8
    rows = [_row("gnime", 0, 0, 0.5), _row("gnime", 0, 1, 0.7), _row("gnime", 1, 0, 0.8), _row("gnime", 1, 1, 0.8),
            _row("none", 0, 0, 0.9), _row("none", 0, 1, 0.95)]
    text = table1(pa.Table.from_pylist(rows), "digits", ["lrp"])
    ssim_line = next(line for line in text.splitlines() if line.startswith("| SSIM"))
    within = math.sqrt((0.02 + 0.0) / 2)  # pooled: var(0.5, 0.7) = 0.02, var(0.8, 0.8) = 0
    between = math.sqrt(((0.6 - 0.7) ** 2 + (0.8 - 0.7) ** 2) / 1)
    assert f"0.7000 ± {within:.4f} / {between:.4f}" in ssim_line
    assert "0.9250 ± 0.0354 / –" in ssim_line  # ExpMI without defence: one GNIME-free cell
    assert "2 attack seeds x 2 GNIMEs" in text and "GNIME-seed spread" in text
    # one GNIME: the paper's layout, unchanged
    single = table1(pa.Table.from_pylist(rows[:2] + rows[4:]), "digits", ["lrp"])
    assert "0.6000 ± 0.1414 |" in single and "GNIMEs" not in single


def test_operating_points_show_the_calibration_and_the_papers_table_3():
    record = json.dumps({"target_mse": 0.0077, "target_source": "paper Table 3, mnist lrp", "achieved_mse": 0.0081,
                         "evaluations": [[100.0, 0.05], [1000.0, 0.0081]], "converged": True})
    rows = [_row("gnime", g, s, 0.5, lam=1000.0, calibration=record) for g in (0, 1) for s in (0, 1)]
    text = operating_points(pa.Table.from_pylist(rows), "digits", ["lrp"])
    line = next(line for line in text.splitlines() if line.startswith("| lrp"))
    assert "| 1000 |" in line and "calibrated to 0.0077 (paper Table 3, mnist lrp): 0.0081" in line
    assert "0.0150 ± 0.0071" in line and "| 0.0077 |" in line and "| 0.9298 |" in line


def test_a_calibrated_matrix_with_two_gnimes_records_both(cache_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["matrix", "--dataset", "digits", "--preset", "smoke", "--attack-seeds", "1", "--explainers", "grad",
                 "--gnime-seeds", "2", "--calibrate", "0.03", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "calibrated to 0.03 (given)" in printed and "1 attack seeds x 2 GNIMEs" in printed
    from gnime_ray.store import read_rows

    rows = read_rows(str(out)).to_pylist()
    assert {r["study"] for r in rows} == {"matrix-digits-smoke-calibrated-gnime2"}
    gnime_rows = [r for r in rows if r["defense"] in ("gnime", "rnd", "ond")]
    assert sorted((r["defense"], r["gnime_seed"]) for r in gnime_rows) == sorted(
        (d, g) for d in ("gnime", "rnd", "ond") for g in (0, 1))
    records = {r["calibration"] for r in gnime_rows}
    assert len(records) == 1 and json.loads(records.pop())["target_mse"] == 0.03
    assert all(r["calibration"] == "" and r["gnime_seed"] == 0 for r in rows if r["defense"] == "none")
    artifacts = {r["gnime_seed"]: r["gnime_artifact"] for r in gnime_rows}
    assert artifacts[0] != artifacts[1]  # two trainings, two networks
    lam = {r["lambda"] for r in gnime_rows}
    assert len(lam) == 1  # every GNIME seed at the calibrated lambda


def test_matrix_refuses_bad_calibration_input(cache_dir, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["matrix", "--dataset", "digits", "--calibrate", "huge", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--calibrate must be 'paper' or a perturbation MSE in (0, 1), got 'huge'" in err and err.count("\n") == 1
    assert main(["matrix", "--dataset", "digits", "--gnime-seeds", "0", "--out", str(out)]) == 2
    assert "matrix: argument --gnime-seeds: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert not cache_dir.exists() and not out.exists()
