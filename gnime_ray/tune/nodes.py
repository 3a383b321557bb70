"""Checks that every node can do a study's work, made before any training.

On a cluster of more than one node, the results root (rows, Tune's state, the artifacts) must be
storage every node sees: ``s3://``, ``gs://`` or a path every node mounts (EFS, NFS). A node-local
folder would scatter the rows over the nodes' disks and Tune refuses it. So before any work the
driver writes a marker with a fresh token under ``OUT/_cluster/<study>.json``, and a task on every
alive node reads it back and also locates the dataset under ``--data-root`` there (CelebA and the
other downloaded datasets must be on every node). Any node that fails stops the study with one
line naming the node and the path, and the marker is removed again. A node that joins later (an
autoscaler adds GPU nodes on demand) is checked by the first task of the study that runs there.
"""

from __future__ import annotations

import datetime
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Callable, Optional

import pyarrow.fs as pafs
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .. import GnimeRayError
from ..cachedir import resolve_cache_dir
from ..data import locate_dataset
from ..store.root import delete_file, is_uri, read_json, resolve_out, write_json

# how long every node has to answer the check: a worker's first task starts a Python process that
# imports torch, which on a loaded small machine (or a node still pulling its image) takes minutes
TIMEOUT_ENV = "GNIME_RAY_NODE_CHECK_TIMEOUT"


def check_timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "300")
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise GnimeRayError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class NodeCheck:
    """What a node must see: the marker (``out``, ``relpath``, ``token``), the datasets, and a
    cache it can write."""

    out: str
    relpath: str
    token: str
    datasets: tuple[str, ...]
    data_root: Optional[str]
    cache_dir: Optional[str]


def node_name() -> str:
    """This node as a person can find it: host name, IP and the start of Ray's node id."""
    try:
        node_id = ray.get_runtime_context().get_node_id()[:8]
    except Exception:  # outside Ray
        node_id = "-"
    return f"{socket.gethostname()} ({ray.util.get_node_ip_address()}, node {node_id})"


def node_problem(check: NodeCheck) -> Optional[str]:
    """Why this node cannot do the study's work (one line), or None."""
    where = f"{check.out}/{check.relpath}"
    try:
        marker = read_json(check.out, check.relpath)
    except Exception as exc:  # OSError, credentials, a filesystem pyarrow cannot load on this node
        return f"node {node_name()} cannot read the results root {check.out}: {str(exc).splitlines()[0]}"
    if marker is None or marker.get("token") != check.token:
        hint = ("every node needs access to the bucket (credentials, endpoint)" if is_uri(check.out) else
                "on a cluster of more than one node --out must be storage every node sees: s3://..., gs://..., "
                "or a path every node mounts (EFS/NFS)")
        return f"node {node_name()} cannot see the results root: {where} is missing there; {hint}"
    try:
        for name in check.datasets:
            locate_dataset(name, check.data_root)
        resolve_cache_dir(check.cache_dir)
    except GnimeRayError as exc:
        return f"node {node_name()}: {exc}"
    return None


_passed: set[NodeCheck] = set()


def ensure_node(check: Optional[NodeCheck]) -> None:
    """Raise GnimeRayError (one line) if this node cannot do the study's work; checked once per
    process (the first task of a study on a node that joined after the study started)."""
    if check is None or check in _passed:
        return
    problem = node_problem(check)
    if problem:
        raise GnimeRayError(problem)
    _passed.add(check)


@ray.remote(num_cpus=0, max_retries=0)
def _check_task(check: NodeCheck) -> Optional[str]:
    return node_problem(check)


def check_nodes(study: str, out: str, datasets: tuple[str, ...], data_root: Optional[str], cache_dir: Optional[str],
                log: Callable[[str], None]) -> NodeCheck:
    """Write the marker, check every alive node; returns the check for later nodes. Raises
    GnimeRayError naming the first node that failed (the marker removed again)."""
    timeout = check_timeout()
    relpath = f"_cluster/{study}.json"
    check = NodeCheck(out, relpath, uuid.uuid4().hex, datasets, data_root, cache_dir)
    fs, root = resolve_out(out)
    created = [p for p in (root, f"{root}/_cluster") if fs.get_file_info(p).type == pafs.FileType.NotFound]

    def undo() -> None:  # a refused study leaves nothing behind
        delete_file(out, relpath)
        for folder in reversed(created):
            if not fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
                fs.delete_dir(folder)

    write_json(out, relpath, {"token": check.token, "study": study, "driver": socket.gethostname(),
                              "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [_check_task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(check)
            for n in nodes]
    try:
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        problems = [p for p in ray.get(ready) if p]
        if pending:
            problems.append(f"{len(pending)} of {len(nodes)} nodes did not answer the storage check within "
                            f"{timeout:.0f} s (set {TIMEOUT_ENV} to wait longer)")
    except BaseException:
        undo()
        raise
    if problems:
        undo()
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise GnimeRayError(problems[0] + more)
    log(f"nodes: {'all ' + str(len(nodes)) + ' nodes see' if len(nodes) != 1 else 'the one node sees'} {out}"
        + (f" and the data under {data_root}" if data_root else ""))
    return check
