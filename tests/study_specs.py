"""A smoke study for the tests of both engines (tests import it by name: tests/ is on sys.path):
``smoke_spec`` (what it computes) and ``smoke_study`` (that and how the Ray engine places it)."""

import dataclasses

from gnime_ray.config import get_preset
from gnime_ray.study.spec import StudySpec
from gnime_ray.tune.placement import Placement

PLACEMENT_FIELDS = {f.name for f in dataclasses.fields(Placement)}


def smoke_spec(tmp, name, **kw) -> StudySpec:
    base = dict(name=name, dataset="digits", out=str(tmp / "out"), preset=get_preset("smoke"), attack_seeds=2,
                num_samples=2, cache_dir=str(tmp / "cache"))
    base.update(kw)
    return StudySpec(**base)


def smoke_study(tmp, name, **kw) -> tuple[StudySpec, Placement]:
    """A smoke spec and its placement (two trials at once, one attacker per pool, a checkpoint every
    epoch); ``kw`` may hold fields of either."""
    placed = {k: kw.pop(k) for k in list(kw) if k in PLACEMENT_FIELDS}
    return smoke_spec(tmp, name, **kw), Placement(**{"max_concurrent_trials": 2, "attackers_per_trial": 1,
                                                     "checkpoint_every": 1, **placed})
