"""The figures' choice of the one GNIME configuration whose reconstructions they show."""

import math

import pytest

from gnime_ray import GnimeRayError
from gnime_ray.report.figures import _one_configuration


def _gnime_row(lam=100.0, gamma=None, gnime_seed=0, trial=""):
    gamma = float("nan") if gamma is None else gamma  # a NaN object per row, as Parquet gives them
    return {"explainer": "lrp", "defense": "gnime", "figure_sample": "x", "trial": trial, "lambda": lam,
            "ng_width": 1.0, "gamma": gamma, "study_seed": 0, "gnime_seed": gnime_seed}


def test_gnimes_at_their_own_perturbation_are_one_configuration():
    # gamma is NaN in the rows of GNIMEs released at their own size, and NaN != NaN: two GNIME seeds of one
    # configuration once read as two configurations (the frontier study's figures refused to draw)
    rows = [_gnime_row(gnime_seed=0), _gnime_row(gnime_seed=1)]
    with pytest.raises(GnimeRayError, match=r"pass --gnime-seed \(one of 0, 1\)"):
        _one_configuration(rows, "s", "lrp", None, None)
    lam, width, gamma, study_seed, seed = _one_configuration(rows, "s", "lrp", None, 1)
    assert (lam, width, study_seed, seed) == (100.0, 1.0, 0, 1) and math.isnan(gamma)


def test_two_configurations_are_refused_naming_the_flag():
    rows = [_gnime_row(lam=100.0), _gnime_row(lam=10.0)]
    with pytest.raises(GnimeRayError, match="holds 2 GNIME configurations for lrp: give the configuration its own study"):
        _one_configuration(rows, "s", "lrp", None, None)
    rows = [_gnime_row(gamma=0.01, trial="a"), _gnime_row(gamma=0.02, trial="b")]
    with pytest.raises(GnimeRayError, match=r"pass --trial \(one of a, b\)"):
        _one_configuration(rows, "s", "lrp", None, None)
