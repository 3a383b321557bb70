"""A study: one Tune experiment per explainer, whose trials each train one GNIME (lambda, NG
width, optionally gamma) and then attack it with Ray tasks; plus the no-defence baselines, once
per study.

Topology (design.md):
- prepare (f, f_E, the maps of every explainer) runs once per dataset as a Ray task, on every CPU
  of its node (everything else waits for it); trials and attackers receive the result by reference
  from the object store and never recompute it;
- each trial owns a placement group ``[trial bundle] + [attacker bundle] * k`` (GPU fractions where
  the cluster has GPUs); it trains GNIME, reporting every epoch's losses with ``tune.report`` and a
  ``tune.Checkpoint`` every ``checkpoint_every`` epochs (a restored trial continues from it), then
  launches one attacker task per (defence, gamma, attack seed) inside its placement group (Ray
  captures a trial's child tasks in its group; tasks retry on worker failure), and reports its
  objective only once they have finished;
- every attacker task writes its own Parquet row (store/parquet.py) and skips a (study, cell,
  attack seed) whose row already exists, so a resumed study never duplicates a row;
- ExpMI without defence and PredMI run once per (dataset, explainer) per study, not per trial;
- Tune's own state lives under ``OUT/_tune`` (ignored by Parquet discovery); re-running a study
  with the same name and out restores it (``Tuner.can_restore`` / ``Tuner.restore``).

Search: OptunaSearch over lambda (log scale), NG width (a choice) and, optionally, gamma (log
scale), seeded; single objective (minimise the attack's SSIM, penalised below a utility floor:
objective = SSIM if utility >= floor else 1 + floor - utility) or multi-objective (attack SSIM
down, utility up; Pareto-optimal trials are marked in ``OUT/_trials/<study>.parquet``); the
objective is measured against GNIME (against the first defence of a study without gnime cells,
e.g. RND and OND at an already trained GNIME). Grid mode crosses given lambdas and widths (for
matrix studies).
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import ray
import torch
from ray import tune

from .. import GnimeRayError, echo
from ..config import DEFENSES, EXPLAINERS, CellSpec, Preset, get_preset
from ..data import DATASETS
from ..defenses import GnimeModel
from ..defenses.gnime import train_gnime
from ..pipeline.cell import run_cell
from ..pipeline.cache import load_tensors, save_tensors
from ..pipeline.defend import gnime_config, gnime_path
from ..pipeline.prepare import Prepared, prepare, prepare_aux
from ..store import read_rows, resolve_out, write_rows
from ..store.parquet import write_table
from .resources import cap_gpu_memory, cluster_has_gpus, device_for, node_cpus, task_options, trial_resources

Log = Callable[[str], None]
OBJECTIVES = ("single", "multi")
SEARCHES = ("optuna", "grid")


@dataclass(frozen=True)
class StudySpec:
    """Everything a study needs; validated on construction (ValueError naming the field)."""

    name: str
    dataset: str
    out: str
    explainers: tuple[str, ...] = ("lrp",)
    variant: str = "paper"
    preset: Preset = field(default_factory=lambda: get_preset("quick"))
    attack_seeds: int = 3
    study_seed: int = 0
    search: str = "optuna"
    num_samples: int = 4
    max_concurrent_trials: int = 2
    lam_range: tuple[float, float] = (10.0, 1000.0)
    widths: tuple[float, ...] = (0.5, 1.0, 2.0)
    gamma_range: Optional[tuple[float, float]] = None
    gammas: tuple[Optional[float], ...] = (None,)
    defenses: tuple[str, ...] = ("gnime",)
    baselines: bool = True
    objective: str = "single"
    utility_floor: float = 0.8
    trial_gpu: float = 0.25
    attacker_gpu: float = 0.25
    attackers_per_trial: int = 2
    cpus_per_task: float = 1.0
    checkpoint_every: int = 10
    cache_dir: Optional[str] = None
    data_root: Optional[str] = None
    aux_dataset: str = "same"

    def __post_init__(self) -> None:
        def check(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")
        check(bool(self.name) and "/" not in self.name and not self.name.startswith(("_", ".")), "name",
              "a non-empty name without '/' that does not start with '_' or '.'")
        check(len(self.explainers) > 0 and all(e in EXPLAINERS for e in self.explainers), "explainers",
              f"a non-empty subset of {', '.join(EXPLAINERS)}")
        check(len(self.defenses) > 0 and all(d in DEFENSES and d != "none" for d in self.defenses), "defenses",
              "a non-empty subset of gnime, rnd, ond")
        check(self.search in SEARCHES, "search", f"one of {', '.join(SEARCHES)}")
        check(self.objective in OBJECTIVES, "objective", f"one of {', '.join(OBJECTIVES)}")
        check(self.attack_seeds >= 1, "attack_seeds", ">= 1")
        check(self.num_samples >= 1, "num_samples", ">= 1")
        check(self.max_concurrent_trials >= 1, "max_concurrent_trials", ">= 1")
        check(0 < self.lam_range[0] <= self.lam_range[1], "lam_range", "0 < low <= high")
        check(len(self.widths) > 0 and all(w > 0 for w in self.widths), "widths", "positive numbers")
        check(self.gamma_range is None or 0 < self.gamma_range[0] <= self.gamma_range[1], "gamma_range",
              "None or 0 < low <= high")
        check(len(self.gammas) > 0 and all(g is None or g > 0 for g in self.gammas), "gammas", "None or > 0 values")
        check(0 < self.trial_gpu <= 1, "trial_gpu", "in (0, 1]")
        check(0 < self.attacker_gpu <= 1, "attacker_gpu", "in (0, 1]")
        check(self.attackers_per_trial >= 1, "attackers_per_trial", ">= 1")
        check(self.cpus_per_task > 0, "cpus_per_task", "> 0")
        check(self.checkpoint_every >= 1, "checkpoint_every", ">= 1")
        check(0 <= self.utility_floor <= 1, "utility_floor", "in [0, 1]")
        check(self.dataset in DATASETS, "dataset", f"one of {', '.join(sorted(DATASETS))}")
        check(self.aux_dataset == "same" or (self.aux_dataset in DATASETS and self.aux_dataset != self.dataset),
              "aux_dataset", f"'same' or another dataset: {', '.join(sorted(DATASETS))}")


# ---------------------------------------------------------------- tasks


def _prepare_task(spec: StudySpec) -> Prepared:
    """Prepare once per study; with an auxiliary attacker dataset, also query f with it once (cached, so
    the attacker tasks load its maps and logits instead of each computing them)."""
    cap_gpu_memory(spec.trial_gpu)
    device = device_for(spec.trial_gpu)
    with node_cpus():
        prep = prepare(spec.dataset, spec.preset, spec.study_seed, explainers=spec.explainers,
                       variant=spec.variant, cache_dir=spec.cache_dir, data_root=spec.data_root, device=device)
        if spec.aux_dataset != "same":
            prepare_aux(prep, spec.aux_dataset, spec.preset, spec.study_seed, explainers=spec.explainers,
                        variant=spec.variant, cache_dir=spec.cache_dir, data_root=spec.data_root, device=device)
    return prep


def _attack_task(cell: dict, study_spec: StudySpec, prep: Prepared, gnime_state: Optional[dict], trial: str,
                 gpu_fraction: float) -> dict:
    """One attacker: skip if its row exists, else run the cell and write the row."""
    spec = CellSpec(**cell)
    preset, out, study = study_spec.preset, study_spec.out, study_spec.name
    pg = ray.util.get_current_placement_group()
    where = {"placement_group": pg.id.hex() if pg is not None else ""}
    existing = [r for r in read_rows(out).to_pylist()
                if r["study"] == study and r["cell"] == spec.key() and r["attack_seed"] == spec.seed]
    if existing:
        return {**existing[0], **where, "skipped": True}
    cap_gpu_memory(gpu_fraction)
    device = device_for(gpu_fraction)
    gnime = GnimeModel.from_state(gnime_state, device) if gnime_state is not None else None
    row = run_cell(spec, preset, prep=prep, gnime=gnime, device=device, study=study, trial=trial,
                   cache_dir=study_spec.cache_dir, data_root=study_spec.data_root)
    write_rows([row], out)
    return {**row, **where, "skipped": False}


# ---------------------------------------------------------------- the trial


def _objective(rows: list[dict], floor: float) -> dict[str, float]:
    ssim = sum(r["ssim"] for r in rows) / len(rows)
    tca = sum(r["tca"] for r in rows) / len(rows)
    util = sum(r["utility_deepsim"] for r in rows) / len(rows)
    pert = sum(r["perturbation_mse"] for r in rows) / len(rows)
    score = ssim if util >= floor else 1.0 + floor - util
    return {"attack_ssim": ssim, "attack_tca": tca, "utility": util, "perturbation_mse": pert, "objective": score}


def gnime_trial(config: dict, prep_ref: Any = None, study: Optional[StudySpec] = None) -> None:
    """Tune function trainable: train one GNIME, then attack it (see the module docstring)."""
    prep: Prepared = ray.get(prep_ref) if isinstance(prep_ref, ray.ObjectRef) else prep_ref
    trial_id = tune.get_context().get_trial_id() or ""
    cap_gpu_memory(study.trial_gpu)
    device = device_for(study.trial_gpu)
    gammas = (config["gamma"],) if "gamma" in config else study.gammas
    base = CellSpec(study.dataset, explainer=config["explainer"], defense="gnime", lam=config["lam"],
                    width=config["width"], variant=study.variant, study_seed=study.study_seed,
                    aux_dataset=study.aux_dataset)
    cfg = gnime_config(base, study.preset)
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            resume = torch.load(Path(d) / "gnime.pt", map_location="cpu", weights_only=True)
    t = prep.split.target
    # Tune requires the searched metrics in every report: the per-epoch reports carry worst-case
    # placeholders (flagged by final=False); the objective itself is reported after the attackers.
    pending = ({"objective": 1.0 + study.utility_floor} if study.objective == "single"
               else {"attack_ssim": 1.0, "utility": 0.0})
    pending["final"] = False

    def on_epoch(epoch: int, losses: dict, state: Callable[[], dict]) -> None:
        metrics = {**losses, "epoch": epoch, **pending}
        if epoch % study.checkpoint_every == 0 or epoch == cfg.epochs:
            with tempfile.TemporaryDirectory() as d:
                torch.save(state(), Path(d) / "gnime.pt")
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(metrics)

    t_gnime = time.perf_counter()
    cached = gnime_path(prep, base, study.preset)
    if resume is None and cached.exists():  # same training config (e.g. another gamma): never retrain
        state = load_tensors(cached)
        echo(f"gnime: loaded from cache {cached}")
    else:
        model = train_gnime(prep.maps[(base.explainer, base.variant)][t], prep.logits[t], prep.images(t), cfg,
                            device=device, log=echo, log_every=max(1, cfg.epochs // 5), on_epoch=on_epoch,
                            resume=resume)
        state = model.state()
        save_tensors(cached, state)  # `gnime-ray cell` reproduces this trial's cells without retraining
    gnime_seconds = time.perf_counter() - t_gnime
    gnime_ref = ray.put(state)
    opts = task_options(study.attacker_gpu, study.cpus_per_task, cluster_has_gpus())
    task = ray.remote(_attack_task).options(**opts)
    futures = []
    for gamma in gammas:
        for defense in study.defenses:
            for seed in range(study.attack_seeds):
                cell = dataclasses.asdict(dataclasses.replace(base, defense=defense, gamma=gamma, seed=seed))
                futures.append((defense, gamma, task.remote(cell, study, prep_ref, gnime_ref, trial_id,
                                                             study.attacker_gpu)))
    rows = [(d, g, r) for (d, g, f), r in zip(futures, ray.get([f for _, _, f in futures]))]
    pg = ray.util.get_current_placement_group()
    in_pg = pg is not None and all(r["placement_group"] == pg.id.hex() for _, _, r in rows)
    primary = "gnime" if "gnime" in study.defenses else study.defenses[0]
    main = [r for d, g, r in rows if d == primary and g == gammas[0]]
    assigned = ray.get_runtime_context().get_assigned_resources()
    result = {**_objective(main, study.utility_floor), "epoch": cfg.epochs, "attackers": len(rows),
              "attackers_in_trial_pg": in_pg, "gamma": -1.0 if gammas[0] is None else gammas[0],
              "trial_gpu_assigned": float(assigned.get("GPU", 0.0)), "gnime_seconds": gnime_seconds, "final": True,
              "attack_seconds": float(sum(r["wall_seconds"] for _, _, r in rows if not r["skipped"]))}
    for d in study.defenses:
        sel = [r["ssim"] for dd, g, r in rows if dd == d and g == gammas[0]]
        result[f"ssim_{d}"] = sum(sel) / len(sel)
    tune.report(result)


# ---------------------------------------------------------------- the driver


def _param_space(spec: StudySpec, explainer: str) -> dict:
    if spec.search == "grid":
        space = {"lam": tune.grid_search(sorted({spec.lam_range[0], spec.lam_range[1]})),
                 "width": tune.grid_search(list(spec.widths))}
    else:
        space = {"lam": tune.loguniform(*spec.lam_range), "width": tune.choice(list(spec.widths))}
        if spec.gamma_range is not None:
            space["gamma"] = tune.loguniform(*spec.gamma_range)
    return {"explainer": explainer, **space}


def _tune_config(spec: StudySpec) -> tune.TuneConfig:
    if spec.search == "grid":
        return tune.TuneConfig(num_samples=1, max_concurrent_trials=spec.max_concurrent_trials)
    from ray.tune.search.optuna import OptunaSearch

    if spec.objective == "single":
        metric, mode = "objective", "min"
    else:
        metric, mode = ["attack_ssim", "utility"], ["min", "max"]
    search = OptunaSearch(metric=metric, mode=mode, seed=spec.study_seed)
    return tune.TuneConfig(search_alg=search, num_samples=spec.num_samples,
                           max_concurrent_trials=spec.max_concurrent_trials)


def _baseline_futures(spec: StudySpec, prep_ref: Any) -> list:
    task = ray.remote(_attack_task).options(**task_options(spec.attacker_gpu, spec.cpus_per_task, cluster_has_gpus()))
    cells = [CellSpec(spec.dataset, attack="predmi", seed=s, study_seed=spec.study_seed, aux_dataset=spec.aux_dataset)
             for s in range(spec.attack_seeds)]
    for e in spec.explainers:
        cells += [CellSpec(spec.dataset, explainer=e, defense="none", seed=s, variant=spec.variant,
                           study_seed=spec.study_seed, aux_dataset=spec.aux_dataset) for s in range(spec.attack_seeds)]
    return [task.remote(dataclasses.asdict(c), spec, prep_ref, None, "baseline", spec.attacker_gpu) for c in cells]


def pareto_flags(points: list[tuple[float, float]]) -> list[bool]:
    """Pareto optimality for (ssim to minimise, utility to maximise) pairs."""
    flags = []
    for i, (s, u) in enumerate(points):
        dominated = any((s2 <= s and u2 >= u) and (s2 < s or u2 > u) for j, (s2, u2) in enumerate(points) if j != i)
        flags.append(not dominated and not (math.isnan(s) or math.isnan(u)))
    return flags


def fit_to_cluster(spec: StudySpec, cpus: float, log: Log = echo) -> StudySpec:
    """On a small cluster, give each bundle a fraction of a CPU so that ``max_concurrent_trials``
    placement groups fit at once (a trial idles while its attackers run, and a 1- or 2-CPU laptop
    would otherwise run one bundle at a time or none at all). Ray gives such a worker one thread."""
    k, mc = spec.attackers_per_trial, spec.max_concurrent_trials
    c = min(spec.cpus_per_task, cpus / ((1 + k) * mc)) if cpus > 0 else spec.cpus_per_task
    if c != spec.cpus_per_task:
        log(f"study {spec.name}: {cpus:g} CPUs: {c:.3g} CPU per bundle so that {mc} trials of 1 + {k} bundles fit")
        spec = dataclasses.replace(spec, cpus_per_task=c)
    return spec


def run_study(spec: StudySpec, log: Log = echo) -> dict:
    """Run (or resume) a study on the connected Ray cluster; returns the trials' summaries and
    the study's rows."""
    if not ray.is_initialized():
        raise GnimeRayError("Ray is not initialised: call gnime_ray.tune.connect() first")
    fs, root = resolve_out(spec.out)
    spec = dataclasses.replace(spec, out=root if "://" not in spec.out else spec.out,
                               cache_dir=os.path.abspath(spec.cache_dir) if spec.cache_dir else None,
                               data_root=os.path.abspath(spec.data_root) if spec.data_root else None)
    spec = fit_to_cluster(spec, ray.cluster_resources().get("CPU", 0), log)
    storage = f"{spec.out.rstrip('/')}/_tune"
    log(f"study {spec.name}: {spec.dataset}, explainers {', '.join(spec.explainers)}, preset {spec.preset.name}, "
        f"{spec.search} search, results under {spec.out}")
    prep_ref = ray.remote(_prepare_task).options(
        num_cpus=spec.cpus_per_task, num_gpus=spec.trial_gpu if cluster_has_gpus() else 0).remote(spec)
    baselines = _baseline_futures(spec, prep_ref) if spec.baselines else []
    pgf = trial_resources(spec.trial_gpu, spec.attacker_gpu, spec.attackers_per_trial, spec.cpus_per_task)
    trials = []
    for explainer in spec.explainers:
        trainable = tune.with_resources(tune.with_parameters(gnime_trial, prep_ref=prep_ref, study=spec), pgf)
        path = f"{storage}/{spec.name}-{explainer}"
        if tune.Tuner.can_restore(path):
            log(f"study {spec.name}: restoring {path}")
            tuner = tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(trainable, param_space=_param_space(spec, explainer), tune_config=_tune_config(spec),
                               run_config=tune.RunConfig(name=f"{spec.name}-{explainer}", storage_path=storage,
                                                         checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                                                         failure_config=tune.FailureConfig(max_failures=2),
                                                         verbose=0))
        results = tuner.fit()
        for r in results:
            if r.error is not None:
                log(f"study {spec.name}: trial {r.path} failed: {r.error}")
                continue
            m = r.metrics
            if not m.get("final"):
                log(f"study {spec.name}: trial {r.path} has no final result")
                continue
            trials.append({"study": spec.name, "explainer": explainer, "trial": m.get("trial_id", ""),
                           "lambda": float(r.config["lam"]), "ng_width": float(r.config["width"]),
                           "gamma": float(m.get("gamma", -1.0)), "attack_ssim": float(m["attack_ssim"]),
                           "attack_tca": float(m["attack_tca"]), "utility": float(m["utility"]),
                           "perturbation_mse": float(m["perturbation_mse"]), "objective": float(m["objective"]),
                           "attackers_in_trial_pg": bool(m["attackers_in_trial_pg"]),
                           "trial_gpu_assigned": float(m["trial_gpu_assigned"]),
                           "gnime_seconds": float(m["gnime_seconds"]), "attack_seconds": float(m["attack_seconds"])})
    ray.get(baselines)
    for t, flag in zip(trials, pareto_flags([(t["attack_ssim"], t["utility"]) for t in trials])):
        t["pareto"] = flag
    if trials:
        write_table(trials, spec.out, f"_trials/{spec.name}.parquet")
    rows = [r for r in read_rows(spec.out).to_pylist() if r["study"] == spec.name]
    return {"trials": trials, "rows": rows}
