"""The cells a study makes: one list for both engines (a cell is one attacker's row).

``baseline_cells``: PredMI and ExpMI without defence per explainer, at each attack seed: the
reference lines of every table and frontier. ``defence_cells``: the cells built on one GNIME
training configuration (its explainer, lambda, NG width, GNIME seeds): each gamma (GNIME's own
perturbation, or every budget) x each defence (RND and OND once per ``matches`` entry, GNIME at
its own perturbation) x each GNIME seed x each attack seed. The local engine
(pipeline/matrix.py ``matrix_specs``) lists every configuration's cells at once; the Ray engine
runs the baselines as tasks (tune/study.py) and each trial's defence cells in its attack pool
(tune/trial.py).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional, Sequence

from ..cellspec import CellSpec


def baseline_cells(dataset: str, explainers: Sequence[str], attack_seeds: Iterable[int], *, study_seed: int = 0,
                   variant: str = "paper", aux: str = "same") -> list[CellSpec]:
    """PredMI at each attack seed, then ExpMI without defence per explainer at each attack seed."""
    seeds = list(attack_seeds)
    cells = [CellSpec(dataset, attack="predmi", seed=s, study_seed=study_seed, aux_dataset=aux) for s in seeds]
    for e in explainers:
        cells += [CellSpec(dataset, explainer=e, defense="none", attack="expmi", seed=s, variant=variant,
                           study_seed=study_seed, aux_dataset=aux) for s in seeds]
    return cells


def defence_cells(base: CellSpec, gammas: Sequence[Optional[float]], defenses: Sequence[str], matches: Sequence[str],
                  attack_seeds: Iterable[int], gnime_seeds: Iterable[int] = (0,)) -> list[CellSpec]:
    """The cells of ``base``'s GNIME training configuration, in the order gamma, defence, match,
    GNIME seed, attack seed (``none`` in ``defenses`` is skipped: it is a baseline)."""
    seeds, gnimes = list(attack_seeds), list(gnime_seeds)
    return [dataclasses.replace(base, defense=d, attack="expmi", gamma=gamma, match=m, gnime_seed=n, seed=s)
            for gamma in gammas for d in defenses if d != "none"
            for m in (matches if d in ("rnd", "ond") else ("perturbation",))
            for n in gnimes for s in seeds]
