"""A study: one Tune experiment per explainer, whose trials each train one GNIME (lambda, NG
width, optionally gamma) and then attack it in an attack pool (several attackers in one process);
plus the no-defence baselines, once per study.

The driver, in order (docs/studies.md, "Studies on Ray"):
1. before any work: the results root answers (a bucket exists), the study's name is not taken by
   other settings (study/spec.py), the GPU decision is made once (tune/resources.py), and every
   node sees the results root, the data and a writable cache (tune/nodes.py);
2. prepare (f, f_E, the maps of every explainer) runs once as a Ray task and publishes its outputs
   as artifacts under the results root, from which every other process loads them (tune/tasks.py);
3. ExpMI without defence and PredMI run once per (dataset, explainer), beside the search, as tasks
   of ``attackers_per_trial`` attackers each (one process per task, its attackers at once);
4. per explainer, Tune runs the trials, each on its placement group ``[trial bundle, attack
   bundle]`` (tune/resources.py): GNIME training with per-epoch reports and checkpoints, then one
   attacker per (defence, gamma, attack seed), k at a time in the trial's attack pool (an actor in
   the attack bundle, tune/attack_pool.py) and one at a time in the trial process itself, each writing
   its own row (exactly once: rows are named by their key, store/rows.py);
5. the trials' summaries (objective, metrics, status, Pareto flag per explainer) land in
   ``OUT/_trials/<study>.csv``, and every trial also in an Optuna study kept in
   ``OUT/_optuna/<study>.log`` (tune/search_log.py: optuna-dashboard opens it).
Tune's state lives in ``OUT/_tune``; re-running a study with the same name and out restores it
(``Tuner.restore``) and never runs a finished cell again. A node lost mid-trial costs time, not
rows: Tune restores the trial elsewhere from its checkpoint, and a lost attack pool is restarted
and its unfinished attackers retried.

Search: Optuna through Ray's OptunaSearch (tune/search.py) over lambda (log scale), NG width (a
choice) and, optionally, gamma (log scale), with the study's sampler (tune/samplers.py), seeded;
two objectives by default (attack SSIM down, utility up, the utility floor a constraint: only
feasible trials are Pareto-optimal; study/objective.py) or the single penalised objective. With budgets,
every trial is attacked at each of them. Everything a search reads is measured on the SELECTION
images of the evaluation split (data/splits.py); the test images are for the held-out report that
follows a search (study/heldout.py). The objective is measured against GNIME (against the first
defence of a study without gnime cells, e.g. RND and OND at an already trained GNIME). Grid mode
crosses given lambdas, widths and GNIME seeds (matrix studies), or takes explicit (lambda, width,
gamma) points (the held-out report of a front).

Speed: the study decides its memory format once (study/opening.py ``decide_speed``: CUDA on a GPU study, else
a timed probe in a task on a node where trials run), records it with the identity, and passes it
down as a concrete preset field, so every process follows it; a resumed study takes the recorded
one. Interrupted: a search that Ctrl-C stopped before all its trials ended raises
``Interrupted`` (what ended is kept; the same command resumes it), never returns as a finished one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from typing import Any, Callable, Optional

import ray
from ray import tune
from ray.util.queue import Queue

from .. import GnimeRayError, Interrupted, echo
from ..config import Preset
from ..data import IMAGE_SHAPES
from ..store.root import canonical_out, probe_out, write_csv
from ..store.rows import read_rows
from ..study.objective import pareto_flags
from ..study.opening import decide_speed, describe_speed, recall_study, settle_speed
from ..study.record import read_record
from ..study.spec import StudySpec, identity
from .attack_pool import attack_batch
from .console import StudyConsole, describe_config
from .nodes import NodeCheck, check_nodes
from .placement import Placement
from .ray_internals import set_restored_callbacks
from .resources import decide_gpu, pool_options, trial_resources
from .search_log import OptunaLog
from .trial import gnime_trial
from .tasks import prepare_task, speed_task

Log = Callable[[str], None]
# select_*, constraint, feasible: what the search read (its attackers on the selection images); chosen,
# report_study, test_attack_ssim_gnimes: the held-out report of the chosen trials (study/heldout.py), filled after it
TRIAL_COLUMNS = ("study", "explainer", "trial", "status", "lambda", "ng_width", "gamma", "gammas", "gnime_seed",
                 "select_attack_ssim", "select_attack_tca", "select_utility", "select_utility_min",
                 "select_perturbation_mse", "constraint", "objective", "feasible",
                 "pareto", "chosen", "report_study", "test_attack_ssim_gnimes",
                 "attackers_in_trial_pg", "trial_gpu_assigned", "gnime_seconds", "attack_seconds",
                 "attack_phase_seconds", "trial_attack_seconds", "idle_share", "node", "speed", "error")
SEARCHED = ("select_attack_ssim", "select_attack_tca", "select_utility", "select_utility_min",
            "select_perturbation_mse")


def grid_size(spec: StudySpec) -> int:
    """The trials of a grid study per explainer: (lambdas x widths, or its points) x GNIME seeds."""
    configurations = len(spec.points) or len({spec.lam_range[0], spec.lam_range[1]}) * len(spec.widths)
    return configurations * len(spec.gnime_seeds)


def _param_space(spec: StudySpec, explainer: str) -> dict:
    """Tune's param space of ``spec.search_space()`` for one explainer's experiment; a grid of
    points also gets each point's lambda, width and gamma as the trial's values (``sample_from``
    reads the point's index that the grid chose)."""
    domain = {"grid": lambda p: tune.grid_search(list(p.values)), "choice": lambda p: tune.choice(list(p.values)),
              "loguniform": lambda p: tune.loguniform(*p.values)}
    space = {"explainer": explainer, **{name: domain[p.kind](p) for name, p in spec.search_space().items()}}
    if spec.points:
        points = spec.points
        space["lam"] = tune.sample_from(lambda s: points[s.config.point][0])
        space["width"] = tune.sample_from(lambda s: points[s.config.point][1])
        if points[0][2] is not None:
            space["gamma"] = tune.sample_from(lambda s: points[s.config.point][2])
    return space


def _tune_config(spec: StudySpec, placement: Placement) -> tune.TuneConfig:
    if spec.search == "grid":
        return tune.TuneConfig(num_samples=1, max_concurrent_trials=placement.max_concurrent_trials)
    from .search import make_searcher

    return tune.TuneConfig(search_alg=make_searcher(spec), num_samples=spec.num_samples,
                           max_concurrent_trials=placement.max_concurrent_trials)


def _baseline_futures(spec: StudySpec, placement: Placement, check: NodeCheck) -> list:
    """The baselines' results' futures: tasks of ``attackers_per_trial`` attackers each, every
    task one process whose attackers run at once (tune/attack_pool.py ``attack_batch``)."""
    cells = spec.baseline_cells()
    k = placement.attackers_per_trial
    futures = []
    for i in range(0, len(cells), k):
        batch = [dataclasses.asdict(c) for c in cells[i:i + k]]
        options = pool_options(len(batch), placement.gpu_attacker, placement.cpus_per_task, placement.pool_allocator)
        task = ray.remote(attack_batch).options(num_cpus=options["num_cpus"], num_gpus=options["num_gpus"],
                                                runtime_env=options["runtime_env"], max_retries=3)
        futures.append(task.remote(batch, spec, placement, check, "baseline"))
    return futures


def fit_to_cluster(placement: Placement, cpus: float, log: Log = echo) -> Placement:
    """On a small cluster, give each bundle a fraction of a CPU so that ``max_concurrent_trials``
    placement groups fit at once (a trial idles while its attackers run, and a 1- or 2-CPU laptop
    would otherwise run one bundle at a time or none at all). Ray gives such a worker one thread.
    A trial's CPUs are its own bundle's plus its attack pool's: (1 + k) x ``cpus_per_task``."""
    k, mc = placement.attackers_per_trial, placement.max_concurrent_trials
    c = min(placement.cpus_per_task, cpus / ((1 + k) * mc)) if cpus > 0 else placement.cpus_per_task
    if c != placement.cpus_per_task:
        log(f"resources: {cpus:g} CPUs: {c:.3g} CPU per attacker so that {mc} trials of 1 + {k} attackers fit")
        placement = dataclasses.replace(placement, cpus_per_task=c)
    return placement


def _summary(spec: StudySpec, explainer: str, result: Any) -> dict:
    """A trial's row of ``_trials/<study>.csv`` from its Tune result (status finished, diverged,
    failed or unfinished; metrics NaN unless finished)."""
    m, cfg = result.metrics or {}, result.config or {}
    nan = float("nan")
    row: dict[str, Any] = {c: nan for c in TRIAL_COLUMNS}
    row.update(study=spec.name, explainer=explainer, trial=m.get("trial_id") or os.path.basename(str(result.path)),
               node=m.get("node", ""), speed=m.get("speed", ""), error="", pareto=False, attackers_in_trial_pg=False,
               ng_width=float(cfg.get("width", nan)), gamma=float(cfg.get("gamma", nan)),
               gnime_seed=int(cfg.get("gnime_seed", 0)), chosen=False, report_study="", feasible=False,
               gammas=";".join("none" if g is None else repr(g) for g in spec.gammas_for(explainer))
               if "gamma" not in cfg else repr(float(cfg["gamma"])))
    if "gamma" not in cfg and m.get("gamma", -1.0) >= 0 and len(spec.gammas_for(explainer)) == 1:
        row["gamma"] = float(m["gamma"])  # a grid study's fixed gamma (-1: unbounded)
    row["lambda"] = float(cfg.get("lam", nan))
    if result.error is not None:
        row.update(status="failed", error=str(result.error).strip().splitlines()[-1][:500])
    elif not m.get("final"):
        row.update(status="unfinished")
    else:
        row.update(status=m.get("status", "finished"), error=m.get("error", "") or "",
                   attackers_in_trial_pg=bool(m.get("attackers_in_trial_pg", False)))
        keys = ("trial_gpu_assigned", "gnime_seconds", "attack_seconds", "attack_phase_seconds",
                "trial_attack_seconds", "idle_share", "objective", "constraint")
        if row["status"] == "finished":
            keys += SEARCHED
        row.update({k: float(m[k]) for k in keys if k in m})
        constraint = row["constraint"]
        row["feasible"] = row["status"] == "finished" and (not math.isfinite(constraint) or constraint <= 0)
    return row


def write_trials(out: str, study: str, trials: list[dict]) -> str:
    """Write (replace) ``OUT/_trials/<study>.csv``: one line per trial, TRIAL_COLUMNS."""
    return write_csv([{c: t.get(c, "") for c in TRIAL_COLUMNS} for t in trials], out, f"_trials/{study}.csv")


def _storage_error(results: list) -> str:
    """The first node problem among failed trials (a node that joined later and cannot see the results
    root or the data), or ''."""
    for r in results:
        text = str(r.error or "")
        if "cannot see the results root" in text or "cannot read the results root" in text:
            return next(line for line in text.splitlines()[::-1] if "node " in line).strip()
    return ""


def _search(spec: StudySpec, placement: Placement, explainer: str, check: NodeCheck | None,
            pgf: tune.PlacementGroupFactory, storage: str, log: Log) -> list[dict]:
    """One explainer's Tune experiment (new or restored), recorded as an Optuna study: the trials'
    summaries with their Pareto flags."""
    trainable = tune.with_resources(tune.with_parameters(gnime_trial, study=spec, placement=placement, check=check), pgf)
    path = f"{storage}/{spec.name}-{explainer}"
    expected = spec.num_samples if spec.search == "optuna" else grid_size(spec)
    console = StudyConsole(spec.name, explainer, log, trials=expected)
    search_log = OptunaLog(spec, explainer)
    try:
        if tune.Tuner.can_restore(path):
            log(f"study {spec.name}: restoring the {explainer} search from {path}")
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
            # Tuner.restore brings back the callbacks pickled with the experiment (and has no public way to
            # pass new ones): this run's console and journal replace them (ray_internals.py)
            set_restored_callbacks(tuner, [console, search_log])
        else:
            tuner = tune.Tuner(trainable, param_space=_param_space(spec, explainer), tune_config=_tune_config(spec, placement),
                               run_config=tune.RunConfig(name=f"{spec.name}-{explainer}", storage_path=storage,
                                                         checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                                                         failure_config=tune.FailureConfig(max_failures=2),
                                                         callbacks=[console, search_log], verbose=0))
        results = list(tuner.fit())
        node_problem = _storage_error(results)
        if node_problem:
            raise GnimeRayError(node_problem)
        summaries = [_summary(spec, explainer, r) for r in results]
        ended = sum(t["status"] != "unfinished" for t in summaries)
        if ended < expected:  # Tune returns when Ctrl-C stops it: what ended is kept, the rest is not done
            raise Interrupted(f"the {explainer} search of study {spec.name} stopped after {ended} of its {expected} "
                              f"trials ended: run the same command again to resume it")
        for r, t in zip(results, summaries):  # trials that ended before this driver (a resumed study)
            search_log.record(t["trial"], r.config or {}, r.metrics)
        done = [t for t in summaries if t["feasible"]]
        if spec.objective == "multi" and spec.search == "optuna":  # Optuna's own front: feasible trials only
            front = search_log.pareto_trials()
            flags = [t["trial"] in front for t in done]
        else:  # attack SSIM down, utility up, among this explainer's feasible trials
            flags = pareto_flags([(t["select_attack_ssim"], t["select_utility"]) for t in done])
        for t, flag in zip(done, flags):
            t["pareto"] = flag
        for t in summaries:
            if t["status"] in ("failed", "unfinished"):
                log(f"[{spec.name} {explainer}] trial {t['trial']} {t['status']}: {t['error']}")
        return summaries
    finally:
        console.close()
        search_log.close()


EPOCH = re.compile(r"^(\S+) epoch (\d+)/(\d+)")


def wait_reporting(future: Any, progress: Any, log: Log, every: float = 10.0) -> Any:
    """``ray.get(future)``, meanwhile printing the progress lines its task puts into the queue
    ``progress``: an epoch line at most every ``every`` seconds per network (and its last), with the
    time left at that network's rate so far; other lines as they come."""
    first: dict[str, tuple[float, int]] = {}
    shown: dict[str, float] = {}

    def say(line: str) -> None:
        m = EPOCH.match(line)
        if m is None:
            log(line if line.startswith("prepare") else f"prepare: {line}")
            return
        name, done, total, now = m.group(1), int(m.group(2)), int(m.group(3)), time.perf_counter()
        t0, d0 = first.setdefault(name, (now, done))
        if done < total and now - shown.get(name, 0.0) < every:
            return
        shown[name] = now
        left = "" if done <= d0 or done >= total else f"; ~{(total - done) * (now - t0) / (done - d0):.0f} s left"
        log(f"prepare: {line}{left}")

    while True:
        ready, _ = ray.wait([future], timeout=1.0)
        while not progress.empty():
            say(progress.get_nowait())
        if ready:
            return ray.get(future)


def _speed_decider(spec: StudySpec, placement: Placement, check: NodeCheck) -> Callable[[Preset], dict]:
    """How a Ray study makes its one speed decision when it has none recorded: a held-out report
    follows its search's; a GPU study's, or a set memory format, is decided without measuring;
    else a task measures it on a node where the trials run (tasks.py ``speed_task``)."""
    def measure(preset: Preset) -> dict:
        searched = read_record(spec.out, spec.report_of.split("/")[0]) if spec.report_of else None
        if searched is not None and searched.get("speed", {}).get("memory_format") == preset.memory_format \
                and searched["speed"].get("compile", "never") == preset.compile:
            return {**searched["speed"], "reason": f"the decision of the search {spec.report_of.split('/')[0]}: "
                                                   f"{searched['speed']['reason']}"}
        if (preset.memory_format != "auto" and preset.compile != "auto") or placement.use_gpu:
            return decide_speed("cuda" if placement.use_gpu else "cpu", preset, shape=IMAGE_SHAPES[spec.dataset],
                                cache_dir=spec.cache_dir)
        return ray.get(ray.remote(speed_task).options(num_cpus=placement.cpus_per_task)
                       .remote(dataclasses.replace(spec, preset=preset), check))
    return measure


def run_study(spec: StudySpec, placement: Optional[Placement] = None, log: Log = echo) -> dict:
    """Run (or resume) a study on the connected Ray cluster, placed by ``placement`` (default:
    ``Placement()``); returns the trials' summaries, the study's rows, the study as it ran (paths
    absolute, its speed decision in its preset), its placement as it ran (the GPU decision made, CPUs
    fitted to the cluster) and its speed decision. Problems found before any work raise GnimeRayError (one line); a search that
    Ctrl-C stopped raises Interrupted."""
    if not ray.is_initialized():
        raise GnimeRayError("Ray is not initialised: call gnime_ray.tune.connect() first")
    spec = dataclasses.replace(spec, out=canonical_out(spec.out),
                               cache_dir=os.path.abspath(spec.cache_dir) if spec.cache_dir else None,
                               data_root=os.path.abspath(spec.data_root) if spec.data_root else None)
    probe_out(spec.out)
    def identity_of(preset: Preset) -> dict:
        return identity(dataclasses.replace(spec, preset=preset))

    preset, recorded = recall_study(spec.out, spec.name, spec.preset, identity_of)  # a resume: its recorded format
    spec, resumed = dataclasses.replace(spec, preset=preset), recorded is not None
    placement = placement or Placement()
    if placement.use_gpu is None:  # a library call that did not decide: the rule for a Ray of this process
        placement = dataclasses.replace(placement, use_gpu=decide_gpu(False, True, log))
    placement = fit_to_cluster(placement, ray.cluster_resources().get("CPU", 0), log)
    try:  # before any work: a trial's attack pool must fit on one GPU
        pgf = trial_resources(placement.trial_gpu, placement.attacker_gpu, placement.attackers_per_trial,
                              placement.cpus_per_task, placement.use_gpu)
    except ValueError as exc:
        raise GnimeRayError(str(exc)) from None
    log(f"study {spec.name}: {spec.dataset}, explainers {', '.join(spec.explainers)}, preset {spec.preset.name}, "
        f"{spec.search} search, results under {spec.out}{' (resuming)' if resumed else ''}")
    datasets = (spec.dataset,) + (() if spec.aux_dataset == "same" else (spec.aux_dataset,))
    check = check_nodes(spec.name, spec.out, datasets, spec.data_root, spec.cache_dir, log)
    preset, speed = settle_speed(spec.out, spec.name, spec.kind, spec.preset, recorded, identity_of,
                                 _speed_decider(spec, placement, check))
    spec = dataclasses.replace(spec, preset=preset)
    log(f"speed for every trial and attacker of the study: {describe_speed(speed)}"
        f"{' (on ' + speed['node'] + ')' if speed.get('node') else ''}")

    log(f"prepare: f, f_E and the {', '.join(spec.explainers)} maps, from the cache or made now (minutes on a few "
        f"CPUs; its progress follows)")
    progress = Queue(maxsize=10000, actor_options={"num_cpus": 0})
    try:
        prep = wait_reporting(ray.remote(prepare_task).options(num_cpus=placement.cpus_per_task, num_gpus=placement.gpu_trial)
                              .remote(spec, placement, check, progress), progress, log)
    finally:
        progress.shutdown()
    acc = prep["accuracies"]
    log(f"prepare: {'loaded' if prep['from_cache'] else 'trained f and f_E, computed the maps'} on {prep['node']} "
        f"in {prep['seconds']:.0f}s (f {acc['target']:.4f}, f_E {acc['eval']:.4f} on the eval split)")
    baselines = _baseline_futures(spec, placement, check) if spec.baselines else []
    if baselines:
        log(f"baselines: {spec.attack_seeds * (1 + len(spec.explainers))} attackers launched in {len(baselines)} "
            f"processes (PredMI and ExpMI without defence)")
    storage = f"{spec.out.rstrip('/')}/_tune"
    trials = []
    for explainer in spec.explainers:
        trials += _search(spec, placement, explainer, check, pgf, storage, log)
    finished = [r for batch in ray.get(baselines) for r in batch]
    if baselines:
        log(f"baselines: {sum(r['status'] == 'finished' for r in finished)}/{len(finished)} finished")
    if trials:
        write_trials(spec.out, spec.name, trials)
    rows = [r for r in read_rows(spec.out).to_pylist() if r["study"] == spec.name]
    return {"trials": [t for t in trials if t["status"] == "finished"], "all_trials": trials, "rows": rows,
            "spec": spec, "placement": placement, "speed": speed}


__all__ = ["StudySpec", "Placement", "run_study", "fit_to_cluster", "describe_config"]
