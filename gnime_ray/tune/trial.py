"""What runs on the workers: prepare once, the GNIME trial (Tune function trainable), attack pools.

Nothing large travels through Ray's object store. Every process loads prepare's outputs (f, f_E,
logits, maps) and the trained GNIMEs from its node's cache, and a node whose cache lacks them
fetches them from the artifact store under the results root (store/artifacts.py), where the
process that produced them published them. The prepared inputs are kept per worker process
(Ray reuses workers), so a node loads them once per process, not once per task.

Attackers run in attack pools (``AttackPool``): one Ray actor per trial that runs up to
``attackers_per_trial`` attackers at once, one thread each (the study's baselines: tasks of that
many attackers each, ``attack_batch``). What a
process costs whatever it does (torch and gnime_ray imported: about 0.3 GB of private memory per
process here; on a GPU also a CUDA context) is then paid once per pool, not once per attacker,
and the pool's attackers share one copy of f, f_E and the logits; the maps and images are
memory-mapped files, shared by every process of the node anyway. An attacker in a thread computes
exactly what it computes alone (network initialisation holds the process's RNG lock,
seeding.py; every other draw has its own generator; each thread runs torch on
``cpus_per_task`` threads, as a task of that many CPUs would; on CUDA each attacker has its own
stream).

The trial reports every GNIME epoch's losses (with a checkpoint every ``checkpoint_every`` epochs,
from which a restored trial continues), then the attackers' progress, then its objective. Its own
bundle does attacker work too (``run_attackers``), so no bundle idles while the attackers run. Its
per-epoch reports carry worst-case placeholders for the searched metrics (Tune requires them in
every report; ``final`` False). A GNIME whose losses turn non-finite ends the trial with status
``diverged``, the worst objective and no attacker rows.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import ray
import torch
from ray import tune

from .. import TrainingDiverged
from ..config import CellSpec
from ..data import IMAGE_SHAPES
from ..defenses.gnime import train_gnime
from ..pipeline.defend import gnime_config, load_trained_gnime, save_trained_gnime
from ..pipeline.prepare import Prepared, prepare, prepare_aux
from ..pipeline.cell import run_cell
from ..store.parquet import read_row, row_exists, row_identity, write_rows
from .nodes import NodeCheck, ensure_node, node_name
from .resources import cap_gpu_memory, device_for, node_cpus, pool_options
from ..speed import choose, decide
from .spec import StudySpec

_prepared: dict[tuple, Prepared] = {}
_prepared_lock = threading.Lock()


def prepared(study: StudySpec, device: str) -> Prepared:
    """This process's prepared inputs of ``study`` (loaded from the node's cache or the
    artifact store; kept for the next task of the same study in this worker)."""
    key = (study.dataset, study.preset, study.study_seed, study.explainers, study.variant, study.cache_dir,
           study.data_root, study.out, device)
    with _prepared_lock:  # an attack pool's threads load them once
        if key not in _prepared:
            _prepared.clear()
            _prepared[key] = prepare(study.dataset, study.preset, study.study_seed, explainers=study.explainers,
                                     variant=study.variant, cache_dir=study.cache_dir, data_root=study.data_root,
                                     device=device, out=study.out)
        return _prepared[key]


def prepare_task(study: StudySpec, check: NodeCheck) -> dict:
    """Prepare once per study, on every CPU of its node (everything else waits for it), and
    publish the results as artifacts; with an auxiliary attacker dataset, query f with it once."""
    ensure_node(check)
    cap_gpu_memory(study.gpu_trial)
    device = device_for(study.gpu_trial)
    t0 = time.perf_counter()
    with node_cpus():
        prep = prepared(study, device)
        if study.aux_dataset != "same":
            prepare_aux(prep, study.aux_dataset, study.preset, study.study_seed, explainers=study.explainers,
                        variant=study.variant, cache_dir=study.cache_dir, data_root=study.data_root, device=device)
    return {"node": node_name(), "seconds": time.perf_counter() - t0, "from_cache": prep.from_cache,
            "accuracies": prep.accuracies, "images": len(prep.dataset)}


def speed_task(study: StudySpec, check: NodeCheck) -> dict:
    """The study's one speed decision (speed.py ``decide``), made on a node where its trials run,
    with the torch threads a trial's task has there, at the dataset's image shape and the networks'
    width; the driver records it and every process of the study follows it."""
    ensure_node(check)
    decision = decide("cpu", study.preset.memory_format, study.preset.bf16, shape=IMAGE_SHAPES[study.dataset],
                      width=study.preset.net_width, cache_dir=study.cache_dir)
    return {**decision, "node": node_name()}


def attack_cell(cell: dict, study: StudySpec, check: Optional[NodeCheck], trial: str, device: str) -> dict:
    """One attacker, in this process on ``device``: reuse its row if it exists, else run the cell
    and write the row. Returns the metrics the trial's objective needs, or ``status`` 'diverged'
    (and no row)."""
    ensure_node(check)
    spec = CellSpec(**cell)
    pg = ray.util.get_current_placement_group()
    out = {"placement_group": pg.id.hex() if pg is not None else "", "defense": spec.defense, "gamma": spec.gamma,
           "node": node_name()}
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
    unless the study says ``pool_allocator="system"``); it caps its CUDA memory to the sum of their
    GPU fractions and runs torch on ``cpus_per_task`` threads per attacker."""

    def __init__(self, study: StudySpec, check: Optional[NodeCheck], size: int) -> None:
        ensure_node(check)
        self.study, self.check = study, check
        cap_gpu_memory(min(1.0, size * study.gpu_attacker))
        self.device = device_for(study.gpu_attacker)
        self.threads = max(1, int(study.cpus_per_task))  # each attacker's share, as a task of its own
        prepared(study, self.device)  # f, f_E and the logits once, before any attacker's stream reads them
        if self.device == "cuda":
            torch.cuda.synchronize()

    def attack(self, cell: dict, trial: str) -> dict:
        # OpenMP's thread count is a per-thread setting: set in this thread, before its first operation
        # (a new thread starts from OMP_NUM_THREADS, which Ray sets to the whole pool's CPUs)
        torch.set_num_threads(self.threads)
        if self.device != "cuda":
            return attack_cell(cell, self.study, self.check, trial, self.device)
        with torch.cuda.stream(torch.cuda.Stream()):  # this attacker's kernels overlap the others'
            result = attack_cell(cell, self.study, self.check, trial, self.device)
            torch.cuda.current_stream().synchronize()
        return result


