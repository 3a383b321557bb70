"""The same rows as before: a smoke matrix (the local engine) and a smoke quickstart (the Ray engine,
a search and its held-out report) make exactly the rows recorded before issue 27 moved the study
into gnime_ray/study/ (tests/rows_before_issue27.json: every numeric column of every row, keyed by
study, cell and attack seed; the matrix's rows are also those of commit f3d2e2c, before issue 27's
first change). On the machine kind they were recorded on (CPU model and vector flags, torch
version) the numbers must be equal up to float rounding (relative 1e-5: they were bit-equal until
issue 28 computed the U-Net's last conv over [decoder, skip] as two convs, models/unet.py, which moved
them by about 1e-7 relative); on another CPU float rounding differs more (other SIMD kernels, and
GNIME's minimax amplifies rounding), so there the rows' keys and integers must be equal and the
floats within a loose tolerance. The memory format is set, and a smoke GNIME is too short for a
compile to repay (decided eager without measuring), so no probe decides anything."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gnime_ray.cli import main
from gnime_ray.models.training_format import cpu_info
from gnime_ray.store import read_rows

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RECORDED = json.loads((Path(__file__).parent / "rows_before_issue27.json").read_text())
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def _numbers(out: Path) -> dict[str, dict]:
    """Every row's numeric columns (not its wall time), NaN as None, keyed by study|cell|attack seed."""
    rows = {}
    for r in read_rows(str(out)).to_pylist():
        rows[f"{r['study']}|{r['cell']}|{r['attack_seed']}"] = {
            k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "wall_seconds"}
    return rows


def _same_machine_kind() -> bool:
    model, flags = cpu_info()
    return (model == RECORDED["cpu"] and sorted(f for f in flags if f in FLAGS) == RECORDED["cpu_flags"]
            and torch.__version__ == RECORDED["torch"])


def _assert_same(made: dict[str, dict], recorded: dict[str, dict]) -> None:
    assert sorted(made) == sorted(recorded), "other rows than before"
    exact = _same_machine_kind()
    differ = []
    for key, before in recorded.items():
        for column, old in before.items():
            new = made[key].get(column)
            if isinstance(old, int) or old is None:
                ok = new == old
            elif exact:
                ok = new is not None and math.isclose(new, old, rel_tol=1e-5, abs_tol=1e-9)
            else:
                ok = new is not None and math.isclose(new, old, rel_tol=0.05, abs_tol=0.02)
            if not ok:
                differ.append(f"{key} {column}: {old!r} before, {new!r} now")
    assert not differ, f"{len(differ)} values differ ({'beyond float rounding' if exact else 'beyond the tolerance'}):\n" + \
        "\n".join(differ[:20])


def test_a_smoke_matrix_makes_the_rows_of_before(tmp_path, monkeypatch):
    monkeypatch.setenv("GNIME_RAY_CACHE", str(tmp_path / "cache"))
    assert main([*RECORDED["matrix"]["args"], "--out", str(tmp_path / "out")]) == 0
    _assert_same(_numbers(tmp_path / "out"), RECORDED["matrix"]["rows"])


def test_a_smoke_quickstart_makes_the_rows_of_before(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "GNIME_RAY_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, str(ROOT / "studies" / "quickstart.py"), *RECORDED["quickstart"]["args"],
                        "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _assert_same(_numbers(tmp_path / "out"), RECORDED["quickstart"]["rows"])
