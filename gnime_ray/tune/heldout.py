"""The held-out report after a search: choose on one set of images, report on another, with fresh
attackers (design.md, "Numbers a reviewer accepts").

A search chooses its trial on the SELECTION images of the evaluation split (tune/spec.py
``objective``), so the chosen trial's own score is optimistic twice over: it is the lowest of
several noisy draws (GNIME's training and the attackers' seeds), measured on the images it was
chosen on. What a table reports after a search is therefore a fresh experiment, per explainer:

1. the chosen trial: the finished trial with the lowest objective (select numbers only), written
   into the search's record (store/studies.py) the first time the search has ended, and read
   from there afterwards, so that nothing that follows depends on an outcome that could change
   between runs; an interrupted search raises ``Interrupted`` before anything is chosen;
2. a grid study ``<search>-<explainer>-report`` at exactly the chosen lambda, NG width and gamma
   (its record names the search and the trial): the chosen GNIME (GNIME seed 0, loaded from the
   cache, not retrained) and ``final_gnime_seeds - 1`` more trained independently at that
   configuration, each attacked by ExpMI against GNIME, RND and OND at its own perturbation, plus
   ExpMI without defence and PredMI, with the attack seeds REPORT_FIRST_SEED, ... (disjoint from
   every search's, which start at 0); its tables and figures read the TEST images only;
3. the optimism of the search: the chosen trial's select score beside the same GNIME's score on
   the test images with fresh attackers (and over every final GNIME), printed and written into the
   search's ``_trials/<search>.csv`` (columns ``chosen``, ``report_study``, ``test_attack_ssim``,
   ``test_attack_ssim_gnimes``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

from .. import GnimeRayError, echo
from ..store.studies import read_record, update_record
from .spec import StudySpec
from .study import run_study, write_trials

Log = Callable[[str], None]
# the first attack seed of every held-out report (a search's attack seeds start at 0)
REPORT_FIRST_SEED = 1000


def choose(trials: list[dict]) -> dict[str, dict]:
    """Per explainer, the finished trial with the lowest objective (measured on the selection
    images), as the search's record keeps it."""
    chosen: dict[str, dict] = {}
    for t in trials:
        if t["status"] != "finished":
            continue
        best = chosen.get(t["explainer"])
        if best is None or t["objective"] < best["objective"]:
            chosen[t["explainer"]] = t
    return {e: {"trial": t["trial"], "lambda": t["lambda"], "ng_width": t["ng_width"],
                "gamma": None if math.isnan(t["gamma"]) else t["gamma"], "objective": t["objective"],
                "select_attack_ssim": t["select_attack_ssim"], "select_utility": t["select_utility"]}
            for e, t in chosen.items()}


def report_name(search: str, explainer: str) -> str:
    return f"{search}-{explainer}-report"


def report_spec(search: StudySpec, explainer: str, chosen: dict, final_gnime_seeds: int) -> StudySpec:
    """The held-out report of ``search``'s chosen trial for ``explainer`` (module docstring, 2)."""
    return dataclasses.replace(
        search, name=report_name(search.name, explainer), explainers=(explainer,), search="grid", num_samples=1,
        lam_range=(chosen["lambda"], chosen["lambda"]), widths=(chosen["ng_width"],), gamma_range=None,
        gammas=(chosen["gamma"],), defenses=("gnime", "rnd", "ond"), baselines=True,
        gnime_seeds=tuple(range(final_gnime_seeds)), first_attack_seed=REPORT_FIRST_SEED,
        report_of=f"{search.name}/{chosen['trial']}")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def optimism(chosen: dict, report_rows: list[dict]) -> dict:
    """The chosen trial's select score and what the report measured on the test images: the same
    GNIME with fresh attackers (``test_attack_ssim``), and every final GNIME (mean and the spread
    of the per-GNIME means)."""
    gnime = [r for r in report_rows if r["defense"] == "gnime" and r["attack"] == "expmi"]
    per_gnime: dict[int, list[float]] = {}
    for r in gnime:
        per_gnime.setdefault(r["gnime_seed"], []).append(r["ssim"])
    means = [_mean(v) for _, v in sorted(per_gnime.items())]
    return {"select_attack_ssim": chosen["select_attack_ssim"], "test_attack_ssim": _mean(per_gnime.get(0, [])),
            "test_attack_ssim_gnimes": _mean(means), "gnime_spread": _std(means), "gnimes": len(means),
            "attack_seeds": sorted({r["attack_seed"] for r in gnime})}


def describe_optimism(explainer: str, trial: str, o: dict) -> str:
    line = (f"optimism of the search ({explainer}): the chosen trial {trial} scored attack SSIM "
            f"{o['select_attack_ssim']:.4f} on the selection images with the search's attackers; its GNIME scores "
            f"{o['test_attack_ssim']:.4f} on the test images with fresh attackers (seeds "
            f"{o['attack_seeds'][0]}..{o['attack_seeds'][-1]}): {o['test_attack_ssim'] - o['select_attack_ssim']:+.4f}")
    if o["gnimes"] > 1:
        line += (f"; over {o['gnimes']} GNIMEs at its configuration {o['test_attack_ssim_gnimes']:.4f} "
                 f"± {o['gnime_spread']:.4f} (GNIME-seed spread)")
    return line


def search_and_report(spec: StudySpec, final_gnime_seeds: int, log: Log = echo) -> dict:
    """Run (or resume) the search ``spec``, then the held-out report of each explainer's chosen
    trial (module docstring). Returns {"search": run_study's result, "chosen": {explainer: the
    chosen trial}, "reports": {explainer: run_study's result}, "optimism": {explainer: optimism()}}."""
    if not isinstance(final_gnime_seeds, int) or isinstance(final_gnime_seeds, bool) or final_gnime_seeds < 1:
        raise GnimeRayError(f"--final-gnime-seeds must be an integer >= 1, got {final_gnime_seeds!r}")
    if spec.search != "optuna":
        raise GnimeRayError(f"study {spec.name}: a held-out report follows a search (search='optuna'), not a grid")
    search = run_study(spec, log)
    record = read_record(search["spec"].out, spec.name) or {}
    chosen = record.get("chosen")
    if not chosen:
        chosen = choose(search["trials"])
        if not chosen:
            raise GnimeRayError(f"study {spec.name}: no trial finished, so there is nothing to report")
        update_record(search["spec"].out, spec.name, chosen=chosen)
    for e, c in chosen.items():
        log(f"study {spec.name}: {e}: chosen on the selection images: trial {c['trial']} (lambda {c['lambda']!r}, "
            f"width {c['ng_width']!r}, gamma {c['gamma']!r}; objective {c['objective']:.4f}); its held-out report: "
            f"{final_gnime_seeds} GNIME(s) at that configuration, fresh attackers, test images")
    reports, gains = {}, {}
    for e, c in chosen.items():
        reports[e] = run_study(report_spec(search["spec"], e, c, final_gnime_seeds), log)
        gains[e] = optimism(c, reports[e]["rows"])
    trials = search["all_trials"]
    for t in trials:
        c = chosen.get(t["explainer"], {})
        if t["trial"] == c.get("trial"):
            o = gains[t["explainer"]]
            t.update(chosen=True, report_study=report_name(spec.name, t["explainer"]),
                     test_attack_ssim=o["test_attack_ssim"], test_attack_ssim_gnimes=o["test_attack_ssim_gnimes"])
    if trials:
        write_trials(search["spec"].out, spec.name, trials)
    return {"search": search, "chosen": chosen, "reports": reports, "optimism": gains}
