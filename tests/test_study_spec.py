"""gnime_ray/study/spec.py: a study's spec is validated field by field, and its cells are the one
list both engines run (study/cells.py)."""

import pytest

from study_specs import smoke_spec as _spec


def test_study_spec_validation(tmp_path):
    with pytest.raises(ValueError, match="defenses"):
        _spec(tmp_path, "x", defenses=("none",))
    with pytest.raises(ValueError, match="name"):
        _spec(tmp_path, "_hidden")
    with pytest.raises(ValueError, match="attacker_gpu"):
        _spec(tmp_path, "x", attacker_gpu=1.5)
    for field, value in (("lam_range", (10.0, float("inf"))), ("widths", (float("nan"),)),
                         ("gamma_range", (1e-3, float("inf"))), ("gammas", (float("nan"),)),
                         ("trial_gpu", float("nan")), ("attacker_gpu", float("inf")), ("pool_allocator", "tcmalloc")):
        with pytest.raises(ValueError, match=field):
            _spec(tmp_path, "x", **{field: value})
