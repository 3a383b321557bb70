"""Resources of a trial: one placement group per trial, ``[trial bundle] + [attacker bundle] * k``.

A trial's GNIME training uses the first bundle; its attacker tasks are scheduled into the other k
bundles of the same placement group (extra attackers queue for a free bundle). Where the cluster
has GPUs, each bundle asks for a GPU fraction (default 0.25, four trials or attackers per GPU) and
the process caps its CUDA memory to the same fraction; without GPUs the bundles are CPU-only.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Optional

import ray
import torch
from ray.tune import PlacementGroupFactory


def cluster_has_gpus() -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


def trial_resources(trial_gpu: float = 0.25, attacker_gpu: float = 0.25, attackers: int = 2, cpus: float = 1,
                    use_gpu: Optional[bool] = None) -> PlacementGroupFactory:
    """The placement group factory of one trial (``use_gpu`` None: whether the cluster has GPUs)."""
    for name, v in (("trial_gpu", trial_gpu), ("attacker_gpu", attacker_gpu)):
        if not 0 < v <= 1:
            raise ValueError(f"{name} must be in (0, 1], got {v!r}")
    if attackers < 1:
        raise ValueError(f"attackers must be >= 1, got {attackers}")
    gpu = cluster_has_gpus() if use_gpu is None else use_gpu
    trial = {"CPU": cpus, **({"GPU": trial_gpu} if gpu else {})}
    attacker = {"CPU": cpus, **({"GPU": attacker_gpu} if gpu else {})}
    return PlacementGroupFactory([trial] + [attacker] * attackers)


def task_options(attacker_gpu: float, cpus: float, use_gpu: bool) -> dict:
    """Ray task options of an attacker inside its trial's placement group (child tasks of a
    trial are captured by the trial's group)."""
    return {"num_cpus": cpus, "num_gpus": attacker_gpu if use_gpu else 0, "max_retries": 3}


def cap_gpu_memory(fraction: float) -> None:
    """Limit this process's CUDA allocations to ``fraction`` of the GPU (no-op without CUDA)."""
    if torch.cuda.is_available() and 0 < fraction < 1:
        torch.cuda.set_per_process_memory_fraction(fraction)


def device_for(gpu_fraction: float) -> str:
    """The torch device of a task given its GPU request: CUDA only where Ray gave it a GPU and
    torch sees one (a test cluster may fake GPUs on a CPU machine)."""
    return "cuda" if gpu_fraction > 0 and ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"


@contextmanager
def node_cpus() -> Iterator[int]:
    """Within the block, torch uses every CPU Ray knows on this node (at most the machine's cores):
    for a task that runs while nothing else can (prepare: every trial and attacker waits for it).
    Ray starts a worker with fractional CPUs on one thread otherwise. The thread count is restored
    on exit, since Ray reuses the worker process for later tasks."""
    node = ray.get_runtime_context().get_node_id()
    cpus = next((n["Resources"].get("CPU", 1) for n in ray.nodes() if n["NodeID"] == node), 1)
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(int(cpus), len(os.sched_getaffinity(0)))))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