def start_pool(study: StudySpec, check: Optional[NodeCheck], size: int, bundle: int):
    """A trial's ``AttackPool`` actor of ``size`` attackers, in bundle ``bundle`` of the trial's
    placement group (anywhere without one). It holds its resources until killed."""
    options = pool_options(size, study.gpu_attacker, study.cpus_per_task, study.pool_allocator)
    pg = ray.util.get_current_placement_group()
    if pg is not None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=bundle)
    return ray.remote(AttackPool).options(**options).remote(study, check, size)


def attack_batch(cells: list[dict], study: StudySpec, check: Optional[NodeCheck], trial: str) -> list[dict]:
    """A fixed list of cells, all at once in one process (an ``AttackPool`` of ``len(cells)``
    threads): run as a Ray task with ``pool_options(len(cells), ...)``'s resources, which it frees
    when it ends (the study's baselines)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = AttackPool(study, check, len(cells))
    with ThreadPoolExecutor(len(cells), thread_name_prefix="attacker") as threads:
        return list(threads.map(lambda c: pool.attack(c, trial), cells))


def worst_result(study: StudySpec) -> dict[str, float]:
    """The searched metrics at their worst: the placeholders of non-final reports and the result
    of a diverged trial."""
    if study.objective == "single":
        return {"objective": 1.0 + study.utility_floor}
    return {"select_attack_ssim": 1.0, "select_utility": 0.0}


def objective(rows: list[dict], floor: float) -> dict[str, float]:
    """What a search reads of a trial: the mean attack SSIM, TCA, utility and perturbation of its
    attackers on the SELECTION images (the rows' ``select_*`` columns; never the test images,
    which only reports read: data/splits.py); objective = that SSIM if the utility reaches
    ``floor``, else 1 + floor - utility (any passing trial beats a failing one). The utility is
    Table 3's DeePSiM at the paper's N where the dataset has one (``*_paper_n``: the release's
    formula depends on N, and on a few hundred selection images it sits far below the paper's
    values whatever the defence; metrics.py ``deepsim_at``), else as measured."""
    def mean(column: str) -> float:
        return sum(r[f"select_{column}"] for r in rows) / len(rows)

    at_paper_n = all(isinstance(r.get("select_utility_deepsim_paper_n"), float)
                     and math.isfinite(r["select_utility_deepsim_paper_n"]) for r in rows)
    ssim, util = mean("ssim"), mean("utility_deepsim_paper_n" if at_paper_n else "utility_deepsim")
    score = ssim if util >= floor else 1.0 + floor - util
    return {"select_attack_ssim": ssim, "select_attack_tca": mean("tca"), "select_utility": util,
            "select_perturbation_mse": mean("perturbation_mse"), "objective": score}


def run_attackers(cells: list[dict], study: StudySpec, check: Optional[NodeCheck], trial_id: str, device: str,
                  pending: dict, common: dict, gnime_seconds: float) -> tuple[list[dict], float, float]:
    """Attack the trial's GNIME with every cell: ``attackers_per_trial`` attackers at once in the
    trial's attack pool (its second bundle) while the trial process, whose own bundle would
    otherwise idle, runs cells itself; so a placement group of 1 + 1 bundles runs k + 1 attackers
    at a time. Reports progress to Tune. Returns the results in the order of ``cells``, the attack
    phase's wall seconds and the seconds the trial spent attacking itself."""
    k = study.attackers_per_trial
    pool = start_pool(study, check, k, bundle=1) if len(cells) > 1 else None
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


