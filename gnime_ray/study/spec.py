"""What a study is: the validated ``StudySpec``, its search space (``StudySpec.search_space``, the
one definition Tune's param space and the Optuna journal are made from), its cells (study/cells.py)
and its identity under the results root; what its search reads of a trial is study/objective.py.

The search's question (docs/studies.md, "The search's question and the held-out frontier"). Eq. 3 sets every released map's
noise variance to exactly gamma, so gamma IS the perturbation, and the attack's SSIM falls as it
grows: an objective of attack SSIM alone picks the largest gamma it samples, a trial that wins by
adding noise. So by default a search has TWO objectives, the attack's SSIM (down) and the utility
of the released maps (up: Table 3's DeePSiM at the paper's N), with the utility floor as a
constraint (a trial whose utility falls below it is infeasible and never on the front), and its
answer is a front, not a point. The second objective is utility rather than the perturbation
because the perturbation is an input here (gamma, or the budgets below), while utility is what
the defender loses and what differs between defences at one perturbation. Two modes:
- a front over gamma (``gamma_range``): lambda, NG width and gamma searched;
- fixed budgets (``budgets``, the paper's protocol): each trial's GNIME attacked at every budget
  (multiples of the paper's Table 3 perturbation for the dataset and explainer), without
  retraining; lambda and NG width searched; a trial's values are the means over the budgets and
  its constraint is its lowest utility.
``objective="single"`` keeps the earlier scalar (attack SSIM, 1 + floor - utility below the floor).

A study's identity is every field that changes a number it produces (the dataset, explainers,
variant, every preset field with the memory format as decided, the search space, the seeds, the
defences, the objective, the search a report follows); where its files are (``PATH_FIELDS``) and
how it is placed on a cluster (tune/placement.py: GPU fractions, concurrency, checkpoint
frequency) are not part of it. The identity is kept in the study's record
(study/record.py, ``OUT/_studies/<name>.json``) when the study starts; re-running the same name
with another identity is refused, naming the fields that differ, so that a study never silently
resumes with settings other than the ones its rows were made with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from .. import GnimeRayError
from ..cellspec import DEFENSES, EXPLAINERS, MATCHES, CellSpec
from ..config import Preset, get_preset, is_count, is_number, positive_finite
from ..data import DATASETS
from ..paper import budget_gammas, paper_target
from .cells import baseline_cells, defence_cells

SAMPLERS = ("tpe", "gp", "random")  # the search's Optuna sampler (tune/samplers.py)
DEFAULT_SAMPLER = "tpe"
OBJECTIVES = ("multi", "single")
SEARCHES = ("optuna", "grid")
# where a study's results, cache and data are: not part of what it computes (its identity)
PATH_FIELDS = ("out", "cache_dir", "data_root")


@dataclass(frozen=True)
class StudySpec:
    """What a study computes, and where its results, cache and data are (``out``, ``cache_dir``,
    ``data_root``); validated on construction (ValueError naming the field). How the Ray engine
    places it (GPU fractions, concurrency, attack pools, checkpoints) is tune/placement.py's
    ``Placement``, not part of the spec.
    ``gnime_seeds``: the independently trained GNIMEs of every configuration of a grid study (a
    search trains one per trial, GNIME seed 0); ``first_attack_seed``: the study's attack seeds are
    ``first_attack_seed`` .. ``first_attack_seed + attack_seeds - 1`` (a held-out report after a
    search uses seeds disjoint from the search's: study/heldout.py); ``report_of``: the search study
    and trial a report re-measures (empty otherwise). ``objective``, ``budgets``: the module
    docstring; ``sampler``: the search's Optuna sampler (tune/samplers.py); ``matches``: what the
    rnd and ond cells are matched to (GNIME's perturbation, or its utility: pipeline/match.py), each
    one cell; ``points``: a grid study's explicit (lambda, NG width, gamma) configurations, in place
    of ``lam_range`` x ``widths`` (a held-out report of a search's front: study/heldout.py)."""

    name: str
    dataset: str
    out: str
    explainers: tuple[str, ...] = ("lrp",)
    variant: str = "paper"
    preset: Preset = field(default_factory=lambda: get_preset("quick"))
    attack_seeds: int = 3
    study_seed: int = 0
    search: str = "optuna"
    num_samples: int = 4
    lam_range: tuple[float, float] = (10.0, 1000.0)
    widths: tuple[float, ...] = (0.5, 1.0, 2.0)
    gamma_range: Optional[tuple[float, float]] = None
    gammas: tuple[Optional[float], ...] = (None,)
    defenses: tuple[str, ...] = ("gnime",)
    baselines: bool = True
    objective: str = "multi"
    sampler: str = DEFAULT_SAMPLER
    budgets: tuple[float, ...] = ()
    matches: tuple[str, ...] = ("perturbation",)
    points: tuple[tuple[float, float, Optional[float]], ...] = ()
    utility_floor: float = 0.8
    cache_dir: Optional[str] = None
    data_root: Optional[str] = None
    aux_dataset: str = "same"
    gnime_seeds: tuple[int, ...] = (0,)
    first_attack_seed: int = 0
    report_of: str = ""

    def __post_init__(self) -> None:
        def check(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}")

        check(bool(self.name) and "/" not in self.name and not self.name.startswith(("_", ".")), "name",
              "a non-empty name without '/' that does not start with '_' or '.'")
        check(len(self.explainers) > 0 and all(e in EXPLAINERS for e in self.explainers), "explainers",
              f"a non-empty subset of {', '.join(EXPLAINERS)}")
        check(len(self.defenses) > 0 and all(d in DEFENSES and d != "none" for d in self.defenses), "defenses",
              "a non-empty subset of gnime, rnd, ond")
        check(self.search in SEARCHES, "search", f"one of {', '.join(SEARCHES)}")
        check(self.objective in OBJECTIVES, "objective", f"one of {', '.join(OBJECTIVES)}")
        check(is_count(self.attack_seeds, 1), "attack_seeds", "an integer >= 1")
        check(is_count(self.first_attack_seed, 0), "first_attack_seed", "an integer >= 0")
        check(len(self.gnime_seeds) > 0 and all(is_count(n, 0) for n in self.gnime_seeds)
              and len(set(self.gnime_seeds)) == len(self.gnime_seeds), "gnime_seeds",
              "a non-empty tuple of distinct integers >= 0")
        check(self.search == "grid" or tuple(self.gnime_seeds) == (0,), "gnime_seeds",
              "(0,) in a search (one GNIME per trial; several GNIMEs per configuration need a grid study)")
        check(is_count(self.study_seed, 0), "study_seed", "an integer >= 0")
        check(is_count(self.num_samples, 1), "num_samples", "an integer >= 1")
        check(len(self.lam_range) == 2 and all(positive_finite(v) for v in self.lam_range)
              and self.lam_range[0] <= self.lam_range[1], "lam_range", "finite 0 < low <= high")
        check(len(self.widths) > 0 and all(positive_finite(w) for w in self.widths), "widths",
              "finite numbers > 0")
        check(self.gamma_range is None or (len(self.gamma_range) == 2 and all(positive_finite(v) for v in self.gamma_range)
                                           and self.gamma_range[0] <= self.gamma_range[1]),
              "gamma_range", "None or finite 0 < low <= high")
        check(len(self.gammas) > 0 and all(g is None or positive_finite(g) for g in self.gammas), "gammas",
              "None or finite values > 0")
        check(is_number(self.utility_floor) and 0 <= self.utility_floor <= 1, "utility_floor", "in [0, 1]")
        check(self.sampler in SAMPLERS, "sampler", f"one of {', '.join(SAMPLERS)}")
        check(all(positive_finite(b) for b in self.budgets) and len(set(self.budgets)) == len(self.budgets),
              "budgets", "distinct finite multiples > 0 of the paper's perturbation")
        check(not self.budgets or (self.gamma_range is None and tuple(self.gammas) == (None,)), "budgets",
              "given without gamma_range or gammas (the budgets are the gammas)")
        check(len(self.matches) > 0 and all(m in MATCHES for m in self.matches)
              and len(set(self.matches)) == len(self.matches), "matches", f"a non-empty subset of {', '.join(MATCHES)}")
        check(all(len(p) == 3 and positive_finite(p[0]) and positive_finite(p[1])
                  and (p[2] is None or positive_finite(p[2])) for p in self.points)
              and len({p[2] is None for p in self.points}) <= 1, "points",
              "(lambda > 0, width > 0, gamma > 0 or None) triples, all with a gamma or none")
        check(not self.points or self.search == "grid", "points", "given to a grid study only")
        check(self.dataset in DATASETS, "dataset", f"one of {', '.join(sorted(DATASETS))}")
        check(self.aux_dataset == "same" or (self.aux_dataset in DATASETS and self.aux_dataset != self.dataset),
              "aux_dataset", f"'same' or another dataset: {', '.join(sorted(DATASETS))}")
        if self.budgets:
            for e in self.explainers:  # the budgets are multiples of the paper's perturbation: it must have one
                try:
                    paper_target(self.dataset, e)
                except GnimeRayError as exc:
                    raise ValueError(f"budgets: {exc}") from None

    def gammas_for(self, explainer: str) -> tuple[Optional[float], ...]:
        """The gammas every GNIME of ``explainer`` is attacked at: the budgets as perturbations (each
        a multiple of the paper's Table 3 perturbation for the dataset and explainer, 3 significant
        digits), else ``gammas``."""
        return budget_gammas(self.dataset, explainer, self.budgets) if self.budgets else tuple(self.gammas)

    def baseline_cells(self) -> list[CellSpec]:
        """The study's baselines (study/cells.py): PredMI and ExpMI without defence per explainer,
        at each of its attack seeds."""
        return baseline_cells(self.dataset, self.explainers, self.attack_seed_range, study_seed=self.study_seed,
                              variant=self.variant, aux=self.aux_dataset)

    def configuration(self, config: dict[str, Any]) -> CellSpec:
        """The GNIME training configuration of one point of the search space (a trial's values:
        explainer, lam, width, and a gnime_seed where the grid has several)."""
        return CellSpec(self.dataset, explainer=config["explainer"], defense="gnime", lam=config["lam"],
                        width=config["width"], variant=self.variant, study_seed=self.study_seed,
                        aux_dataset=self.aux_dataset, gnime_seed=config.get("gnime_seed", 0))

    def configuration_gammas(self, config: dict[str, Any]) -> tuple[Optional[float], ...]:
        """The gammas one configuration's GNIME is attacked at: the searched gamma, else
        ``gammas_for`` its explainer."""
        return (config["gamma"],) if "gamma" in config else self.gammas_for(config["explainer"])

    def defence_cells(self, config: dict[str, Any]) -> list[CellSpec]:
        """The cells of one configuration's GNIME (study/cells.py): each gamma x each defence (RND
        and OND at each match) x each attack seed of the study."""
        base = self.configuration(config)
        return defence_cells(base, self.configuration_gammas(config), self.defenses, self.matches,
                             self.attack_seed_range, (base.gnime_seed,))

    @property
    def attack_seed_range(self) -> range:
        """The study's attack seeds."""
        return range(self.first_attack_seed, self.first_attack_seed + self.attack_seeds)

    @property
    def kind(self) -> str:
        """What the study's record calls it: a held-out ``report``, a ``search`` or a ``grid``."""
        return "report" if self.report_of else ("search" if self.search == "optuna" else "grid")

    def search_space(self) -> dict[str, "Param"]:
        """The searched parameters, the one definition that Tune's param space (study.py) and the
        Optuna journal's distributions (search_log.py) are both made from: a grid study's lambda
        ends and widths (or the index of one of its ``points``) and (when several) GNIME seeds; a
        search's log-uniform lambda, a choice of widths and, with a ``gamma_range``, a log-uniform gamma."""
        if self.search == "grid":
            if self.points:
                space = {"point": Param("grid", tuple(range(len(self.points))))}
            else:
                space = {"lam": Param("grid", tuple(sorted({self.lam_range[0], self.lam_range[1]}))),
                         "width": Param("grid", tuple(self.widths))}
            if tuple(self.gnime_seeds) != (0,):
                space["gnime_seed"] = Param("grid", tuple(self.gnime_seeds))
            return space
        space = {"lam": Param("loguniform", tuple(self.lam_range)), "width": Param("choice", tuple(self.widths))}
        if self.gamma_range is not None:
            space["gamma"] = Param("loguniform", tuple(self.gamma_range))
        return space


@dataclass(frozen=True)
class Param:
    """One searched parameter: ``kind`` 'grid' (every value), 'choice' (one of the values) or
    'loguniform' (``values`` = (low, high))."""

    kind: str
    values: tuple


def identity(spec: StudySpec) -> dict[str, Any]:
    """The fields that determine a study's numbers, as JSON-ready values (the preset expanded)."""
    out = {}
    for f in dataclasses.fields(spec):
        if f.name in PATH_FIELDS:
            continue
        value = getattr(spec, f.name)
        out[f.name] = value.to_dict() if isinstance(value, Preset) else value
    return _jsonable(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
