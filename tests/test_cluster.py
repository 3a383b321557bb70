"""The cluster path on a real multi-node Ray cluster on this machine (tests/clusters.py): a head with
no CPUs and two GPU workers (fake GPUs) whose disks are private (their raylets run in their own
mount namespace with a tmpfs over the local results folder, the cache and a data folder), and an
S3 server (moto). Checked: a node-local --out is refused before any work; a study on S3 completes
with rows, trial summaries, Tune's state and the artifacts in the bucket; running it again adds no
row; a cell is reproduced elsewhere from the bucket's artifacts without retraining; data missing
on a worker is refused; a worker node killed mid-trial costs no row."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from clusters import LocalCluster, S3Server, can_unshare
from fixtures import write_celeba_official

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not can_unshare(), reason="needs `unshare -m` and tmpfs mounts (root): worker nodes "
                                                          "with private disks cannot be simulated here")]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3):
    root = tmp_path_factory.mktemp("cluster")
    private = (root / "out", root / "cache", root / "data")
    c = LocalCluster(root / "nodes", env=s3.env)
    try:
        c.start_head(num_cpus=0)
        for _ in range(2):
            c.add_worker(num_cpus=2, num_gpus=1, private=private)
        c.root_private = private
        yield c
    finally:
        c.stop()


def _run(cluster, args, cache, timeout=600, **env):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=cluster.driver_env(GNIME_RAY_CACHE=str(cache), **env))
    proc.seconds = time.perf_counter() - t0
    return proc


def _quickstart(cluster, out, cache, *extra):
    return _run(cluster, ["studies/quickstart.py", "--dataset", "digits", "--preset", "smoke", "--address", cluster.address,
                          "--num-samples", "2", "--attack-seeds", "1", "--front-points", "1", "--gnime-seeds", "1",
                          "--out", out, "--cache-dir", str(cache), *extra], cache)


def _row_keys(s3, prefix):
    return sorted(k for k in s3.keys(prefix) if "/study=" in k and k.endswith(".parquet"))


def test_node_local_out_is_refused_before_any_work(cluster):
    out, cache, _ = cluster.root_private
    proc = _quickstart(cluster, str(out), cache)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot see the results root" in err[0] and str(out) in err[0] and "node " in err[0]
    assert proc.seconds < 60 and "GNIME" not in proc.stdout and "prepare:" not in proc.stdout
    assert not out.exists() or not any(out.iterdir())  # the marker was removed again


def test_study_on_s3_completes_and_reruns_add_no_row(cluster, s3, tmp_path):
    cache = cluster.root_private[1]
    proc = _quickstart(cluster, f"s3://{s3.bucket}/q", cache)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    keys = s3.keys("q/")
    rows = _row_keys(s3, "q/")
    # search: 2 trials x 1 seed (no baselines: its report runs them); its held-out report at one point of
    # the front: PredMI + ExpMI without defence + a fresh GNIME and RND and OND at its perturbation,
    # DeePSiM utility and top-k utility (a fresh attack seed)
    assert len(rows) == 2 + 2 + 7
    for name in ("quickstart", "quickstart-lrp-report"):
        assert f"q/_trials/{name}.csv" in keys and f"q/_studies/{name}.json" in keys
        assert any(k.startswith(f"q/_tune/{name}-lrp/") for k in keys)
    assert any(k.startswith("q/_artifacts/gnime/") for k in keys)
    assert any(k.endswith("/classifiers.pt") for k in keys)
    # every row names artifacts that are in the bucket
    import pyarrow.dataset as ds

    fs = pafs.S3FileSystem(endpoint_override=s3.env["AWS_ENDPOINT_URL"], access_key="testing", secret_key="testing",
                           region="us-east-1")
    table = ds.dataset(f"{s3.bucket}/q", filesystem=fs, format="parquet", partitioning="hive").to_table().to_pylist()
    assert len(table) == 11
    for r in table:
        assert f"q/{r['classifiers_artifact']}" in keys
        assert (r["gnime_artifact"] == "") == (r["defense"] == "none")
        assert r["gnime_artifact"] == "" or f"q/{r['gnime_artifact']}" in keys
    # trials ran with GPU fractions on the workers
    import pyarrow.csv as pacsv

    with fs.open_input_stream(f"{s3.bucket}/q/_trials/quickstart.csv") as fh:
        trials = pacsv.read_csv(fh).to_pylist()
    assert len(trials) == 2 and all(t["status"] == "finished" and t["trial_gpu_assigned"] == 0.25 for t in trials)

    again = _quickstart(cluster, f"s3://{s3.bucket}/q", cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(resuming)" in again.stdout and _row_keys(s3, "q/") == rows


def test_cell_reproduced_from_the_bucket_without_retraining(cluster, s3, tmp_path):
    """`gnime-ray cell` with a fresh cache (another machine) fetches f, f_E, the maps and the trial's
    GNIME from the bucket; its metrics equal the trial's row (both on CPU with one thread)."""
    import pyarrow.dataset as ds

    fs = pafs.S3FileSystem(endpoint_override=s3.env["AWS_ENDPOINT_URL"], access_key="testing", secret_key="testing",
                           region="us-east-1")
    rows = ds.dataset(f"{s3.bucket}/q/study=quickstart", filesystem=fs, format="parquet",
                      partitioning="hive").to_table().to_pylist()
    row = next(r for r in rows if r["defense"] == "gnime")
    fresh = tmp_path / "laptop-cache"
    proc = _run(cluster, ["-m", "gnime_ray.cli", "cell", "--dataset", "digits", "--preset", "smoke", "--explainer",
                          "lrp", "--defense", "gnime", "--attack-seed", "0", "--lambda", repr(row["lambda"]), "--width",
                          repr(row["ng_width"]), "--gamma", repr(row["gamma"]), "--out", f"s3://{s3.bucket}/q",
                          "--study", "reproduced", "--cache-dir", str(fresh)], fresh, OMP_NUM_THREADS="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"artifacts: fetched {row['gnime_artifact']}" in proc.stdout
    assert "training on" not in proc.stdout and "training f and f_E" not in proc.stdout
    printed = dict(line.split(None, 1) for line in proc.stdout.splitlines() if re.match(r"^(ssim|mse|tca) ", line))
    for metric in ("ssim", "mse", "tca"):
        assert float(printed[metric]) == pytest.approx(row[metric], rel=1e-5, abs=1e-6)


def test_a_script_on_a_node_of_the_cluster_joins_it_without_an_address(cluster):
    """What `ray submit` relies on: on a machine where `ray start` ran (its address recorded in Ray's
    temp folder), a script without --address joins that cluster instead of starting its own."""
    probe = "from gnime_ray.tune import connect; print('STARTED_HERE', connect(log=print))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env=cluster.driver_env(RAY_TMPDIR=str(cluster.tmp_root)))
    assert "STARTED_HERE False" in proc.stdout and "connected to the cluster at" in proc.stdout, proc.stderr[-2000:]


def test_data_missing_on_a_worker_is_refused(cluster, tmp_path):
    data = cluster.root_private[2]
    write_celeba_official(data, {i: 8 for i in range(1, 7)})  # on the driver's disk only
    proc = _run(cluster, ["studies/celeba_lambda.py", "--preset", "smoke", "--address", cluster.address,
                          "--data-root", str(data), "--out", str(tmp_path / "out")], tmp_path / "cache")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "node " in err[0] and str(data) in err[0] and "prepare:" not in proc.stdout


LOSS_DRIVER = textwrap.dedent("""
    import sys
    from gnime_ray.config import get_preset
    from gnime_ray.tune import StudySpec, connect, run_study
    from gnime_ray.tune.placement import Placement
    connect(sys.argv[1])
    spec = StudySpec(name="loss", dataset="digits", out=sys.argv[2], preset=get_preset("smoke", gnime_epochs=600),
                     attack_seeds=2, num_samples=2, cache_dir=sys.argv[3])
    result = run_study(spec, Placement(max_concurrent_trials=2, attackers_per_trial=1, checkpoint_every=50,
                                       use_gpu=True))
    print("TRIALS", len(result["trials"]), "ROWS", len(result["rows"]))
""")


def test_a_worker_node_lost_mid_trial_costs_no_row(cluster, s3, tmp_path):
    cluster.add_worker(num_cpus=2, num_gpus=1, private=cluster.root_private)
    script = tmp_path / "driver.py"
    script.write_text(LOSS_DRIVER)
    cache = cluster.root_private[1]
    proc = subprocess.Popen([sys.executable, str(script), cluster.address, f"s3://{s3.bucket}/loss", str(cache)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=cluster.driver_env(GNIME_RAY_CACHE=str(cache)))
    lines, killed = [], None
    deadline = time.time() + 900
    for line in proc.stdout:
        lines.append(line)
        hit = re.search(r"trial (\w+): GNIME epoch (\d+)/600", line)
        if killed is None and hit and int(hit.group(2)) >= 120:  # after its first checkpoints
            node = re.search(r"trial %s: running on .*node (\w+)\)" % hit.group(1), "".join(lines))
            killed = cluster.node(node.group(1))
            killed.kill()  # the node's raylet and workers, as a lost spot instance
        if time.time() > deadline:
            proc.kill()
            break
    proc.wait(timeout=60)
    text = "".join(lines)
    assert killed is not None, text[-3000:]
    assert proc.returncode == 0, text[-4000:]
    assert "Tune restarts it from its last checkpoint" in text, text[-4000:]  # the lost trial was restored
    assert "TRIALS 2 ROWS 8" in text, text[-3000:]
    keys = _row_keys(s3, "loss/")
    assert len(keys) == 2 * 2 + 2 * 2  # baselines (PredMI, ExpMI) x 2 seeds + 2 trials x 2 seeds, once each
