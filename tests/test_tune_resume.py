"""Resume: killing the study's driver mid-study and running it again completes the study with
exactly one row per (cell, attack seed), the same rows an uninterrupted run has. Its own module,
so that no other Ray session is alive."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from gnime_ray.store import read_rows  # noqa: E402

pytestmark = pytest.mark.slow  # studies end to end (`make test-fast` leaves them out)


DRIVER = textwrap.dedent("""
    import sys, ray
    from gnime_ray.config import get_preset
    from gnime_ray.tune import StudySpec, run_study
    from gnime_ray.tune.placement import Placement
    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, logging_level="ERROR")
    spec = StudySpec(name="resume", dataset="digits", out=sys.argv[1], preset=get_preset("smoke", gnime_epochs=12),
                     attack_seeds=2, num_samples=3, cache_dir=sys.argv[2], study_seed=1)
    run_study(spec, Placement(max_concurrent_trials=1, attackers_per_trial=1, checkpoint_every=2), log=lambda _: None)
""")


def test_killed_driver_resumes_without_duplicates_or_gaps(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(cache)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:  # kill once the study is under way
            if len(list(out.glob("study=resume/**/*.parquet"))) >= 5:
                break
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    n_before = len(list(out.glob("study=resume/**/*.parquet")))
    assert 0 < n_before < 4 + 3 * 2, "the driver should have been killed mid-study"
    done = subprocess.run([sys.executable, str(script), str(out), str(cache)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [r for r in read_rows(str(out)).to_pylist() if r["study"] == "resume"]
    keys = [(r["cell"], r["attack_seed"]) for r in rows]
    assert len(keys) == len(set(keys)) == 4 + 3 * 2  # baselines + 3 trials x 2 seeds, each exactly once


QUICKSTART = Path(__file__).resolve().parents[1] / "studies" / "quickstart.py"
# long enough GNIME trainings that the search is under way when it is interrupted
QUICKSTART_ARGS = ["--dataset", "digits", "--preset", "smoke", "--set", "gnime_epochs=60", "--front-points", "1"]
VARYING = ("trial", "created_at", "wall_seconds", "host", "figure_sample")  # not numbers: where and when


def _quickstart(out: Path, cache: Path, **popen) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "GNIME_RAY_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, str(QUICKSTART), *QUICKSTART_ARGS, "--out", str(out)], env=env,
                            start_new_session=True, **popen)


def _rows(out: Path) -> dict:
    rows = read_rows(str(out)).to_pylist()
    keyed = {(r["study"], r["cell"], r["attack_seed"]): r for r in rows}
    assert len(keyed) == len(rows), "a (cell, attack seed) row exists twice"
    return keyed


def _check_the_smoke_quickstart(out: Path, rows: dict) -> None:
    """What the quickstart records: a two-objective search (the Optuna journal's two directions and
    its trials' constraint values), a report with GNIMEs other than the searched one, RND and OND at
    matched perturbation and matched utility, and the frontier's interval columns."""
    import optuna
    import pyarrow.csv as pacsv
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    kept = optuna.load_study(study_name="quickstart-lrp",
                             storage=JournalStorage(JournalFileBackend(str(out / "_optuna" / "quickstart.log"))))
    assert [d.name for d in kept.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert kept.trials and all("utility_floor" in t.constraints for t in kept.trials)
    report = [r for (study, _, _), r in rows.items() if study == "quickstart-lrp-report"]
    assert {r["gnime_seed"] for r in report if r["defense"] == "gnime"} == {1, 2}
    assert {(r["defense"], r["matched_on"]) for r in report if r["defense"] in ("rnd", "ond")} == {
        (d, m) for d in ("rnd", "ond") for m in ("perturbation", "utility", "utility-topk")}
    points = pacsv.read_csv(out / "_frontier" / "quickstart-lrp-report-points.csv").to_pylist()
    assert {"delta_ssim", "delta_low", "delta_high", "verdict"} <= set(points[0])
    assert all(p["delta_low"] <= p["delta_high"] for p in points if p["defense"] in ("rnd", "ond"))


def test_interrupted_quickstart_resumes_to_the_rows_of_an_uninterrupted_run(tmp_path):
    """Ctrl-C (SIGINT) reaches Tune mid-search, then the process group is killed; the same command
    run again finishes the search and its held-out report with exactly the rows, metric for metric,
    of an uninterrupted run (a search stopped by Ctrl-C is never reported as a finished one)."""
    ref_out, ref_cache = tmp_path / "ref", tmp_path / "ref-cache"
    ref = _quickstart(ref_out, ref_cache, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = ref.communicate(timeout=900)[0]
    assert ref.returncode == 0, log[-3000:]
    assert "optimism of the search (lrp)" in log and "GNIME - defence, SSIM [95% interval]" in log
    expected = _rows(ref_out)
    _check_the_smoke_quickstart(ref_out, expected)

    out, cache = tmp_path / "out", tmp_path / "cache"
    cache.mkdir()
    shutil.copytree(ref_cache / "speed", cache / "speed")  # the same machine's speed verdict, nothing trained
    proc = _quickstart(out, cache, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600  # interrupt once the search has begun to write its rows
        while time.time() < deadline and proc.poll() is None and not list(out.glob("study=quickstart/**/*.parquet")):
            time.sleep(0.5)
        assert proc.poll() is None, "the quickstart ended before it could be interrupted"
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        err = proc.communicate()[1]
    if proc.returncode != -signal.SIGKILL:  # it stopped by itself: in one line, as interrupted
        assert proc.returncode == 130 and err.strip().splitlines()[-1].startswith("interrupted: "), err[-2000:]
    before = _rows(out)
    assert not [k for k in before if k[0] != "quickstart"], "the report must not start from an interrupted search"
    assert len(before) < len([k for k in expected if k[0] == "quickstart"]), "interrupted too late"

    again = _quickstart(out, cache, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = again.communicate(timeout=900)[0]
    assert again.returncode == 0, log[-3000:]
    got = _rows(out)
    assert set(got) == set(expected)
    for key, row in expected.items():
        same = {c: (row[c], got[key][c]) for c in row if c not in VARYING and row[c] != got[key][c]
                and not (isinstance(row[c], float) and row[c] != row[c] and got[key][c] != got[key][c])}
        assert not same, (key, same)
