"""Statistics of a held-out comparison between two defences (docs/studies.md, "The search's question and the held-out frontier").

- ``paired_bootstrap``: the difference in a per-image metric (attack SSIM) between defence A
  (GNIME) and defence B (RND or OND) with a 95% percentile interval. The data are crossed: every
  trained GNIME (and every attacker) is measured on the SAME test images, and B's noise is matched
  to GNIME seed g's own perturbation or utility, so the unit of comparison is (GNIME seed g, image
  i): d_gi = mean over A's attack seeds of A[g, s, i] - mean over B's attack seeds of B[g, s', i].
  The estimate is the mean of d over g and i. Each bootstrap replicate resamples, with
  replacement and independently, the GNIME seeds, the test images (one resample of images shared
  by every GNIME and both defences: the pairing is kept) and, within each (defence, GNIME), the
  attack seeds. Resampling both crossed factors is Owen's pigeonhole bootstrap (Ann. Appl. Stat.
  2007), the crossed-design form of the nested bootstrap the issue asked for; resampling images
  alone would treat the GNIMEs' training luck as fixed. With few GNIMEs or attack seeds (2 or 3)
  any bootstrap underestimates their share of the variance (by (k - 1) / k for k units), so a
  narrow interval from 2 GNIMEs is a lower bound on the uncertainty, which the docs say.
- ``hypervolume_2d``: the area a set of (attack SSIM, utility) points dominates (SSIM down, utility
  up) inside the box bounded by a fixed reference point (worst SSIM, worst utility): one number per
  defence's held-out front, larger = a better trade-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """``estimate`` and its percentile interval [``low``, ``high``] at ``confidence``; ``resamples``
    bootstrap replicates; ``units``: (GNIME seeds, test images)."""

    estimate: float
    low: float
    high: float
    confidence: float
    resamples: int
    units: tuple[int, int]

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def _per_gnime(values: Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    """Each GNIME's (attack seeds, images) array, validated."""
    out = []
    for g, v in enumerate(values):
        a = np.asarray(v, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise ValueError(f"{name}[{g}] must be an (attack seeds, images) array, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name}[{g}] has non-finite values")
        out.append(a)
    return out


def paired_bootstrap(a: Sequence[np.ndarray], b: Sequence[np.ndarray], *, resamples: int = RESAMPLES,
                     confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """a[g], b[g]: (attack seeds, images) arrays of a per-image metric for GNIME seed g under
    defences A and B (the same images, in the same order, in every array; the attack seed counts
    may differ). Returns the mean of A - B with its percentile interval (module docstring)."""
    a, b = _per_gnime(a, "a"), _per_gnime(b, "b")
    if len(a) != len(b) or not a:
        raise ValueError(f"a and b need the same number (>= 1) of GNIMEs, got {len(a)} and {len(b)}")
    n = a[0].shape[1]
    if any(x.shape[1] != n for x in a + b):
        raise ValueError("every array must hold the same test images (equal second dimensions)")
    if not (isinstance(resamples, int) and resamples >= 1):
        raise ValueError(f"resamples must be an integer >= 1, got {resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    k = len(a)
    estimate = float(np.mean([x.mean() - y.mean() for x, y in zip(a, b)]))
    rng = np.random.default_rng(seed)
    # one image resample per replicate, as counts: the mean over resampled images of a row is row @ w / n
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)  # (R, n)
    per_seed_a = [w @ x.T / n for x in a]  # (R, attack seeds) per GNIME: each seed's mean over the resample
    per_seed_b = [w @ y.T / n for y in b]
    rows = np.arange(resamples)[:, None]
    diff_by_gnime = np.empty((resamples, k))
    for g in range(k):
        sa = rng.integers(0, a[g].shape[0], size=(resamples, a[g].shape[0]))
        sb = rng.integers(0, b[g].shape[0], size=(resamples, b[g].shape[0]))
        diff_by_gnime[:, g] = per_seed_a[g][rows, sa].mean(1) - per_seed_b[g][rows, sb].mean(1)
    gnimes = rng.integers(0, k, size=(resamples, k))
    replicates = diff_by_gnime[rows, gnimes].mean(1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return Interval(estimate, float(low), float(high), confidence, resamples, (k, n))


def hypervolume_2d(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """The area dominated by ``points`` (attack SSIM to minimise, utility to maximise) within the
    box up to ``reference`` = (worst SSIM, worst utility); points outside the box add nothing."""
    ref_s, ref_u = reference
    inside = sorted((s, u) for s, u in points if np.isfinite(s) and np.isfinite(u) and s < ref_s and u > ref_u)
    area, best_u = 0.0, ref_u
    for (s, u), nxt in zip(inside, [p[0] for p in inside[1:]] + [ref_s]):
        best_u = max(best_u, u)  # the best utility of any point at SSIM <= s
        area += (nxt - s) * (best_u - ref_u)
    return area
