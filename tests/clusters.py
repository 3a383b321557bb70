"""Multi-node Ray clusters and an S3 server on this machine, for the cluster tests.

- Every node is a ``ray start --block`` in its own process session; stopping a node (or the whole
  cluster) kills that process group by its id, so nothing of another Ray instance on the machine
  is touched (no ``ray stop``).
- A worker can have private disks: its raylet starts inside its own mount namespace
  (``unshare -m``) with a tmpfs mounted over the given folders, so it cannot see what the driver
  writes there (a cluster whose nodes do not share a filesystem).
- The head may run Ray's fake autoscaler (``fake_multinode`` provider) with given node types: GPU
  worker nodes are added on demand, as on a cloud.
- Head, workers and drivers share one ``RAY_AUTH_MODE`` and token, and the head has its own
  ``--temp-dir``, so ``/tmp/ray/ray_current_cluster`` (what other scripts on the machine attach
  to) is never written.
- ``S3Server`` runs moto's server on 127.0.0.1 (a real S3 API over HTTP) with test keys.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_unshare() -> bool:
    """Whether this process may make mount namespaces and mount tmpfs (root, not refused)."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt && umount /mnt"],
                           capture_output=True)
    return probe.returncode == 0


def _wait_for(predicate, timeout: float, what: str, log: Optional[Path] = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")


class Node:
    def __init__(self, name: str, proc: subprocess.Popen, log: Path):
        self.name, self.proc, self.log = name, proc, log
        self.node_id = ""  # Ray's id of the node, once it has joined

    def kill(self) -> None:
        """Kill every process of this node (SIGKILL to its process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


class LocalCluster:
    """A Ray cluster of several nodes on this machine (module docstring)."""

    def __init__(self, root: Path, env: Optional[dict] = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {}), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                    "PYTHONUNBUFFERED": "1"}
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: list[Node] = []
        # Ray's session folder holds Unix sockets, whose paths may not exceed 107 bytes: keep it short
        # (RAY_TMPDIR=tmp_root makes a driver on this machine find the cluster, as `ray start` records it)
        self.tmp_root = Path(tempfile.mkdtemp(prefix="gr-", dir="/tmp"))
        self.temp_dir = self.tmp_root / "ray"

    def _start(self, name: str, cmd: list[str], env: dict) -> Node:
        log = self.root / f"{name}.log"
        proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        node = Node(name, proc, log)
        self.nodes.append(node)
        _wait_for(lambda: "Ray runtime started" in log.read_text() or proc.poll() is not None, 90, f"{name} to start",
                  log)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        return node

    def start_head(self, num_cpus: float = 0, autoscaler_node_types: Optional[dict] = None) -> Node:
        cmd = [str(BIN / "ray"), "start", "--head", f"--port={self.port}", f"--num-cpus={num_cpus}",
               f"--temp-dir={self.temp_dir}", "--include-dashboard=false", "--block"]
        env = dict(self.env)
        if autoscaler_node_types is not None:
            config = self.root / "autoscaler.json"
            config.write_text(json.dumps(fake_autoscaler_config(self.address, num_cpus, autoscaler_node_types)))
            cmd.append(f"--autoscaling-config={config}")
            env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
        return self._start("head", cmd, env)

    def add_worker(self, num_cpus: float = 2, num_gpus: float = 1, private: tuple[Path, ...] = ()) -> Node:
        """A worker node; ``private``: folders it gets its own empty tmpfs over."""
        name = f"worker{len(self.nodes)}"
        before = set(self.alive_ids())
        start = [str(BIN / "ray"), "start", f"--address={self.address}", f"--num-cpus={num_cpus}",
                 f"--num-gpus={num_gpus}", "--block"]
        if private:
            mounts = " && ".join(f"mkdir -p '{p}' && mount -t tmpfs tmpfs '{p}'" for p in private)
            cmd = ["unshare", "-m", "sh", "-c", f"{mounts} && exec {' '.join(start)}"]
        else:
            cmd = start
        node = self._start(name, cmd, self.env)
        _wait_for(lambda: set(self.alive_ids()) - before, 60, f"{name} to join")
        node.node_id = (set(self.alive_ids()) - before).pop()
        return node

    def driver_env(self, **extra: str) -> dict:
        """The environment of a driver joining this cluster."""
        return {**self.env, **extra}

    def alive_ids(self) -> list[str]:
        """Ray's ids of the alive nodes (asked by a short-lived driver). The ids come on one marked
        line: the driver's stdout may also carry the cluster's log lines (the autoscaler's, for one)."""
        probe = "import ray; ray.init(address='%s', logging_level='ERROR', log_to_driver=False); " \
                "print('ALIVE:', *(n['NodeID'] for n in ray.nodes() if n['Alive']))" % self.address
        out = subprocess.run([sys.executable, "-c", probe], env=self.env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            return []
        marked = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("ALIVE:")]
        return marked[-1] if marked else []

    def wait_for_nodes(self, n: int, timeout: float = 90) -> None:
        _wait_for(lambda: len(self.alive_ids()) >= n, timeout, f"{n} alive nodes")

    def node(self, node_id_prefix: str) -> Node:
        return next(n for n in self.nodes if n.node_id.startswith(node_id_prefix))

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
        self.nodes.clear()
        shutil.rmtree(self.tmp_root, ignore_errors=True)


def fake_autoscaler_config(gcs_address: str, head_cpus: float, node_types: dict) -> dict:
    """An autoscaling config for Ray's fake multi-node provider (its defaults file is not in Ray's
    wheel, so every field is given): the head with ``head_cpus`` and ``node_types`` as workers."""
    types = {"ray.head.default": {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0}}
    types.update(node_types)
    return {"cluster_name": "fake", "max_workers": sum(t.get("max_workers", 0) for t in node_types.values()),
            "upscaling_speed": 1.0, "idle_timeout_minutes": 5,
            "provider": {"type": "fake_multinode", "gcs_address": gcs_address, "disable_node_updaters": True,
                         "disable_launch_config_check": True},
            "auth": {"ssh_user": "ubuntu"}, "available_node_types": types, "head_node_type": "ray.head.default",
            "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
            "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
            "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
            "worker_start_ray_commands": []}


class S3Server:
    """moto's S3 server on 127.0.0.1, with a bucket; ``env`` is what every process needs."""

    def __init__(self, root: Path, bucket: str = "gnime"):
        self.port = free_port()
        self.bucket = bucket
        self.log = Path(root) / "moto.log"
        self.env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}", "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
        self.proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        _wait_for(up, 30, "the S3 server", self.log)
        self.client().create_bucket(Bucket=bucket)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
