"""RND and OND at GNIME's UTILITY, beside the paper's protocol of GNIME's perturbation.

The paper compares the defences at one perturbation size (Table 1: RND and OND at GNIME's
perturbation MSE). At that size RND and OND keep more utility than GNIME (on real MNIST 0.97 to
0.99 against 0.91 to 0.96), so a lower attack SSIM for GNIME could be bought with utility. A cell
with ``match`` 'utility' or 'utility-topk' (cellspec.py ``CellSpec``) therefore sizes RND's noise
(its variance) or OND's (its L2 budget, written as a perturbation MSE) so that the defence's
utility equals GNIME's:

- 'utility': Table 3's DeePSiM between f's features of x*e and x*e_hat, at the paper's N where the
  dataset has one (metrics.py ``deepsim_at``), else at the images' own N;
- 'utility-topk': the mean top-k agreement of the released maps with the clean ones
  (metrics.py ``topk_agreement``), which depends neither on N nor on f.

The size is a choice, so it is made on the SELECTION images of the evaluation split (GNIME's
utility and the defence's, both there); the cell's attacker and every reported number then use
the test images as for any cell, where the two utilities agree up to the difference between the
image sets (the row's utility columns show it). The search works on u = log10(size) with
f(u) = U(size) - U_GNIME, which falls as the size grows: from GNIME's own perturbation it steps a
decade at a time until f changes sign (or the size leaves [1e-8, 1]), then bisects until |f| is
at most ``TOLERANCE`` (1%) of the utility GNIME loses, 1 - U_GNIME, or after
``MAX_EVALUATIONS`` sizes; a utility that no size in the range reaches gives the nearest end,
recorded as not converged. RND's noise during the search is ONE
fixed draw scaled by the size (common random numbers, seeded from the study seed and the cell,
not the attack seed), so f is a smooth function of the size and every attack seed of the cell
finds the same size; the released maps of the cell itself are then drawn as any RND's. The
result (size, target, achieved utility, the sizes tried) is cached per node beside the released
maps and recorded in the row's ``matching`` column.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from ..cachedir import file_lock
from ..cellspec import CellSpec, content_hash, derive_seed
from ..config import Preset
from ..data.host_rows import HostRows
from ..defenses import GnimeModel, ond_release
from ..metrics import deepsim, deepsim_at, features, masked, topk_agreement
from ..paper import paper_eval_images
from .cache import load_json, save_json
from .prepare import Prepared

TOLERANCE = 0.01  # of the utility GNIME loses (1 - its utility): |U - U_GNIME| <= TOLERANCE x (1 - U_GNIME)
MAX_EVALUATIONS = 30
SIZE_RANGE = (1e-8, 1.0)


@dataclass
class UtilityMatch:
    """The noise size (a perturbation MSE) at which a defence's utility on the selection images
    equals GNIME's (module docstring)."""

    defense: str
    measure: str
    target_utility: float
    size: float
    achieved_utility: float
    converged: bool
    evaluations: list[tuple[float, float]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _utility_of(prep: Prepared, measure: str, x: torch.Tensor, e: torch.Tensor, u_clean: torch.Tensor,
                batch_size: int) -> Callable[[torch.Tensor], float]:
    """U(e_hat) on the selection images: DeePSiM (at the paper's N) of f's features of x*e and
    x*e_hat, or the mean top-k agreement of e_hat with e."""
    if measure == "utility-topk":
        return lambda e_hat: topk_agreement(e, e_hat).mean().item()
    n_ref = paper_eval_images(prep.dataset.name)

    def utility(e_hat: torch.Tensor) -> float:
        u = features(prep.target, masked(x, e_hat), batch_size)
        return deepsim_at(u_clean, u, n_ref) if n_ref else deepsim(u_clean, u)

    return utility


def match_utility(prep: Prepared, spec: CellSpec, preset: Preset, gnime: GnimeModel, gnime_eval: HostRows,
                  start: float, cache_key: dict) -> UtilityMatch:
    """The noise size of ``spec``'s defence (rnd or ond) at which its utility (``spec.match``) on
    the selection images equals GNIME's there. ``gnime_eval``: GNIME's released maps of the
    evaluation split (as the gnime cell releases them, gamma applied); ``start``: GNIME's
    perturbation MSE, where the search starts; ``cache_key``: names the cached result."""
    if spec.defense not in ("rnd", "ond") or spec.match not in ("utility", "utility-topk"):
        raise ValueError(f"a utility match needs an rnd or ond cell with match utility or utility-topk, got "
                         f"{spec.defense} matched on {spec.match}")
    path = prep.cache_root / "released" / f"match-{spec.defense}-{content_hash(cache_key)}.json"
    with file_lock(path):
        if path.exists():
            saved = load_json(path)
            return UtilityMatch(**{**saved, "evaluations": [tuple(e) for e in saved["evaluations"]]})
        result = _search(prep, spec, preset, gnime, gnime_eval, start)
        save_json(path, asdict(result))
        return result


def _search(prep: Prepared, spec: CellSpec, preset: Preset, gnime: GnimeModel, gnime_eval: HostRows,
            start: float) -> UtilityMatch:
    sel = prep.split.select  # positions within the evaluation split
    ev = prep.split.eval
    e = prep.map_rows((spec.explainer, spec.variant), ev).take(sel)
    x, y = prep.image_rows(ev).take(sel), prep.logit_rows(ev).take(sel)
    bs = preset.eval_batch_size
    u_clean = features(prep.target, masked(x, e), bs) if spec.match == "utility" else None
    utility = _utility_of(prep, spec.match, x, e, u_clean, bs)
    target = utility(gnime_eval.take(sel))
    if spec.defense == "rnd":
        gen = torch.Generator().manual_seed(derive_seed(spec.study_seed, "match", spec.key()))
        z = torch.randn(e.shape, generator=gen)
        release = lambda size: e + math.sqrt(size) * z  # noqa: E731
    else:
        release = lambda size: ond_release(e, y, x, gnime.inv, gnime.inv_noisy_input, size,  # noqa: E731
                                           steps=preset.ond_steps, batch_size=bs)
    seen: dict[float, float] = {}
    tol = max(TOLERANCE * (1.0 - target), 1e-9)

    def f(u: float) -> float:
        size = 10.0 ** u
        if size not in seen:
            seen[size] = utility(release(size))
        return seen[size] - target

    lo_u, hi_u = math.log10(SIZE_RANGE[0]), math.log10(SIZE_RANGE[1])
    a = min(max(math.log10(max(start, SIZE_RANGE[0])), lo_u), hi_u)
    fa = f(a)
    b, fb = a, fa
    while abs(fb) > tol and (fb > 0) == (fa > 0) and len(seen) < MAX_EVALUATIONS:
        step = 1.0 if fb > 0 else -1.0  # more utility than GNIME: more noise
        nxt = min(max(b + step, lo_u), hi_u)
        if nxt == b:
            break  # the range's end: no size reaches GNIME's utility
        a, fa = b, fb
        b, fb = nxt, f(nxt)
    while abs(fa) > tol and abs(fb) > tol and (fa > 0) != (fb > 0) and len(seen) < MAX_EVALUATIONS:
        m = (a + b) / 2
        fm = f(m)
        if (fm > 0) == (fa > 0):
            a, fa = m, fm
        else:
            b, fb = m, fm
    size, achieved = min(seen.items(), key=lambda kv: abs(kv[1] - target))
    return UtilityMatch(spec.defense, spec.match, target, size, achieved, abs(achieved - target) <= tol,
                        sorted(seen.items()))
