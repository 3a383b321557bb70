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
    (["prepare", "--dataset", "digits", "--seed", "-1"], "--seed"),
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
