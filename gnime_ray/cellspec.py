"""What one cell is: the names a cell takes (explainers, explainer variants, defences, attacks,
matches), its specification ``CellSpec`` and its key (its identity in the results), and the seeds
and content hashes derived from keys (stable across runs and machines)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Optional

from .config import check_field, positive_finite


def content_hash(obj: Any, length: int = 16) -> str:
    """A stable hex digest of a JSON-serialisable object (keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def derive_seed(seed: int, *key: Any) -> int:
    """A per-purpose seed derived from a study seed and a key, stable across runs and machines."""
    return int(content_hash([seed, *key], length=8), 16) & 0x7FFFFFFF


# Canonical names; the registries in data/, explain/, defenses/ and attacks/ use these keys.
# the paper's three (each in the variants below), then Captum's attribution methods (explain/captum_methods.py;
# one definition each: the variant names the paper's quirks, which they do not have)
PAPER_EXPLAINERS = ("grad", "gradcam", "lrp")
CAPTUM_EXPLAINERS = ("ig", "smoothgrad", "gxi", "deeplift", "gradshap", "guidedbp")
EXPLAINERS = PAPER_EXPLAINERS + CAPTUM_EXPLAINERS
EXPLAINERS_HELP = (f"comma-separated explainers: the paper's {', '.join(PAPER_EXPLAINERS)}, or Captum's "
                   f"{', '.join(CAPTUM_EXPLAINERS)} (their settings: --set ig_steps=..., docs/explainers.md)")
EXPLAINER_VARIANTS = ("paper", "paper-flat", "standard")  # explain/__init__.py
DEFENSES = ("none", "rnd", "ond", "gnime")
ATTACKS = ("expmi", "predmi")
# what RND's and OND's noise size is matched to (pipeline/match.py): GNIME's perturbation (the paper's
# protocol), or GNIME's utility as Table 3's DeePSiM measures it, or as the top-k agreement does
MATCHES = ("perturbation", "utility", "utility-topk")
# lambda of L_NG (paper Sec. 4): 500 for CelebA models, 100 for MNIST, CIFAR-10 and ImageNet-100
DEFAULT_LAMBDA = {"celeba": 500.0, "facescrub": 500.0}


def default_lambda(dataset: str) -> float:
    return DEFAULT_LAMBDA.get(dataset, 100.0)


@dataclass(frozen=True)
class CellSpec:
    """One cell of the Table 1 matrix: (dataset, explainer, defence, attack) at one attack seed.

    ``study_seed`` seeds prepare (split, f, f_E) and GNIME; ``seed`` is the attack seed (the
    attacker's initialisation and batches, and RND's noise); ``gnime_seed`` selects one of several
    independently trained GNIMEs on the same data and classifiers (0: the study seed's own GNIME;
    another value trains another one, and the gnime, rnd and ond cells built on it are other cells). ``lam``, ``width`` (NG capacity,
    relative to the release) and ``gamma`` (Eq. 3; None = unbounded) configure GNIME; they apply to
    the gnime, rnd and ond cells. ``match`` says what the rnd and ond cells' noise size is matched
    to: GNIME's perturbation (the paper's protocol) or its utility on the selection images
    (pipeline/match.py); it is 'perturbation' for every other defence. PredMI ignores the explainer
    and the defence (both recorded as 'none').
    """

    dataset: str
    explainer: str = "lrp"
    defense: str = "gnime"
    attack: str = "expmi"
    seed: int = 0
    lam: Optional[float] = None
    width: float = 1.0
    gamma: Optional[float] = None
    variant: str = "paper"
    study_seed: int = 0
    aux_dataset: str = "same"
    gnime_seed: int = 0
    match: str = "perturbation"

    def __post_init__(self) -> None:
        check_field(self.attack in ATTACKS, "attack", f"one of {', '.join(ATTACKS)}", self.attack)
        if self.attack == "predmi":
            object.__setattr__(self, "explainer", "none")
            object.__setattr__(self, "defense", "none")
        else:
            check_field(self.explainer in EXPLAINERS, "explainer", f"one of {', '.join(EXPLAINERS)}", self.explainer)
            check_field(self.defense in DEFENSES, "defense", f"one of {', '.join(DEFENSES)}", self.defense)
        check_field(self.variant in EXPLAINER_VARIANTS, "variant", f"one of {', '.join(EXPLAINER_VARIANTS)}", self.variant)
        for f in ("seed", "study_seed", "gnime_seed"):
            v = getattr(self, f)
            check_field(isinstance(v, int) and not isinstance(v, bool) and v >= 0, f, "an integer >= 0", v)
        if self.lam is None:
            object.__setattr__(self, "lam", default_lambda(self.dataset))
        check_field(positive_finite(self.lam), "lambda", "a finite number > 0", self.lam)
        check_field(positive_finite(self.width), "width", "a finite number > 0", self.width)
        check_field(self.gamma is None or positive_finite(self.gamma), "gamma", "a finite number > 0 (or unset)",
               self.gamma)
        check_field(self.match in MATCHES, "match", f"one of {', '.join(MATCHES)}", self.match)
        if self.defense not in ("rnd", "ond"):
            object.__setattr__(self, "match", "perturbation")
        if not self.uses_gnime:  # the GNIME knobs do not apply: one canonical cell
            object.__setattr__(self, "lam", default_lambda(self.dataset))
            object.__setattr__(self, "width", 1.0)
            object.__setattr__(self, "gamma", None)
            object.__setattr__(self, "gnime_seed", 0)

    @property
    def uses_gnime(self) -> bool:
        return self.defense in ("gnime", "rnd", "ond")

    def key(self) -> str:
        """A stable identifier of the cell (without the attack seed)."""
        g = "none" if self.gamma is None else f"{self.gamma:g}"
        n = f"-n{self.gnime_seed}" if self.gnime_seed else ""  # GNIME seed 0 keeps the keys rows already have
        defense = self.defense if self.match == "perturbation" else f"{self.defense}-at-{self.match}"
        return (f"{self.dataset}/{self.aux_dataset}/{self.explainer}-{self.variant}/{defense}/{self.attack}/"
                f"lam{self.lam:g}-w{self.width:g}-g{g}{n}/s{self.study_seed}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
