"""Resources of a trial: one placement group per trial, ``[trial bundle, attack bundle]``.

A trial's GNIME training uses the first bundle; the second holds its attack pool (tune/attack_pool.py):
one process running k = ``attackers_per_trial`` attackers at once, so it asks for k attackers'
resources (k x ``cpus_per_task`` CPUs and, on a GPU study, k x ``attacker_gpu`` of one GPU).
Extra attackers queue in the pool. On a GPU study the trial asks for a GPU fraction (default 0.25)
and caps its CUDA memory to it, the pool to the sum of its attackers' fractions (default 2 x 0.25);
a CPU-only study's bundles ask for CPUs only.

An attack pool's process allocates with jemalloc (``pool_allocator="jemalloc"``, the default; the
copy Ray ships as ray/core/libjemalloc.so, preloaded through the pool's runtime_env with
``MALLOC_CONF=JEMALLOC_CONF``): its threads' attackers each free and reallocate batch-sized
buffers, and glibc's malloc keeps what a thread freed in that thread's arena, so the process grows
by every thread's high-water mark. Measured on one 2-core AVX2 machine only (2026-11-29), four
CelebA-size attackers as threads of one process (3,000 images, the smoke attacker budget): glibc
+290 MB per extra attacker, jemalloc +205 MB in 12% less wall time; at full size
(benchmarks/bench_scale.py, docs/cluster.md "At full size") +0.074 GB against glibc's 0.3 GB. In the
configuration, ``oversize_threshold:0`` keeps large tensors in the thread's arena instead of
jemalloc's immediately purged one (which made every large allocation fault its pages in again:
40 to 60% slower than glibc), and the decay settings return freed pages after about two seconds,
from a background thread. The allocator changes no number. ``pool_allocator="system"`` (and any
machine without that file, e.g. macOS) keeps the C library's malloc.

Whether a study uses GPUs is decided once, before any placement group (``decide_gpu``), and every
bundle and task of the study follows that decision: an autoscaling cluster may have no GPU node
when the study starts, and it is the study's GPU requests that make the autoscaler add them.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import ray
import torch
from ray.tune import PlacementGroupFactory

from ..pipeline.device import pick_device
from .placement import ALLOCATORS, Placement

JEMALLOC_SO = os.path.join(os.path.dirname(ray.__file__), "core", "libjemalloc.so")
JEMALLOC_CONF = "oversize_threshold:0,background_thread:true,dirty_decay_ms:2000,muzzy_decay_ms:0"


def cluster_gpus() -> float:
    """GPUs the connected cluster has right now (0 on a CPU cluster, or an autoscaling one whose GPU
    nodes have not started yet)."""
    return float(ray.cluster_resources().get("GPU", 0))


def decide_gpu(cpu_only: bool, started_locally: bool, log: Callable[[str], None]) -> bool:
    """The study's one GPU decision. ``--cpu-only`` says no; a private local Ray uses GPUs when
    this machine has them; on a cluster the study asks for GPU fractions, which an autoscaling
    cluster answers by adding GPU nodes."""
    if cpu_only:
        log("resources: CPU only (--cpu-only)")
        return False
    gpus = cluster_gpus()
    if started_locally:
        log(f"resources: {'GPU fractions' if gpus else 'CPU only'} ({gpus:g} GPUs on this machine)")
        return gpus > 0
    if gpus:
        log(f"resources: GPU fractions ({gpus:g} GPUs in the cluster now)")
    else:
        log("resources: GPU fractions, though the cluster has no GPU yet: an autoscaling cluster adds GPU nodes for "
            "them (on a cluster without GPUs, pass --cpu-only)")
    return True


# what `ray up` leaves on the head: the cluster's own configuration, with the node types the autoscaler may add
BOOTSTRAP_CONFIG = Path.home() / "ray_bootstrap_config.yaml"


def autoscaler_gpus(config: Path = BOOTSTRAP_CONFIG) -> float:
    """The GPUs the autoscaler may bring up: each node type's GPUs x its max_workers, from the
    configuration ``ray up`` copied to the head (0 where there is none: a laptop, a ``ray start``
    cluster)."""
    if not config.is_file():
        return 0.0
    import yaml

    try:
        types = (yaml.safe_load(config.read_text()) or {}).get("available_node_types", {}) or {}
    except yaml.YAMLError:
        return 0.0
    return float(sum((t.get("resources", {}) or {}).get("GPU", 0) * t.get("max_workers", 0) for t in types.values()))


def concurrent_trials(placement: Placement, log: Callable[[str], None]) -> int:
    """Trials at once when ``--max-concurrent`` is not given: as many as the cluster's GPUs hold
    (those it has and those its autoscaler may add), a trial taking its own fraction and its attack
    pool's; 2 on a CPU study or where no GPU is known."""
    gpus = max(cluster_gpus(), autoscaler_gpus())
    if not placement.use_gpu or gpus <= 0:
        return 2
    per_trial = placement.trial_gpu + placement.attackers_per_trial * placement.attacker_gpu
    per_gpu = max(1, int(1 / per_trial + 1e-9)) if per_trial <= 1 else 1
    n = max(1, int(gpus) * per_gpu)
    log(f"resources: up to {n} trials at once ({gpus:g} GPUs, {per_gpu} trial(s) of {per_trial:g} GPU each per GPU; "
        f"--max-concurrent to change)")
    return n


