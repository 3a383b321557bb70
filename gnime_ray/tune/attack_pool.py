"""Attack pools: where a study's attackers run.

An attack pool (``AttackPool``) is one Ray actor per trial that runs up to ``attackers_per_trial``
attackers at once, one thread each; the study's baselines run as tasks of that many attackers
each (``attack_batch``). What a process costs whatever it does (torch and gnime_ray imported:
about 0.3 GB of private memory per process here; on a GPU also a CUDA context) is then paid once
per pool, not once per attacker, and the pool's attackers share one copy of f, f_E and the logits;
the maps and images are memory-mapped files, shared by every process of the node anyway. An
attacker in a thread computes exactly what it computes alone (every random draw, network
initialisation included, comes from a generator the attacker owns, models/initialisation.py; none from
torch's global generator; each thread runs torch on
``cpus_per_task`` threads, as a task of that many CPUs would; on CUDA each attacker has its own
stream). ``run_attackers`` is the scheduler a trial feeds its pool with: the trial's own process
attacks too, so no bundle idles while the attackers run.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

import ray
import torch
from ray import tune

from .. import TrainingDiverged
from ..cellspec import CellSpec
from ..pipeline.cell import run_cell
from ..store.rows import read_row, row_exists, row_identity, write_rows
from ..study.spec import StudySpec
from .nodes import NodeCheck, ensure_node, node_name
from .placement import Placement
from .resources import cap_gpu_memory, device_for, pool_options
from .tasks import prepared


def attack_cell(cell: dict, study: StudySpec, check: Optional[NodeCheck], trial: str, device: str) -> dict:
    """One attacker, in this process on ``device``: reuse its row if it exists, else run the cell
    and write the row. Returns the metrics the trial's objective needs, or ``status`` 'diverged'
    (and no row)."""
    ensure_node(check)
    spec = CellSpec(**cell)
    pg = ray.util.get_current_placement_group()
    out = {"placement_group": pg.id.hex() if pg is not None else "", "defense": spec.defense, "gamma": spec.gamma,
           "match": spec.match, "node": node_name()}
    where = row_identity(study.name, spec.dataset, spec.explainer, spec.key(), spec.seed, float(spec.lam),
                         float(spec.width), spec.gamma)
    if row_exists(study.out, where):
        return {**read_row(study.out, where), **out, "skipped": True, "status": "finished"}
    try:
        row = run_cell(spec, study.preset, prep=prepared(study, device), device=device, study=study.name, trial=trial,
                       cache_dir=study.cache_dir, data_root=study.data_root)
    except TrainingDiverged as exc:
        return {**out, "status": "diverged", "error": str(exc), "skipped": False}
    write_rows([row], study.out)
    return {**row, **out, "skipped": False, "status": "finished"}


class AttackPool:
    """A Ray actor that runs up to ``size`` attackers at once, one thread each (module docstring).
    Its resources are ``size`` attackers' (``pool_options``: its process allocates with jemalloc
    unless its placement says ``pool_allocator="system"``); it caps its CUDA memory to the sum of their
    GPU fractions and runs torch on ``cpus_per_task`` threads per attacker."""

    def __init__(self, study: StudySpec, placement: Placement, check: Optional[NodeCheck], size: int) -> None:
        ensure_node(check)
        self.study, self.check = study, check
        cap_gpu_memory(min(1.0, size * placement.gpu_attacker))
        self.device = device_for(placement.gpu_attacker)
        self.threads = max(1, int(placement.cpus_per_task))  # each attacker's share, as a task of its own
        prepared(study, self.device)  # f, f_E and the logits once, before any attacker's stream reads them
        if self.device == "cuda":
            torch.cuda.synchronize()

    def attack(self, cell: dict, trial: str) -> dict:
        # OpenMP's thread count is a per-thread setting: set in this thread, before its first operation
        # (a new thread starts from OMP_NUM_THREADS, which Ray sets to the whole pool's CPUs)
        torch.set_num_threads(self.threads)
        if self.device != "cuda":
            return attack_cell(cell, self.study, self.check, trial, self.device)
        return on_own_stream(lambda: attack_cell(cell, self.study, self.check, trial, self.device))


def on_own_stream(work: Callable[[], Any]) -> Any:
    """``work()`` on a CUDA stream of its own (an attack pool's thread: its kernels overlap the other
    threads'), synchronised before it returns."""
    with torch.cuda.stream(torch.cuda.Stream()):
        result = work()
        torch.cuda.current_stream().synchronize()
    return result


def start_pool(study: StudySpec, placement: Placement, check: Optional[NodeCheck], size: int, bundle: int):
    """A trial's ``AttackPool`` actor of ``size`` attackers, in bundle ``bundle`` of the trial's
    placement group (anywhere without one). It holds its resources until killed."""
    options = pool_options(size, placement.gpu_attacker, placement.cpus_per_task, placement.pool_allocator)
    pg = ray.util.get_current_placement_group()
    if pg is not None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=bundle)
    return ray.remote(AttackPool).options(**options).remote(study, placement, check, size)


def attack_batch(cells: list[dict], study: StudySpec, placement: Placement, check: Optional[NodeCheck],
                 trial: str) -> list[dict]:
    """A fixed list of cells, all at once in one process (an ``AttackPool`` of ``len(cells)``
    threads): run as a Ray task with ``pool_options(len(cells), ...)``'s resources, which it frees
    when it ends (the study's baselines)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = AttackPool(study, placement, check, len(cells))
    with ThreadPoolExecutor(len(cells), thread_name_prefix="attacker") as threads:
        return list(threads.map(lambda c: pool.attack(c, trial), cells))


def run_attackers(cells: list[dict], study: StudySpec, placement: Placement, check: Optional[NodeCheck], trial_id: str,
                  device: str, pending: dict, common: dict, gnime_seconds: float) -> tuple[list[dict], float, float]:
    """Attack the trial's GNIME with every cell: ``attackers_per_trial`` attackers at once in the
    trial's attack pool (its second bundle) while the trial process, whose own bundle would
    otherwise idle, runs cells itself; so a placement group of 1 + 1 bundles runs k + 1 attackers
    at a time. Reports progress to Tune. Returns the results in the order of ``cells``, the attack
    phase's wall seconds and the seconds the trial spent attacking itself."""
    k = placement.attackers_per_trial
    pool = start_pool(study, placement, check, k, bundle=1) if len(cells) > 1 else None
    queue = list(enumerate(cells))
    in_flight: dict[Any, int] = {}
    done: dict[int, dict] = {}
    t0, local = time.perf_counter(), 0.0

    def report() -> None:
        tune.report({**pending, **common, "stage": "attack", "attackers": len(cells), "attackers_done": len(done),
                     "gnime_seconds": gnime_seconds})

    def launch() -> None:  # the last cell waiting is always left to the trial itself
        while pool is not None and len(queue) > 1 and len(in_flight) < k:
            i, cell = queue.pop()
            in_flight[pool.attack.remote(cell, trial_id)] = i

    try:
        launch()
        report()
        while queue or in_flight:
            if queue:  # this bundle's share of the work
                i, cell = queue.pop(0)
                t = time.perf_counter()
                done[i] = attack_cell(cell, study, check, trial_id, device)
                local += time.perf_counter() - t
                report()
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0 if queue else None) if in_flight else ([], [])
            for ref in ready:
                done[in_flight.pop(ref)] = ray.get(ref)
                report()
            launch()
    finally:
        if pool is not None:
            ray.kill(pool)
    return [done[i] for i in range(len(cells))], time.perf_counter() - t0, local
