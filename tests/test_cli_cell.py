"""`gnime-ray cell` and `matrix`: bad input fails in one line and writes nothing."""

import pytest

from gnime_ray.cli import main

BASE = ["cell", "--dataset", "digits", "--preset", "smoke"]


@pytest.mark.parametrize("extra,needle", [
    (["--defense", "dp"], "defense must be one of none, rnd, ond, gnime, got 'dp'"),
    (["--lambda", "0"], "lambda must be > 0"),
    (["--lambda", "-3"], "lambda must be > 0"),
    (["--gamma", "0"], "gamma must be > 0"),
    (["--width", "0"], "width must be > 0"),
    (["--attack", "gan"], "attack must be one of expmi, predmi"),
    (["--lambda", "big"], "expected a number"),
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


def test_matrix_bad_input(cache_dir, tmp_path, capsys):
    assert main(["matrix", "--dataset", "digits", "--explainers", "lrp,shap", "--out", str(tmp_path / "o")]) == 2
    assert "explainer must be one of" in capsys.readouterr().err
    assert not cache_dir.exists() and not (tmp_path / "o").exists()
