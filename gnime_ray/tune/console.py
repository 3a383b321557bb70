"""What a study prints: its own progress, one line per event, and not Ray's internals.

``StudyConsole`` is a Tune callback on the driver: a line when a trial starts (its exact lambda,
NG width and gamma, copyable), when it is running on a node, at every fifth of its GNIME epochs
(with the time left at the trial's own rate so far),
when its attackers are launched and as each finishes, when it ends (objective and metrics, or
``diverged``) or fails. ``quiet_ray_logging`` keeps Ray's and Tune's own INFO/WARNING chatter
(experiment-state snapshots, checkpoint notices) off the console; ``--verbose`` shows everything,
and the workers' own output always stays in Ray's log folder (``ray.init(log_to_driver=False)``).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Callable

from ray.tune import Callback

from .. import time_left

Log = Callable[[str], None]
# Tune's loggers whose warnings (slow experiment-state syncs, checkpoint notices) are not the study's
RAY_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.air", "ray.data")


def quiet_ray_logging(verbose: bool) -> None:
    """Keep Ray's and Tune's own log lines off the console unless ``verbose``."""
    if verbose:
        return
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # "A new study created in memory ..."
    # a trial restored from its checkpoint reports its epochs again, which Ray's OptunaSearch passes on
    warnings.filterwarnings("ignore", message="The reported value is ignored because this `step")
    # Tune's new output engine prints an experiment header even when silent; its legacy reporter at
    # verbose=0 prints nothing. Also off: the periodic "experiment checkpoint is slow" warnings.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1e9")
    os.environ.setdefault("TUNE_WARN_SLOW_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1e9")


def describe_config(config: dict) -> str:
    """The trial's searched knobs with their exact values (what a user copies to reproduce it)."""
    parts = [f"lambda={config['lam']!r}", f"width={config['width']!r}"]
    if "gamma" in config:
        parts.append(f"gamma={config['gamma']!r}")
    if "gnime_seed" in config:
        parts.append(f"GNIME seed {config['gnime_seed']}")
    return " ".join(parts)


class StudyConsole(Callback):
    """One line per trial event (module docstring)."""

    def __init__(self, study: str, explainer: str, log: Log):
        self.prefix = f"[{study} {explainer}]"
        self.log = log
        self.seen_node: set[str] = set()
        self.last_epoch: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.first_seen: dict[tuple[str, str], tuple[float, int]] = {}  # (trial, stage) -> (time, count then)

    def _left(self, tid: str, stage: str, done: int, total: int) -> str:
        """'; ~N s left' from this trial's rate in this stage since its first report (blank at first)."""
        now = time.perf_counter()
        t0, d0 = self.first_seen.setdefault((tid, stage), (now, done))
        if done <= d0 or now <= t0 or done >= total:
            return ""
        return time_left(now - t0, done - d0, total - d0)

    def _say(self, trial, text: str) -> None:
        self.log(f"{self.prefix} trial {trial.trial_id}: {text}")

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.perf_counter()
        self._say(trial, f"started ({describe_config(trial.config)})")

    def on_trial_restore(self, iteration, trials, trial, **info):
        self._say(trial, "restored from its checkpoint")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = trial.trial_id
        if tid not in self.seen_node and result.get("node"):
            self.seen_node.add(tid)
            self._say(trial, f"running on {result['node']}" + (f", GNIME in {result['speed']}" if result.get("speed") else ""))
        stage = result.get("stage")
        if stage == "gnime":
            epoch, epochs = int(result["epoch"]), int(result["epochs"])
            step = max(1, epochs // 5)
            left = self._left(tid, "gnime", epoch, epochs)
            if epoch == epochs or epoch // step > self.last_epoch.get(tid, 0) // step:
                self.last_epoch[tid] = epoch
                self._say(trial, f"GNIME epoch {epoch}/{epochs}: L_adv {result['l_adv']:.4f} "
                                 f"L_dist {result['l_dist']:.4f}{left}")
        elif stage == "attack":
            done, total = int(result["attackers_done"]), int(result["attackers"])
            left = self._left(tid, "attack", done, total)
            if done == 0:
                self._say(trial, f"GNIME ready ({result['gnime_seconds']:.0f}s); {total} attackers to run (in its "
                                 f"attack pool and in its own process)")
            else:
                self._say(trial, f"attackers {done}/{total} finished{left}")
        elif result.get("final"):
            took = time.perf_counter() - self.started.get(tid, time.perf_counter())
            if result.get("status") == "diverged":
                self._say(trial, f"diverged: {result.get('error', '')} ({took:.0f}s)")
            else:
                constraint = result.get("constraint")
                feasible = "" if constraint is None else (", feasible" if constraint <= 0 else
                                                         ", infeasible (utility below the floor)")
                self._say(trial, f"finished in {took:.0f}s, on the selection images: attack SSIM "
                                 f"{result['select_attack_ssim']:.4f}, TCA {result['select_attack_tca']:.4f}, utility "
                                 f"{result['select_utility']:.4f}, perturbation MSE "
                                 f"{result['select_perturbation_mse']:.4g}{feasible}")

    def on_trial_error(self, iteration, trials, trial, **info):
        error = getattr(trial, "error_file", None) or ""
        self._say(trial, f"failed (Tune retries it up to its failure budget){'; error in ' + error if error else ''}")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._say(trial, "failed; Tune restarts it from its last checkpoint (a lost node costs time, not rows)")
