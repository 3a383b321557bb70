"""A smoke study's spec for the tests of both engines' study (tests import it by name: tests/ is on sys.path)."""

from gnime_ray.config import get_preset
from gnime_ray.study.spec import StudySpec


def smoke_spec(tmp, name, **kw):
    base = dict(name=name, dataset="digits", out=str(tmp / "out"), preset=get_preset("smoke"), attack_seeds=2,
                num_samples=2, max_concurrent_trials=2, attackers_per_trial=1, checkpoint_every=1,
                cache_dir=str(tmp / "cache"))
    base.update(kw)
    return StudySpec(**base)