def pool_resources(attackers: int, attacker_gpu: float, cpus: float, use_gpu: bool) -> dict[str, float]:
    """The resources of an attack pool of ``attackers`` attackers (their sum; GPU rounded to Ray's
    precision)."""
    if use_gpu and attackers * attacker_gpu > 1 + 1e-9:
        raise ValueError(f"attackers_per_trial x attacker_gpu must be at most 1 (a trial's attackers share one "
                         f"process on one GPU), got {attackers} x {attacker_gpu:g}")
    return {"CPU": attackers * cpus, **({"GPU": round(attackers * attacker_gpu, 4)} if use_gpu else {})}


def trial_resources(trial_gpu: float, attacker_gpu: float, attackers: int, cpus: float,
                    use_gpu: bool) -> PlacementGroupFactory:
    """The placement group factory of one trial: its own bundle and its attack pool's."""
    for name, v in (("trial_gpu", trial_gpu), ("attacker_gpu", attacker_gpu)):
        if not (math.isfinite(v) and 0 < v <= 1):
            raise ValueError(f"{name} must be a finite number in (0, 1], got {v!r}")
    if attackers < 1:
        raise ValueError(f"attackers must be >= 1, got {attackers}")
    trial = {"CPU": cpus, **({"GPU": trial_gpu} if use_gpu else {})}
    return PlacementGroupFactory([trial, pool_resources(attackers, attacker_gpu, cpus, use_gpu)])


def pool_runtime_env(allocator: str) -> dict:
    """The runtime_env of an attack pool's process: jemalloc preloaded (module docstring) when
    ``allocator`` is "jemalloc" and this Ray has the library; {} for the C library's malloc. The
    path is this machine's: a cluster's nodes run the same installation (cluster.yaml); on a node
    where the file is missing the loader ignores it with a warning and the pool uses malloc."""
    if allocator not in ALLOCATORS:
        raise ValueError(f"pool_allocator must be one of {', '.join(ALLOCATORS)}, got {allocator!r}")
    if allocator == "system" or not os.path.exists(JEMALLOC_SO):
        return {}
    preload = f"{JEMALLOC_SO}:${{LD_PRELOAD}}"  # after any preload the node already has
    return {"env_vars": {"LD_PRELOAD": preload, "MALLOC_CONF": JEMALLOC_CONF}}


def pool_options(attackers: int, attacker_gpu: float, cpus: float, allocator: str = "jemalloc") -> dict:
    """Ray actor options of an attack pool (tune/attack_pool.py) of ``attackers`` threads, each with the
    resources of one attacker (``attacker_gpu`` 0: a CPU pool), in a process whose allocator is
    ``allocator`` (``pool_runtime_env``). A pool lost with its node is restarted and its
    unfinished attackers run again (a row is written exactly once)."""
    res = pool_resources(attackers, attacker_gpu, cpus, attacker_gpu > 0)
    return {"num_cpus": res["CPU"], "num_gpus": res.get("GPU", 0), "max_concurrency": attackers,
            "max_restarts": 3, "max_task_retries": 3, "runtime_env": pool_runtime_env(allocator)}


def cap_gpu_memory(fraction: float) -> None:
    """Limit this process's CUDA allocations to ``fraction`` of the GPU (no-op without CUDA)."""
    if torch.cuda.is_available() and 0 < fraction < 1:
        torch.cuda.set_per_process_memory_fraction(fraction)


def device_for(gpu_fraction: float) -> str:
    """The torch device type of a Ray task given its GPU request: pipeline/device.py's one rule,
    told whether Ray gave this task a GPU."""
    return pick_device(gpu_granted=gpu_fraction > 0 and bool(ray.get_gpu_ids())).type


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
