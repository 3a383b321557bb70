"""The statistics of a held-out comparison (gnime_ray/statistics.py) against hand-computed cases, and
the N-independent utility measure (metrics.py ``topk_agreement``)."""

import itertools
import math

import numpy as np
import pytest
import torch

from gnime_ray.metrics import topk_agreement
from gnime_ray.statistics import hypervolume_2d, paired_bootstrap


def test_paired_bootstrap_on_two_images_has_the_enumerable_distribution():
    """One GNIME, one attack seed each, per-image differences 0 and 1: a replicate's mean over two
    resampled images is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the 2.5% and 97.5%
    percentiles are 0 and 1 and the estimate 0.5."""
    a, b = [np.array([[0.3, 0.9]])], [np.array([[0.3, -0.1]])]
    iv = paired_bootstrap(a, b, resamples=4000, seed=1)
    assert iv.estimate == pytest.approx(0.5)
    assert (iv.low, iv.high) == (0.0, 1.0)
    assert iv.units == (1, 2) and not iv.excludes_zero()


def test_paired_bootstrap_keeps_the_pairing_of_images():
    """A constant difference between the defences on every image gives a degenerate interval,
    however much the images themselves differ (the images are resampled together under both)."""
    rng = np.random.default_rng(0)
    base = [rng.uniform(0, 1, (3, 50)) for _ in range(2)]
    b = [x.copy() for x in base]
    a = [x - 0.1 for x in base]
    # attack seeds differ within a GNIME: their resampling moves a and b alike only if the seeds are paired,
    # which they are not; so use one seed per defence to test the images' pairing alone
    a1, b1 = [x[:1] for x in a], [x[:1] for x in b]
    iv = paired_bootstrap(a1, b1, resamples=500, seed=2)
    assert iv.estimate == pytest.approx(-0.1) and iv.low == pytest.approx(-0.1) and iv.high == pytest.approx(-0.1)
    assert iv.excludes_zero()


def test_paired_bootstrap_spreads_match_the_crossed_distribution():
    """Two GNIMEs whose differences are offset by +-delta on 200 images of spread s: resampling the
    two GNIMEs gives a replicate mean of +delta, 0 or -delta with probabilities 1/4, 1/2, 1/4, each
    blurred by the images' resampling (normal, variance s^2 / n): the interval's ends are that
    mixture's 2.5% and 97.5% quantiles, as the pigeonhole bootstrap gives for a crossed design."""
    rng = np.random.default_rng(3)
    n, s, delta = 200, 0.05, 0.02
    noise = rng.normal(0, s, n)
    noise -= noise.mean()
    a = [np.array([0.5 + delta + noise]), np.array([0.5 - delta + noise])]
    b = [np.array([np.zeros(n) + 0.4]), np.array([np.zeros(n) + 0.4])]
    iv = paired_bootstrap(a, b, resamples=20000, seed=4)
    assert iv.estimate == pytest.approx(0.1)
    sd = math.sqrt(noise.var() / n)

    def cdf(x: float) -> float:
        return sum(w * 0.5 * (1 + math.erf((x - m) / (sd * math.sqrt(2))))
                   for w, m in ((0.25, 0.1 - delta), (0.5, 0.1), (0.25, 0.1 + delta)))

    def quantile(q: float) -> float:
        lo, hi = 0.0, 0.2
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if cdf(mid) < q else (lo, mid)
        return lo

    assert iv.low == pytest.approx(quantile(0.025), abs=0.001)
    assert iv.high == pytest.approx(quantile(0.975), abs=0.001)


def test_paired_bootstrap_refuses_bad_input():
    with pytest.raises(ValueError, match="same number"):
        paired_bootstrap([np.zeros((1, 3))], [])
    with pytest.raises(ValueError, match="same test images"):
        paired_bootstrap([np.zeros((1, 3))], [np.zeros((1, 4))])
    with pytest.raises(ValueError, match=r"a\[0\] has non-finite"):
        paired_bootstrap([np.array([[np.nan, 1.0]])], [np.zeros((1, 2))])
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap([np.zeros((1, 3))], [np.zeros((1, 3))], resamples=0)


def test_hypervolume_2d_by_hand():
    ref = (1.0, 0.8)
    assert hypervolume_2d([(0.5, 0.9)], ref) == pytest.approx(0.5 * 0.1)
    # two points, by inclusion-exclusion: 0.6 x 0.05 + 0.4 x 0.15 - 0.4 x 0.05
    assert hypervolume_2d([(0.4, 0.85), (0.6, 0.95)], ref) == pytest.approx(0.07)
    # a dominated point adds nothing; points outside the box add nothing; order does not matter
    pts = [(0.6, 0.95), (0.4, 0.85), (0.7, 0.9), (1.2, 0.99), (0.3, 0.7)]
    for perm in itertools.permutations(pts):
        assert hypervolume_2d(list(perm), ref) == pytest.approx(0.07)
    assert hypervolume_2d([], ref) == 0.0


def test_hypervolume_2d_against_a_grid_count():
    rng = np.random.default_rng(5)
    pts = [tuple(p) for p in rng.uniform([0.2, 0.8], [1.0, 1.0], (6, 2))]
    ref = (1.0, 0.8)
    s, u = np.meshgrid(np.linspace(0.2, 1.0, 801)[:-1] + 0.0005, np.linspace(0.8, 1.0, 801)[:-1] + 0.000125)
    dominated = np.zeros_like(s, dtype=bool)
    for ps, pu in pts:
        dominated |= (s >= ps) & (u <= pu)
    cell = (0.8 / 800) * (0.2 / 800)
    assert hypervolume_2d(pts, ref) == pytest.approx(dominated.sum() * cell, abs=2e-4)


def test_topk_agreement_by_hand_and_invariances():
    e = torch.arange(20, dtype=torch.float32).view(1, 1, 4, 5) / 19  # top 10% = 2 values: the last two pixels
    assert topk_agreement(e, e).tolist() == [1.0]
    assert topk_agreement(e, e * 0.5 + 0.2).tolist() == [1.0]  # an increasing transform keeps the ranking
    assert topk_agreement(e, 1 - e).tolist() == [0.0]  # reversed: the least important become the top
    swapped = e.clone().flatten()
    swapped[19], swapped[0] = swapped[0].item(), swapped[19].item()  # one of the two top pixels moved away
    assert topk_agreement(e, swapped.view(1, 1, 4, 5)).tolist() == [0.5]
    assert topk_agreement(e, e, fraction=0.25).tolist() == [1.0]
    with pytest.raises(ValueError, match="fraction"):
        topk_agreement(e, e, fraction=0)
    with pytest.raises(ValueError, match="one shape"):
        topk_agreement(e, e[:, :, :2])
