"""cluster.yaml's own topology under Ray's fake autoscaler: a head with no CPU and GPU worker nodes
that start only when the study asks for GPUs. The study decides "GPU fractions" once, before any
GPU node exists, and its requests are what bring the GPU nodes up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
import yaml

from clusters import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a Ray cluster under the fake autoscaler
# what a cloud reports for the instance types of cluster.yaml (the fake provider detects nothing)
INSTANCE_RESOURCES = {"g5.2xlarge": {"CPU": 8, "GPU": 1}}


def fake_node_types(cluster_file: Path, max_workers: int = 2) -> tuple[dict, dict]:
    """(head resources, worker node types) of a cluster file, as the fake provider takes them."""
    config = yaml.safe_load(cluster_file.read_text())
    head = config["available_node_types"][config["head_node_type"]]["resources"]
    workers = {}
    for name, node in config["available_node_types"].items():
        if name == config["head_node_type"]:
            continue
        itype = node["node_config"]["InstanceType"]
        assert itype in INSTANCE_RESOURCES, f"add {itype}'s resources to INSTANCE_RESOURCES"
        workers[name] = {"resources": {**INSTANCE_RESOURCES[itype], **node.get("resources", {})}, "node_config": {},
                         "min_workers": node.get("min_workers", 0), "max_workers": min(node["max_workers"], max_workers)}
    return head, workers


def test_quickstart_on_cluster_yaml_topology_gets_gpus_from_the_autoscaler(tmp_path):
    head, workers = fake_node_types(ROOT / "cluster.yaml")
    assert head == {"CPU": 0} and all(w["min_workers"] == 0 for w in workers.values())
    cluster = LocalCluster(tmp_path / "nodes")
    try:
        cluster.start_head(num_cpus=head["CPU"], autoscaler_node_types=workers)
        assert len(cluster.alive_ids()) == 1  # no GPU node yet
        out = tmp_path / "out"
        proc = subprocess.run([sys.executable, "studies/quickstart.py", "--dataset", "digits", "--preset", "smoke", "--address",
                               cluster.address, "--num-samples", "2", "--attack-seeds", "1", "--front-points", "1",
                               "--gnime-seeds", "1", "--out", str(out)],
                              cwd=ROOT, capture_output=True, text=True, timeout=900,
                              env=cluster.driver_env(GNIME_RAY_CACHE=str(tmp_path / "cache")))
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
        assert "the cluster has no GPU yet" in proc.stdout
        trials = pacsv.read_csv(out / "_trials" / "quickstart.csv").to_pylist()
        assert len(trials) == 2
        assert all(t["status"] == "finished" and t["trial_gpu_assigned"] == 0.25 for t in trials)
        assert len(cluster.alive_ids()) >= 2  # the autoscaler added GPU nodes
    finally:
        cluster.stop()
