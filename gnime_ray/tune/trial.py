"""The GNIME trial: Ray Tune's function trainable of a study.

A trial trains one GNIME (or loads it when its exact training configuration was trained before),
reporting every epoch's losses (with a checkpoint every ``Placement.checkpoint_every`` epochs, from which a
restored trial continues), then attacks it from its attack pool (attack_pool.py) at each of its
gammas (its own, or every budget: ``StudySpec.configuration_gammas``) with each of the study's defences (RND
and OND once per ``matches`` entry) while reporting the attackers' progress, then reports its
objective (study/objective.py ``objective``: selection images only, over every gamma). Its per-epoch
reports carry worst-case placeholders for the searched metrics (Tune requires them in every
report; ``final`` False). A GNIME whose losses turn non-finite ends the
trial with status ``diverged``, the worst objective and no attacker rows.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import ray
import torch
from ray import tune

from .. import TrainingDiverged
from ..pipeline.defend import gnime_config, gnime_speed, train_or_load_gnime
from .attack_pool import run_attackers
from .nodes import NodeCheck, ensure_node, node_name
from .placement import Placement
from .resources import cap_gpu_memory, device_for
from ..study.objective import objective, worst_result
from ..study.spec import StudySpec
from .tasks import prepared


def gnime_trial(config: dict, study: Optional[StudySpec] = None, placement: Optional[Placement] = None,
                check: Optional[NodeCheck] = None) -> None:
    """Tune function trainable: train one GNIME (or load it), then attack it (module docstring)."""
    ensure_node(check)
    trial_id = tune.get_context().get_trial_id() or ""
    cap_gpu_memory(placement.gpu_trial)
    device = device_for(placement.gpu_trial)
    gammas = study.configuration_gammas(config)
    base = study.configuration(config)
    prep = prepared(study, device)
    cfg = gnime_config(base, study.preset)
    pending = {**worst_result(study), "final": False}
    speed = gnime_speed(prep, base, study.preset, device)
    common = {"gamma": -1.0 if gammas[0] is None else gammas[0], "node": node_name(), "speed": speed.describe()}

    def on_epoch(epoch: int, losses: dict, state: Callable[[], dict]) -> None:
        metrics = {**losses, "epoch": epoch, "epochs": cfg.epochs, "stage": "gnime", **common, **pending}
        if epoch % placement.checkpoint_every == 0 or epoch == cfg.epochs:
            with tempfile.TemporaryDirectory() as d:
                torch.save(state(), Path(d) / "gnime.pt")
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(metrics)

    t0 = time.perf_counter()
    resume = None
    checkpoint = tune.get_checkpoint()  # a restored trial continues its training (used only if one runs)
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            resume = torch.load(Path(d) / "gnime.pt", map_location="cpu", weights_only=True)
    try:  # loaded when the same training configuration was trained before (another gamma, a restore)
        train_or_load_gnime(prep, base, study.preset, device, log=lambda _: None, on_epoch=on_epoch, resume=resume,
                            speed=speed)
    except TrainingDiverged as exc:
        tune.report({**worst_result(study), **common, "final": True, "status": "diverged", "error": str(exc),
                     "gnime_seconds": time.perf_counter() - t0, "attackers": 0})
        return
    gnime_seconds = time.perf_counter() - t0

    cells = [dataclasses.asdict(c) for c in study.defence_cells(config)]
    results, attack_phase, local_seconds = run_attackers(cells, study, placement, check, trial_id, device, pending,
                                                         common, gnime_seconds)
    idle = max(0.0, attack_phase - local_seconds)
    primary = "gnime" if "gnime" in study.defenses else study.defenses[0]
    main = [r for r in results if r["defense"] == primary and r["match"] == "perturbation"]  # every gamma
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
        result.update(objective(main, study.utility_floor, study.objective), status="finished",
                      error=diverged[0]["error"] if diverged else "")
    tune.report(result)
