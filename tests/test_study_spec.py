"""gnime_ray/study/spec.py and tune/placement.py: what a study computes and how the Ray engine places
it are validated field by field, apart."""

import dataclasses

import pytest

from gnime_ray.study.spec import PATH_FIELDS, StudySpec, identity
from gnime_ray.tune.placement import Placement
from study_specs import smoke_spec as _spec


def test_study_spec_validation(tmp_path):
    with pytest.raises(ValueError, match="defenses"):
        _spec(tmp_path, "x", defenses=("none",))
    with pytest.raises(ValueError, match="name"):
        _spec(tmp_path, "_hidden")
    for field, value in (("lam_range", (10.0, float("inf"))), ("widths", (float("nan"),)),
                         ("gamma_range", (1e-3, float("inf"))), ("gammas", (float("nan"),))):
        with pytest.raises(ValueError, match=field):
            _spec(tmp_path, "x", **{field: value})


def test_placement_validation():
    with pytest.raises(ValueError, match="attacker_gpu must be a finite number in \\(0, 1\\], got 1.5"):
        Placement(attacker_gpu=1.5)
    for field, value in (("trial_gpu", float("nan")), ("attacker_gpu", float("inf")), ("pool_allocator", "tcmalloc"),
                         ("max_concurrent_trials", 0), ("attackers_per_trial", 0), ("cpus_per_task", 0.0),
                         ("checkpoint_every", 0), ("use_gpu", "yes")):
        with pytest.raises(ValueError, match=field):
            Placement(**{field: value})
    assert Placement(trial_gpu=0.5, use_gpu=False).gpu_trial == 0.0 and Placement(use_gpu=True).gpu_attacker == 0.25


def test_a_spec_holds_what_a_study_computes_and_its_identity_leaves_out_its_paths(tmp_path):
    """No placement field is a spec field; every spec field but the paths is in the identity, and
    changing a path changes nothing in it."""
    fields = {f.name for f in dataclasses.fields(StudySpec)}
    assert not fields & {f.name for f in dataclasses.fields(Placement)}
    spec = _spec(tmp_path, "x")
    assert set(identity(spec)) == fields - set(PATH_FIELDS)
    moved = dataclasses.replace(spec, out=str(tmp_path / "elsewhere"), cache_dir=None, data_root="/data")
    assert identity(moved) == identity(spec)
