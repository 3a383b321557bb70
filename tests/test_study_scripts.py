"""The study scripts (studies/*.py over gnime_ray/tune/scripts.py and named_studies.py) and how a
script finds its Ray (gnime_ray/tune/cluster.py connect): help, one-line errors before Ray starts,
never attaching to another process's private Ray, --address auto."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_study_scripts_help_and_missing_celeba(tmp_path):
    for script in ("quickstart.py", "table1.py", "celeba_lambda.py", "table2.py"):
        r = subprocess.run([sys.executable, str(ROOT / "studies" / script), "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "--num-samples" in r.stdout and "--trial-gpu" in r.stdout
    r = subprocess.run([sys.executable, str(ROOT / "studies" / "celeba_lambda.py"), "--data-root", str(tmp_path / "no")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"data root {tmp_path / 'no'} does not exist" in r.stderr and "celeba/img_align_celeba" in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["--trial-gpu", "inf"], "trial_gpu must be a finite number in (0, 1], got inf"),
    (["--attacker-gpu", "nan"], "attacker_gpu must be a finite number in (0, 1], got nan"),
    (["--set", "gnime_lr=inf"], "gnime_lr must be a finite number > 0, got inf"),
    (["--out", "s3://no-such-bucket/x"], "cannot reach bucket 'no-such-bucket'"),
    (["--gnime-seeds", "0"], "--gnime-seeds: expected an integer >= 1, got 0"),
    (["--final-gnime-seeds", "2"], "--final-gnime-seeds is no longer a flag: use --gnime-seeds"),
    (["--name", "x"], "--name is no longer a flag: use --study"),
    (["--set", "test_fraction=1.5"], "test_fraction must be in (0, 1)"),
    (["--set", "test_fraction=0"], "test_fraction must be in (0, 1)"),
])
def test_study_script_bad_input_fails_in_one_line_before_ray(args, needle, tmp_path):
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y", "AWS_EC2_METADATA_DISABLED": "true"}
    r = subprocess.run([sys.executable, str(ROOT / "studies" / "quickstart.py"), "--dataset", "digits", "--preset", "smoke",
                        "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), *args],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr[-2000:]
    assert "ray:" not in r.stdout and not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_a_script_never_attaches_to_another_process_private_ray(local_ray):
    """This test process runs a private ray.init(); a script started without --address starts its own."""
    probe = textwrap.dedent("""
        import ray
        from gnime_ray.tune import connect
        print("STARTED_HERE", connect(num_cpus=1, log=lambda _: None), ray.cluster_resources().get("GPU", 0))
    """)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert "STARTED_HERE True 0" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]  # not the fake-GPU test Ray


def test_a_recorded_cluster_is_current_while_its_raylet_runs_here(tmp_path):
    """connect()'s decision reads the process table, it times nothing: a raylet whose command line
    names the recorded GCS address means the cluster is current; another cluster's raylet, or a
    process that only mentions the address, does not."""
    from gnime_ray.tune.cluster import _raylet_of

    def process(pid: int, *argv: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    (tmp_path / "self").mkdir()
    process(10, "/venv/ray/core/src/ray/gcs/gcs_server", "--gcs-address=10.0.0.1:6379")
    process(11, "/venv/ray/core/src/ray/raylet/raylet", "--node_id=x", "--gcs-address=10.0.0.2:6379")
    assert not _raylet_of("10.0.0.1:6379", tmp_path)
    assert _raylet_of("10.0.0.2:6379", tmp_path)
    assert _raylet_of("10.0.0.1:6379", tmp_path / "absent")  # no process table: Ray's record is trusted


def test_address_auto_without_a_ray_start_cluster_is_one_line(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": str(tmp_path)}
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")  # a cluster that is gone
    r = subprocess.run([sys.executable, str(ROOT / "studies" / "quickstart.py"), "--dataset", "digits", "--preset", "smoke", "--address",
                        "auto", "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert "--address auto: this machine is not a node of a running Ray cluster" in r.stderr
