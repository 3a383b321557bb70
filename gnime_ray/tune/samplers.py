"""The search's Optuna sampler, and the measurement that chose it: ``python -m gnime_ray.tune.samplers``.

A study's search is small (3 to 24 trials, two at a time) and two-objective (attack SSIM down,
utility up) with one constraint (utility >= the floor). Optuna's defaults are made for longer
searches: TPE samples its first 10 trials at random, NSGA-II's first population is 50. Which
sampler finds the better front in so few trials is measured here, not assumed: each candidate
searches a surrogate of the study's problem, ``surrogate``, at the studies' trial counts with two
trials asked before any is told, and the hypervolume of the feasible trials' noise-free values
(statistics.py ``hypervolume_2d``, reference (SSIM 1, the utility floor)) is averaged over seeds.

The surrogate has the study's search space (log lambda, NG width, log gamma) and its measured
scales (LRP on real MNIST at the quick preset, docs/results.md): attack SSIM 0.967 without noise,
0.90 at gamma 0.0018, 0.85 at 0.0039, 0.61 at 0.0147; utility (DeePSiM at the paper's N) 0.963,
0.951, 0.914 there; seed noise of the size measured between GNIMEs (SSIM 0.01, utility 0.002).
How lambda and the width move them is not measured at this scale; the surrogate gives lambda an
interior optimum for privacy and a utility cost, the width a small effect, so that a sampler has
something to find beyond gamma. The verdict (docs/studies.md) is therefore about sample
efficiency on a problem of this shape and size, and is re-measured by running this module.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Callable

import numpy as np
import optuna

from ..statistics import hypervolume_2d
from ..study.spec import SAMPLERS


def startup_trials(trials: int) -> int:
    """Random trials before a model-based sampler models: a third of the search, at least 2."""
    return max(2, trials // 3)


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` for a search of ``trials`` trials, seeded. 'tpe': multivariate TPE
    with ``startup_trials(trials)`` random trials and the constant liar (running trials count as
    bad, so two concurrent trials are not asked for the same point); 'gp': Gaussian-process
    Bayesian optimisation (log EHVI with constraints) after the same start; 'random'."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup_trials(trials),
                                          constant_liar=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(trials))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")


# the surrogate's search space: the quickstart's
LAMBDA_RANGE, WIDTHS, GAMMA_RANGE, FLOOR = (5.0, 200.0), (0.5, 1.0), (1e-3, 1.6e-2), 0.93


def surrogate(lam: float, width: float, gamma: float) -> tuple[float, float]:
    """Noise-free (attack SSIM, utility) of the surrogate problem (module docstring)."""
    privacy = 8.5 * math.exp(-0.5 * ((math.log10(lam) - 1.6) / 0.7) ** 2) * (1 + 0.05 * math.log2(width))
    ssim = 0.967 - privacy * gamma ** 0.75
    utility = 1 - 0.71 * (1 + 0.15 * (math.log10(lam) - 2)) * gamma ** 0.5
    return ssim, utility


def _search(sampler: optuna.samplers.BaseSampler, trials: int, seed: int, concurrent: int = 2) -> float:
    """One surrogate search; the hypervolume of its feasible trials' noise-free values."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    rng = np.random.default_rng(seed)
    dists = {"lam": optuna.distributions.FloatDistribution(*LAMBDA_RANGE, log=True),
             "width": optuna.distributions.CategoricalDistribution(list(WIDTHS)),
             "gamma": optuna.distributions.FloatDistribution(*GAMMA_RANGE, log=True)}
    true = []
    while len(true) < trials:
        batch = [study.ask(dists) for _ in range(min(concurrent, trials - len(true)))]
        for t in batch:
            s, u = surrogate(t.params["lam"], t.params["width"], t.params["gamma"])
            true.append((s, u))
            t.set_constraint("utility_floor", FLOOR - (u + rng.normal(0, 0.002)))
            study.tell(t, [s + rng.normal(0, 0.01), u + rng.normal(0, 0.002)])
    return hypervolume_2d([(s, u) for s, u in true if u >= FLOOR], (1.0, FLOOR))


def measure(counts: tuple[int, ...], seeds: int, log: Callable[[str], None] = print) -> dict:
    """Mean hypervolume (and its standard error) of each sampler at each trial count."""
    results = {}
    log(f"surrogate search: lambda {LAMBDA_RANGE}, widths {WIDTHS}, gamma {GAMMA_RANGE}, utility floor {FLOOR}; "
        f"{seeds} seeds; two trials asked at a time")
    log("| sampler | " + " | ".join(f"{n} trials" for n in counts) + " | seconds |")
    log("|---|" + "---|" * (len(counts) + 1))
    for name in SAMPLERS:
        t0 = time.perf_counter()
        cells = []
        for n in counts:
            hv = [_search(make_sampler(name, 1000 * n + s, n), n, s) for s in range(seeds)]
            results[(name, n)] = (float(np.mean(hv)), float(np.std(hv, ddof=1) / math.sqrt(seeds)))
            cells.append(f"{results[(name, n)][0]:.5f} ± {results[(name, n)][1]:.5f}")
        log(f"| {name} | " + " | ".join(cells) + f" | {time.perf_counter() - t0:.0f} |")
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", default="4,8,16,24", help="comma-separated trial counts")
    p.add_argument("--seeds", type=int, default=30, help="searches per sampler and count")
    args = p.parse_args()
    measure(tuple(int(n) for n in args.trials.split(",")), args.seeds)


if __name__ == "__main__":
    main()
