"""Ray Tune's searcher of a study: Optuna (through Ray's ``OptunaSearch``) with the study's sampler
(tune/samplers.py) and, for the two-objective search, its constraint.

A two-objective study minimises the attack's SSIM and maximises the utility, both on the selection
images, subject to utility >= ``utility_floor`` (study/spec.py). The floor is an Optuna constraint,
not a penalty: a trial reports ``constraint`` = floor - its lowest utility (feasible when <= 0),
which ``ConstrainedOptunaSearch`` sets on the Optuna trial before Ray tells Optuna the trial's
values, since Optuna's samplers read a trial's constraints when it is told (its deprecated
``constraints_func`` did the same through a callback). So the sampler models feasibility, and
Optuna's ``best_trials`` (the front) holds feasible trials only. The journal under the results
root (tune/search_log.py) records the same constraint values.
"""

from __future__ import annotations

from typing import Optional

import optuna
from ray.tune.search.optuna import OptunaSearch

from .ray_internals import asked_optuna_trial
from .samplers import make_sampler
from ..study.spec import StudySpec

CONSTRAINT = "utility_floor"  # the name of the constraint in Optuna's trials


class ConstrainedOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that sets a finished trial's ``constraint`` on its Optuna trial first."""

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        if result and isinstance(result.get("constraint"), (int, float)):
            trial = asked_optuna_trial(self, trial_id)
            if trial is not None:
                try:
                    trial.set_constraint(CONSTRAINT, float(result["constraint"]))
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass  # told already (a completion reported twice): Ray ignores it too
        super().on_trial_complete(trial_id, result=result, error=error)


def make_searcher(spec: StudySpec) -> OptunaSearch:
    """The searcher of ``spec``'s Tune experiment (one per explainer)."""
    sampler = make_sampler(spec.sampler, spec.study_seed, spec.num_samples)
    if spec.objective == "single":
        return OptunaSearch(metric="objective", mode="min", sampler=sampler)
    return ConstrainedOptunaSearch(metric=["select_attack_ssim", "select_utility"], mode=["min", "max"],
                                   sampler=sampler)
