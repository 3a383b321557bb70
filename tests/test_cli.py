"""The command line: one-line errors, non-zero exits, nothing written on bad input."""

import os
import subprocess
import sys

import pytest

from gnime_ray.cli import main


@pytest.mark.parametrize("argv,needle", [
    (["prepare", "--dataset", "imagenet1k"], "unknown dataset 'imagenet1k'"),
    (["prepare", "--dataset", "digits", "--explainers", "grad,shap"], "unknown explainer 'shap'"),
    (["prepare", "--dataset", "digits", "--variant", "exact"], "unknown explainer variant 'exact'"),
    (["prepare", "--dataset", "digits", "--preset", "huge"], "unknown preset 'huge'"),
    (["prepare", "--dataset", "digits", "--set", "classifier_epochs=0"], "classifier_epochs must be an integer >= 1"),
    (["prepare", "--dataset", "digits", "--set", "val_fraction=0.9"], "val_fraction must be in (0, 0.5)"),
    (["prepare", "--dataset", "digits", "--set", "lr=1"], "unknown preset field 'lr'"),
    (["prepare", "--dataset", "digits", "--study-seed", "-1"], "--study-seed"),
    (["prepare", "--dataset", "digits", "--seed", "1"], "--seed is no longer a flag: use --study-seed"),
    (["prepare"], "--dataset"),
])
def test_bad_input_is_one_line_and_writes_nothing(argv, needle, cache_dir, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not cache_dir.exists()


def test_non_writable_cache_dir(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert main(["prepare", "--dataset", "digits", "--preset", "smoke", "--cache-dir", str(blocker / "cache")]) == 2
    err = capsys.readouterr().err
    assert f"cache dir {blocker / 'cache'} cannot be created" in err and err.count("\n") == 1


def test_console_script_exit_code(tmp_path):
    env = dict(os.environ, GNIME_RAY_CACHE=str(tmp_path / "c"))
    proc = subprocess.run([sys.executable, "-m", "gnime_ray.cli", "prepare", "--dataset", "nope"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("gnime-ray: error: unknown dataset 'nope'")
    assert "Traceback" not in proc.stderr


def test_prepare_prints_accuracies_and_cache(cache_dir, capsys):
    assert main(["prepare", "--dataset", "digits", "--preset", "smoke", "--explainers", "grad"]) == 0
    out = capsys.readouterr().out
    assert "target f   accuracy on the eval split" in out and "eval f_E   accuracy" in out
    assert f"cache: {cache_dir.absolute()}" in out


def test_operating_point_script_measures_selection_images_only(tmp_path):
    """benchmarks/operating_point.py: a budget's GNIME measured at its end (and attacked), and along its
    training; the numbers along a training equal those of a training that long (same seed)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "operating_point.py"
    env = {**os.environ, "GNIME_RAY_CACHE": str(tmp_path / "cache")}
    base = [sys.executable, str(script), "--dataset", "digits", "--preset", "smoke", "--explainers", "grad"]
    end = subprocess.run(base + ["--budget", "gnime_epochs=2", "--attack"], capture_output=True, text=True,
                         env=env, timeout=600)
    assert end.returncode == 0, end.stderr[-2000:]
    row = next(line for line in end.stdout.splitlines() if line.startswith("| gnime_epochs=2 | grad |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == "2" and cells[9] == "0.0039"  # steps; the paper's Grad perturbation (Table 3, MNIST)
    assert len(cells[-1].split(" / ")) == 3  # attack SSIM on the selection images: GNIME / RND / OND
    along = subprocess.run(base + ["--budget", "gnime_epochs=4", "--every", "2"], capture_output=True, text=True,
                           env=env, timeout=600)
    assert along.returncode == 0, along.stderr[-2000:]
    rows = [line for line in along.stdout.splitlines() if line.startswith("| gnime_epochs=4 | grad |")]
    assert [r.split("|")[4].strip() for r in rows] == ["2", "4"]
    # at 2 epochs, the same perturbation and utility as the GNIME trained for 2 epochs
    first = [c.strip() for c in rows[0].strip("|").split("|")]
    assert first[7:14] == cells[7:14]
    bad = subprocess.run(base + ["--budget", "gnime_lr=0"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "gnime_lr must be a finite number > 0" in bad.stderr
