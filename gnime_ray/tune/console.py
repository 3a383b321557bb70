"""What a study prints: its own progress, one line per event, and not Ray's internals.

``StudyConsole`` is a Tune callback on the driver: a line when a trial starts (its exact lambda,
NG width and gamma, copyable), when it is running on a node, at every fifth of its GNIME epochs
(with the time left at the trial's own rate so far),
when its attackers are launched and as each finishes, when it ends (objective and metrics, or
``diverged``) or fails. On a terminal it also draws one tqdm bar per experiment, in trials (a
running trial counts by its GNIME epochs and finished attackers, the GNIME's share of a trial
learnt from the trials that ended, a half before), with tqdm's estimate of the time left; the
lines are written around it, and where the output is not a terminal (a log file, CI) there is no
bar, only the lines. ``quiet_ray_logging`` keeps Ray's and Tune's own INFO/WARNING chatter
(experiment-state snapshots, checkpoint notices) off the console; ``--verbose`` shows everything,
and the workers' own output always stays in Ray's log folder (``ray.init(log_to_driver=False)``).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Callable, Optional

from ray.tune import Callback

from .. import time_left
from ..progress import around_bars, progress_bar

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

    def __init__(self, study: str, explainer: str, log: Log, trials: Optional[int] = None,
                 bar: Optional[bool] = None):
        """``trials``: how many trials the experiment runs (the bar's total; no bar without it);
        ``bar``: draw it (None: when stderr is a terminal)."""
        self.prefix = f"[{study} {explainer}]"
        self.log = log
        self.seen_node: set[str] = set()
        self.last_epoch: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.first_seen: dict[tuple[str, str], tuple[float, int]] = {}  # (trial, stage) -> (time, count then)
        self.parts: dict[str, tuple[float, float]] = {}  # trial -> (GNIME done, attackers done), fractions
        self.gnime_shares: list[float] = []  # of the trials that ended: GNIME seconds / trial seconds
        self.bar = progress_bar(trials, f"{study} {explainer}", "trial", bar) if trials else None

    def progress(self) -> float:
        """Trials done, a running trial counted by its share: GNIME epochs and finished attackers,
        weighted by the GNIME's share of the trials that ended (a half before any has)."""
        share = sum(self.gnime_shares) / len(self.gnime_shares) if self.gnime_shares else 0.5
        return sum(share * g + (1.0 - share) * a for g, a in self.parts.values())

    def _advance(self, tid: str, gnime: Optional[float] = None, attack: Optional[float] = None) -> None:
        g, a = self.parts.get(tid, (0.0, 0.0))
        self.parts[tid] = (g if gnime is None else gnime, a if attack is None else attack)
        if self.bar is not None and not self.bar.disable:
            self.bar.n = self.progress()
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment's state; a bar (a lock, a terminal) is not kept
        return {**self.__dict__, "bar": None}

    def on_step_begin(self, iteration, trials, **info):
        for t in trials:  # trials that ended before this driver (a restored experiment) count as done
            if t.status in ("TERMINATED", "ERROR") and self.parts.get(t.trial_id) != (1.0, 1.0):
                self._advance(t.trial_id, gnime=1.0, attack=1.0)

    def on_experiment_end(self, trials, **info):
        self.close()

    def _left(self, tid: str, stage: str, done: int, total: int) -> str:
        """'; ~N s left' from this trial's rate in this stage since its first report (blank at first)."""
        now = time.perf_counter()
        t0, d0 = self.first_seen.setdefault((tid, stage), (now, done))
        if done <= d0 or now <= t0 or done >= total:
            return ""
        return time_left(now - t0, done - d0, total - d0)

    def _say(self, trial, text: str) -> None:
        around_bars(self.log)(f"{self.prefix} trial {trial.trial_id}: {text}")

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
            self._advance(tid, gnime=epoch / epochs)
            if epoch == epochs or epoch // step > self.last_epoch.get(tid, 0) // step:
                self.last_epoch[tid] = epoch
                self._say(trial, f"GNIME epoch {epoch}/{epochs}: L_adv {result['l_adv']:.4f} "
                                 f"L_dist {result['l_dist']:.4f}{left}")
        elif stage == "attack":
            done, total = int(result["attackers_done"]), int(result["attackers"])
            left = self._left(tid, "attack", done, total)
            self._advance(tid, gnime=1.0, attack=done / total if total else 1.0)
            if done == 0:
                self._say(trial, f"GNIME ready ({result['gnime_seconds']:.0f}s); {total} attackers to run (in its "
                                 f"attack pool and in its own process)")
            else:
                self._say(trial, f"attackers {done}/{total} finished{left}")
        elif result.get("final"):
            took = time.perf_counter() - self.started.get(tid, time.perf_counter())
            trial_seconds = result.get("gnime_seconds", 0.0) + result.get("attack_phase_seconds", 0.0)
            if result.get("status") != "diverged" and trial_seconds > 0:
                self.gnime_shares.append(result.get("gnime_seconds", 0.0) / trial_seconds)
            self._advance(tid, gnime=1.0, attack=1.0)
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
