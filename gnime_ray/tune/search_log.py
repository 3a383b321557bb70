"""The search, kept as an Optuna study that outlives the driver and the cluster.

Ray's OptunaSearch keeps its Optuna study in the driver's memory (pickled into Tune's state, from
which only Tune can restore it). ``OptunaLog`` is a Tune callback that records every trial of an
explainer's experiment, as it ends, as a trial of an Optuna study named ``<study>-<explainer>`` in
a journal file (Optuna's JournalStorage): the exact lambda, NG width and gamma with their search
distributions, the searched values (named: the objective; or attack SSIM and utility for a
two-objective study, all measured on the selection images), the utility floor as the trial's
constraint (tune/search.py: feasible when <= 0), the trial's status (a diverged or failed trial as
Optuna's FAIL) and its other metrics as user attributes. The file is written on the driver (in a temporary folder that
``close`` removes) and copied to
``OUT/_optuna/<study>.log`` after each trial, and fetched from there when the study resumes, so
``optuna-dashboard OUT/_optuna/<study>.log`` and ``optuna.load_study`` open it from the results
root at any time (grid studies too). The Pareto flags of a multi-objective study are Optuna's own
``best_trials`` of that study, which holds feasible trials only.

Why a journal beside the sampler's study rather than the sampler's own storage (``OptunaSearch``'s
``storage=``): a results root is often a bucket (s3://, gs://), where Optuna's journal file, which
needs a local file and its lock, cannot live; and Tune checkpoints the searcher by pickling it, so
a driver killed between two checkpoints would leave trials asked but never told in a live
journal, which a restored searcher does not know. The journal here holds ended trials only, each
exactly once, and is copied to the results root whatever it is.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import optuna
import pyarrow.fs as pafs
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune import Callback

from ..store.root import resolve_out, write_file
from .search import CONSTRAINT
from ..study.spec import StudySpec

USER_ATTRS = ("select_attack_ssim", "select_attack_tca", "select_utility", "select_utility_min",
              "select_perturbation_mse", "constraint", "objective", "gnime_seconds", "attack_phase_seconds",
              "idle_share", "node")


def optuna_relpath(study: str) -> str:
    return f"_optuna/{study}.log"


# what each searched value is, as optuna-dashboard shows it
METRIC_NAMES = {"single": ["objective: attack SSIM on the selection images (1 + floor - utility below the "
                           "utility floor)"],
                "multi": ["attack SSIM on the selection images", "utility DeePSiM on the selection images (the "
                          "utility floor is the constraint)"]}


def open_study(path: Path, name: str, directions: list[str]) -> optuna.Study:
    return optuna.create_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))),
                               directions=directions, load_if_exists=True)


class OptunaLog(Callback):
    """Every ended trial of one explainer's experiment as a trial of an Optuna study (module
    docstring)."""

    def __init__(self, spec: StudySpec, explainer: str):
        self.spec, self.explainer = spec, explainer
        fs, root = resolve_out(spec.out)
        remote = f"{root}/{optuna_relpath(spec.name)}"
        self.path = Path(tempfile.mkdtemp(prefix="gnime-optuna-")) / f"{spec.name}.log"
        if fs.get_file_info(remote).type == pafs.FileType.File:  # resuming: continue the saved one
            with fs.open_input_stream(remote) as src:
                self.path.write_bytes(src.read())
        self.directions = ["minimize"] if spec.objective == "single" else ["minimize", "maximize"]
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = open_study(self.path, f"{spec.name}-{explainer}", self.directions)
        if self.study.metric_names is None:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use since
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(METRIC_NAMES[spec.objective])
        self.known = {t.user_attrs.get("tune_trial_id") for t in self.study.trials}

    def _distributions(self) -> dict:
        """Optuna's distributions of ``spec.search_space()``."""
        return {name: FloatDistribution(*p.values, log=True) if p.kind == "loguniform"
                else CategoricalDistribution(list(p.values)) for name, p in self.spec.search_space().items()}

    def record(self, trial_id: str, config: dict, result: Optional[dict]) -> None:
        if trial_id in self.known:
            return
        dists = self._distributions()
        params = {k: config[k] for k in dists}
        result = result or {}
        status = result.get("status", "finished") if result.get("final") else "failed"
        attrs = {"tune_trial_id": trial_id, "status": status, "error": str(result.get("error", ""))[:500]}
        attrs.update({k: config[k] for k in ("lam", "width", "gamma") if k in config and k not in dists})
        attrs.update({k: result[k] for k in USER_ATTRS if isinstance(result.get(k), (int, float, str))
                      and not (isinstance(result.get(k), float) and math.isnan(result[k]))})
        constraints = None
        if status == "finished":
            values = ([result["objective"]] if self.spec.objective == "single"
                      else [result["select_attack_ssim"], result["select_utility"]])
            state = TrialState.COMPLETE
            if self.spec.objective == "multi" and isinstance(result.get("constraint"), (int, float)):
                constraints = {CONSTRAINT: float(result["constraint"])}
        else:
            values, state = None, TrialState.FAIL
        self.study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, values=values, state=state,
                                                       user_attrs=attrs, constraints=constraints))
        self.known.add(trial_id)
        write_file(self.spec.out, optuna_relpath(self.spec.name), self.path.read_bytes())

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.record(trial.trial_id, trial.config, trial.last_result)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.record(trial.trial_id, trial.config, None)

    def close(self) -> None:
        """Remove the driver's working copy (the results root keeps the journal)."""
        shutil.rmtree(self.path.parent, ignore_errors=True)

    def pareto_trials(self) -> set[str]:
        """Tune ids of the study's Pareto-optimal feasible trials (two objectives: Optuna's best_trials)."""
        return {t.user_attrs["tune_trial_id"] for t in self.study.best_trials}