def gnime_trial(config: dict, study: Optional[StudySpec] = None, check: Optional[NodeCheck] = None) -> None:
    """Tune function trainable: train one GNIME (or load it), then attack it (module docstring)."""
    ensure_node(check)
    trial_id = tune.get_context().get_trial_id() or ""
    cap_gpu_memory(study.gpu_trial)
    device = device_for(study.gpu_trial)
    gammas = (config["gamma"],) if "gamma" in config else study.gammas
    base = CellSpec(study.dataset, explainer=config["explainer"], defense="gnime", lam=config["lam"],
                    width=config["width"], variant=study.variant, study_seed=study.study_seed,
                    aux_dataset=study.aux_dataset, gnime_seed=config.get("gnime_seed", 0))
    prep = prepared(study, device)
    cfg = gnime_config(base, study.preset)
    pending = {**worst_result(study), "final": False}
    speed = choose(device, study.preset.memory_format, cfg.bf16, shape=prep.map_shape(base.explainer, base.variant),
                   width=study.preset.net_width, cache_dir=study.cache_dir)
    common = {"gamma": -1.0 if gammas[0] is None else gammas[0], "node": node_name(), "speed": speed.describe()}

    def on_epoch(epoch: int, losses: dict, state: Callable[[], dict]) -> None:
        metrics = {**losses, "epoch": epoch, "epochs": cfg.epochs, "stage": "gnime", **common, **pending}
        if epoch % study.checkpoint_every == 0 or epoch == cfg.epochs:
            with tempfile.TemporaryDirectory() as d:
                torch.save(state(), Path(d) / "gnime.pt")
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(metrics)

    t0 = time.perf_counter()
    state = load_trained_gnime(prep, base, study.preset)  # the same training config (another gamma, a restore)
    if state is None:
        resume = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                resume = torch.load(Path(d) / "gnime.pt", map_location="cpu", weights_only=True)
        t = prep.split.target
        try:
            model = train_gnime(prep.map_rows((base.explainer, base.variant), t), prep.logit_rows(t),
                                prep.image_rows(t), cfg, device=device, log=lambda _: None, on_epoch=on_epoch,
                                resume=resume, speed=speed)
        except TrainingDiverged as exc:
            tune.report({**worst_result(study), **common, "final": True, "status": "diverged", "error": str(exc),
                         "gnime_seconds": time.perf_counter() - t0, "attackers": 0})
            return
        save_trained_gnime(prep, base, study.preset, model.state())  # published: attackers on any node fetch it
    gnime_seconds = time.perf_counter() - t0

    cells = [dataclasses.asdict(dataclasses.replace(base, defense=defense, gamma=gamma, seed=seed))
             for gamma in gammas for defense in study.defenses for seed in study.attack_seed_range]
    results, attack_phase, local_seconds = run_attackers(cells, study, check, trial_id, device, pending, common,
                                                         gnime_seconds)
    idle = max(0.0, attack_phase - local_seconds)
    primary = "gnime" if "gnime" in study.defenses else study.defenses[0]
    main = [r for r in results if r["defense"] == primary and r["gamma"] == gammas[0]]
    diverged = [r for r in results if r["status"] != "finished"]
    pg = ray.util.get_current_placement_group()
    assigned = ray.get_runtime_context().get_assigned_resources()
    result = {**common, "final": True, "attackers": len(results), "gnime_seconds": gnime_seconds,
              "attack_phase_seconds": attack_phase, "trial_attack_seconds": local_seconds,
              "idle_share": idle / max(gnime_seconds + attack_phase, 1e-9),
              "attackers_in_trial_pg": pg is not None and all(r["placement_group"] == pg.id.hex() for r in results),
              "trial_gpu_assigned": float(assigned.get("GPU", 0.0)),
              "attack_seconds": float(sum(r["wall_seconds"] for r in results
                                          if r["status"] == "finished" and not r["skipped"]))}
    if any(r["status"] != "finished" for r in main):
        result.update(worst_result(study), status="diverged", error=diverged[0]["error"])
    else:
        result.update(objective(main, study.utility_floor), status="finished",
                      error=diverged[0]["error"] if diverged else "")
    tune.report(result)
