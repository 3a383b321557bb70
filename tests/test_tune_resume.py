"""Resume: killing the study's driver mid-study and running it again completes the study with
exactly one row per (cell, attack seed). Its own module, so that no other Ray session is alive."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("ray")

from gnime_ray.store import read_rows  # noqa: E402


DRIVER = textwrap.dedent("""
    import sys, ray
    from gnime_ray.config import get_preset
    from gnime_ray.tune import StudySpec, run_study
    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, logging_level="ERROR")
    spec = StudySpec(name="resume", dataset="digits", out=sys.argv[1], preset=get_preset("smoke", gnime_epochs=12),
                     attack_seeds=2, num_samples=3, max_concurrent_trials=1, attackers_per_trial=1,
                     checkpoint_every=2, cache_dir=sys.argv[2], study_seed=1)
    run_study(spec, log=lambda _: None)
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
