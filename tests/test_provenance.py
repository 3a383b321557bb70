"""What made a number: the commit and command recorded with rows and studies (provenance.py)."""

import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from gnime_ray import __version__, provenance
from gnime_ray.report.tables import provenance as rows_provenance
from gnime_ray.study.record import read_record, record_study

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_the_commit_is_the_checkouts_and_says_when_tracked_files_differ(monkeypatch, tmp_path):
    expected = _git("rev-parse", "--short=7", "HEAD")
    if _git("status", "--porcelain", "--untracked-files=no"):
        expected += "+dirty"
    provenance.code_commit.cache_clear()
    assert provenance.code_commit() == expected
    monkeypatch.setattr(provenance, "PACKAGE_DIR", tmp_path)  # a copy outside any git checkout
    provenance.code_commit.cache_clear()
    try:
        assert provenance.code_commit() is None
    finally:
        provenance.code_commit.cache_clear()


def test_the_command_is_written_as_it_would_be_typed_again():
    assert provenance.command_line(["studies/quickstart.py", "--preset", "smoke"]) == \
        "python studies/quickstart.py --preset smoke"
    assert provenance.command_line(["/venv/bin/gnime-ray", "matrix", "--set", "gnime_lr=1e-4 x"]) == \
        "gnime-ray matrix --set 'gnime_lr=1e-4 x'"


def test_a_study_record_names_its_command_and_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["studies/quickstart.py", "--dataset", "digits"])
    record_study(str(tmp_path), "s", "search", {"a": 1}, {"memory_format": "contiguous"})
    record = read_record(str(tmp_path), "s")
    assert record["command"] == "python studies/quickstart.py --dataset digits"
    assert record["code_commit"] == provenance.code_commit() and record["code_version"] == __version__


def test_a_tables_footer_counts_the_rows_of_each_version():
    table = pa.Table.from_pylist([{"code_version": "0.1.0", "code_commit": "abc1234"},
                                  {"code_version": "0.1.0", "code_commit": "abc1234"},
                                  {"code_version": "0.1.0", "code_commit": None},  # a row of an earlier version
                                  {"code_version": None, "code_commit": None}])
    assert rows_provenance(table) == ("rows made by: a version not recorded (commit not recorded): 1 row, "
                                      "gnime_ray 0.1.0 (commit abc1234): 2 rows, "
                                      "gnime_ray 0.1.0 (commit not recorded): 1 row")
