"""`gnime-ray cell` and `matrix`: bad input fails in one line and writes nothing."""

import pytest

from gnime_ray.cli import main

BASE = ["cell", "--dataset", "digits", "--preset", "smoke"]


@pytest.mark.parametrize("extra,needle", [
    (["--defense", "dp"], "defense must be one of none, rnd, ond, gnime, got 'dp'"),
    (["--lambda", "0"], "lambda must be a finite number > 0"),
    (["--lambda", "-3"], "lambda must be a finite number > 0"),
    (["--lambda", "inf"], "lambda must be a finite number > 0, got inf"),
    (["--lambda", "nan"], "lambda must be a finite number > 0, got nan"),
    (["--gamma", "0"], "gamma must be a finite number > 0"),
    (["--gamma", "inf"], "gamma must be a finite number > 0"),
    (["--width", "0"], "width must be a finite number > 0"),
    (["--width", "nan"], "width must be a finite number > 0"),
    (["--attack", "gan"], "attack must be one of expmi, predmi"),
    (["--lambda", "big"], "expected a number"),
    (["--match", "psnr"], "match must be one of perturbation, utility, utility-topk"),
    (["--dataset", "mnist", "--data-root", "/nonexistent"], "data root /nonexistent does not exist"),
    (["--dataset", "celeba", "--aux-dataset", "facescrub", "--data-root", "/nonexistent"], "does not exist"),
])
def test_cell_bad_input(extra, needle, cache_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(BASE + extra + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not cache_dir.exists() and not out.exists()


def test_out_that_is_a_file(cache_dir, tmp_path, capsys):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    assert main(BASE + ["--out", str(f)]) == 2
    err = capsys.readouterr().err
    assert "exists and is not a directory" in err and err.count("\n") == 1
    assert f.read_text() == "keep me" and not cache_dir.exists()
    assert main(["matrix", "--dataset", "digits", "--preset", "smoke", "--out", str(f / "sub")]) == 2


@pytest.mark.parametrize("extra,needle", [
    (["--explainers", "lrp,shap"], "explainer must be one of"),
    (["--dataset", "mnist", "--data-root", "/nonexistent"], "data root /nonexistent does not exist"),
    (["--budgets", "0.5,x"], "expected comma-separated numbers"),
    (["--budgets", "1", "--gamma", "0.01"], "not --gamma"),
    (["--budgets", "0,1"], "--budgets must be multiples > 0"),
    (["--match", "utility,psnr"], "argument --match: expected a comma-separated subset of perturbation,utility,"),
    (["--dataset", "facescrub", "--budgets", "1"], "the paper's Table 3 has no perturbation MSE for 'facescrub'"),
])
def test_matrix_bad_input(extra, needle, cache_dir, tmp_path, capsys):
    assert main(["matrix", "--dataset", "digits", *extra, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1, err
    assert not cache_dir.exists() and not (tmp_path / "o").exists()


def test_table_command_reads_the_rows_back(tmp_path, capsys):
    """`gnime-ray table OUT --dataset D` prints Table 1 from Parquet rows and the paper's MNIST block."""
    from gnime_ray.store import SCHEMA, write_rows

    rows = []
    for study in ("a", "b"):
        for seed, ssim in ((0, 0.5), (1, 0.7)):
            row = {f.name: float("nan") if str(f.type) == "double" else None for f in SCHEMA}
            row.update(study=study, dataset="digits", explainer="lrp", trial="", cell="digits/same/lrp/none",
                       aux_dataset="same", variant="paper", defense="none", attack="expmi", study_seed=0,
                       attack_seed=seed, preset="smoke", mse=0.1, ssim=ssim, tca=0.9, deepsim=0.8, n_eval=5,
                       attack_epochs_run=1, split="test", select_ssim=0.0)
            rows.append(row)
    write_rows(rows, str(tmp_path))
    assert main(["table", "--out", str(tmp_path), "--dataset", "digits", "--study", "a", "--explainers", "lrp"]) == 0
    out = capsys.readouterr().out
    assert "| SSIM ↓ | – | 0.6000 ± 0.1414 |" in out and "mnist (paper, 5 runs)" in out
    assert "rows made by: a version not recorded (commit not recorded): 2 rows" in out
    assert main(["table", "--out", str(tmp_path), "--dataset", "digits", "--explainers", "lrp"]) == 2
    assert "same attack seed more than once (studies a, b)" in capsys.readouterr().err
    assert main(["table", "--out", str(tmp_path), "--dataset", "celeba"]) == 2
    assert "no rows for dataset celeba" in capsys.readouterr().err
    # a results root of an earlier version (no selection/test division): one line, non-zero, nothing written
    old = [{**r, "study": "old", "split": None} for r in rows[:2]]
    write_rows(old, str(tmp_path))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["table", "--out", str(tmp_path), "--dataset", "digits", "--study", "old", "--explainers", "lrp"]) == 2
    err = capsys.readouterr().err
    assert "rows of old were written by an earlier version" in err and "no 'split' column" in err
    assert err.count("\n") == 1 and sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.slow  # two smoke GNIMEs and their attackers (about a minute)
def test_a_budget_matrix_extended_by_one_explainer_prints_its_tables(cache_dir, tmp_path, capsys):
    """A study's rows of an explainer the run does not name (an earlier run's) are left out of its
    tables: running the study again for one of its explainers once failed after its last row
    (KeyError in the per-budget Table 1)."""
    base = ["matrix", "--dataset", "digits", "--preset", "smoke", "--attack-seeds", "1", "--budgets", "1",
            "--study", "b", "--out", str(tmp_path / "o")]
    assert main([*base, "--explainers", "grad,lrp"]) == 0
    capsys.readouterr()
    assert main([*base, "--explainers", "lrp"]) == 0
    out = capsys.readouterr().out
    assert "matrix b: 5 cells, 5 already done" in out and "lrp GNIME" in out and "grad GNIME" not in out
