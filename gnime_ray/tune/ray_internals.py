"""The places where gnime_ray needs a part of Ray that Ray does not make public, in one module.

Everything else uses Ray's public API. These have no public equivalent in the supported Ray
versions (``SUPPORTED_RAY``, the range pyproject.toml pins):

- **The cluster this machine joined with ``ray start``**: the address Ray records for it
  (``ray._private.services.find_bootstrap_address``, what ``ray.init()`` itself reads), so that a
  script can tell joining it from starting a private Ray (tune/cluster.py).
- **Validating a cluster file** the way ``ray up`` does: ``ray.autoscaler._private.util``'s
  ``prepare_config`` (fills the provider's defaults) and ``validate_config`` (the JSON schema).
- **Printing through a restored search's console**: ``Tuner.restore`` brings back the callbacks
  pickled with the experiment and takes no new ones, so the restored tuner's run config
  (``Tuner._local_tuner._run_config``) is given this run's callbacks.
- **A search's constraint**: Ray's ``OptunaSearch`` tells Optuna a trial's values and nothing else,
  and Optuna's samplers read a trial's constraints when it is told, so the constraint must be set on
  the Optuna trial Ray asked for that Tune trial (``OptunaSearch._ot_trials``) just before
  (tune/search.py).

Each accessor raises ``RayInternalsMoved`` naming the attribute and the installed Ray when the
attribute is gone, instead of working silently without it; ``missing()`` lists what is absent,
which ``tests/test_ray_internals.py`` asserts is nothing, so an upgrade of Ray that moves one
fails loudly in the tests.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Optional

from .. import GnimeRayError

SUPPORTED_RAY = ">=2.60,<2.61"  # the range of ray[tune] in pyproject.toml


class RayInternalsMoved(GnimeRayError):
    """A private part of Ray this version of gnime_ray relies on is not where it was."""


def _moved(what: str) -> RayInternalsMoved:
    import ray

    return RayInternalsMoved(f"Ray {ray.__version__} has no {what}, which gnime_ray uses (supported Ray: "
                             f"{SUPPORTED_RAY}); install a supported Ray")


def cluster_config_validators() -> tuple[Callable[[dict], dict], Callable[[dict], None]]:
    """(prepare_config, validate_config) of Ray's autoscaler."""
    try:
        util = importlib.import_module("ray.autoscaler._private.util")
        return util.prepare_config, util.validate_config
    except (ImportError, AttributeError):
        raise _moved("ray.autoscaler._private.util.prepare_config / validate_config") from None


def recorded_cluster_address() -> Optional[str]:
    """The GCS address of the cluster this machine joined with ``ray start`` (None without one)."""
    try:
        from ray._private.services import find_bootstrap_address
    except ImportError:
        raise _moved("ray._private.services.find_bootstrap_address") from None
    return find_bootstrap_address(None)


def set_restored_callbacks(tuner: Any, callbacks: list) -> None:
    """Give a tuner made by ``Tuner.restore`` this run's callbacks (module docstring)."""
    run_config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)
    if run_config is None or not hasattr(run_config, "callbacks"):
        raise _moved("Tuner._local_tuner._run_config.callbacks")
    run_config.callbacks = callbacks


def asked_optuna_trial(searcher: Any, trial_id: str) -> Any:
    """The Optuna trial that Ray's ``OptunaSearch`` asked for the Tune trial ``trial_id`` (None if
    it asked none)."""
    trials = getattr(searcher, "_ot_trials", None)
    if not isinstance(trials, dict):
        raise _moved("OptunaSearch._ot_trials")
    return trials.get(trial_id)


def missing() -> list[str]:
    """The private parts listed above that the installed Ray lacks (empty: all present). The
    tuner's and the searcher's are checked in Ray's source (instance attributes exist only on a
    restored tuner and a running searcher; the resume and multi-objective tests use both for real)."""
    import inspect

    from ray import tune
    from ray.tune.impl.tuner_internal import TunerInternal

    gone = []
    for accessor in (cluster_config_validators, recorded_cluster_address):
        try:
            accessor()
        except RayInternalsMoved as exc:
            gone.append(str(exc))
    if "self._local_tuner" not in inspect.getsource(tune.Tuner) or "self._run_config" not in inspect.getsource(
            TunerInternal):
        gone.append(str(_moved("Tuner._local_tuner._run_config")))
    from ray.tune.search.optuna import OptunaSearch

    if "self._ot_trials[trial_id]" not in inspect.getsource(OptunaSearch.on_trial_complete):
        gone.append(str(_moved("OptunaSearch._ot_trials")))
    return gone
