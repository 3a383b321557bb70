"""A search followed by its held-out report, on Ray: ``search_and_report`` runs the search study,
chooses its points once (study/heldout.py, recorded in the search's record), runs each explainer's
report study, writes its frontier (report/frontier.py) and the search's optimism (module docstring
of study/heldout.py, steps 1-4)."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from .. import GnimeRayError, echo
from ..cellspec import MATCHES
from ..report.frontier import frontier, write_frontier
from ..study.heldout import choose_front_points, optimism, report_name, report_spec
from ..study.record import read_record, update_record
from ..study.spec import StudySpec
from .placement import Placement
from .study import run_study, write_trials

Log = Callable[[str], None]


def search_and_report(spec: StudySpec, final_gnime_seeds: int, placement: Optional[Placement] = None,
                      log: Log = echo, front_points: int = 0, matches: tuple[str, ...] = MATCHES) -> dict:
    """Run (or resume) the search ``spec``, then the held-out frontier of each explainer's chosen
    points (study/heldout.py's module docstring). Returns {"search": run_study's result, "chosen": {explainer: [points]},
    "reports": {explainer: run_study's result}, "frontier": {explainer: (points, hypervolumes)},
    "optimism": {explainer: [optimism() per point]}}."""
    for value, flag, low in ((final_gnime_seeds, "--gnime-seeds", 1), (front_points, "--front-points", 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise GnimeRayError(f"{flag} must be an integer >= {low}, got {value!r}")
    if not matches or any(m not in MATCHES for m in matches) or len(set(matches)) < len(matches):
        raise GnimeRayError(f"--match must be a non-empty subset of {','.join(MATCHES)}, got {','.join(matches)!r}")
    if spec.search != "optuna":
        raise GnimeRayError(f"study {spec.name}: a held-out report follows a search (search='optuna'), not a grid")
    search = run_study(dataclasses.replace(spec, baselines=False), placement, log)
    out = search["spec"].out
    record = read_record(out, spec.name) or {}
    chosen = record.get("chosen")
    if not chosen:
        chosen = choose_front_points(search["trials"], spec.objective, front_points)
        if not chosen:
            raise GnimeRayError(f"study {spec.name}: no trial finished feasible (utility at or above the floor "
                                f"{spec.utility_floor} on the selection images), so there is nothing to report: lower "
                                f"the floor (--utility-floor) or move the search space towards less noise")
        update_record(out, spec.name, chosen=chosen)
    for e, points in chosen.items():
        described = "; ".join(f"trial {p['trial']} (lambda {p['lambda']!r}, width {p['ng_width']!r}, gamma "
                              f"{p['gamma']!r}: attack SSIM {p['select_attack_ssim']:.4f}, utility "
                              f"{p['select_utility']:.4f})" for p in points)
        log(f"study {spec.name}: {e}: chosen on the selection images: {described}; the held-out report: "
            f"{final_gnime_seeds} fresh GNIME(s) at each, RND and OND at their perturbation and utility, fresh "
            f"attackers, test images")
    reports, fronts, gains = {}, {}, {}
    for e, points in chosen.items():
        reports[e] = run_study(report_spec(search["spec"], e, points, final_gnime_seeds, matches), search["placement"],
                               log)
        name = reports[e]["spec"].name
        fronts[e] = frontier(reports[e]["rows"], name, seed=spec.study_seed)
        write_frontier(out, name, *fronts[e])
        gains[e] = [optimism(p, reports[e]["rows"]) for p in points]
    trials = search["all_trials"]
    for t in trials:
        for e, points in chosen.items():
            for p, o in zip(points, gains.get(e, [])):
                if t["explainer"] == e and t["trial"] == p["trial"]:
                    t.update(chosen=True, report_study=report_name(spec.name, e),
                             test_attack_ssim_gnimes=o["test_attack_ssim_gnimes"])
    if trials:
        write_trials(out, spec.name, trials)
    return {"search": search, "chosen": chosen, "reports": reports, "frontier": fronts, "optimism": gains}
