"""The held-out protocol (gnime_ray/study/heldout.py, study/objective.py, tune/search_then_report.py):
a search reads selection numbers only, its front's flags, and a search reported by a fresh held-out
frontier on local Ray."""

import pytest

from gnime_ray import GnimeRayError
from gnime_ray.store import read_rows
from gnime_ray.study.objective import pareto_flags
from study_specs import smoke_study as _study


def test_pareto_flags():
    assert pareto_flags([(0.5, 0.9), (0.6, 0.8), (0.4, 0.7), (0.5, 0.95)]) == [False, False, True, True]


def _rows_of(trial: str, rng) -> list[dict]:
    """Two attackers' rows of one trial, every metric random, on both sets of images."""
    from gnime_ray.store.rows import SPLIT_METRICS

    return [{"trial": trial, **{f"{p}{m}": rng.random() for p in ("", "select_") for m in SPLIT_METRICS}}
            for _ in range(2)]


def _what_the_search_reads(rows_by_trial: dict[str, list[dict]], floor: float = 0.3) -> tuple:
    """Each trial's objective and searched values, the Pareto flags and the chosen trial, computed
    as the study computes them (study/objective.py objective, tune/study.py, study/heldout.py choose_front_points)."""
    from gnime_ray.study.heldout import choose_front_points
    from gnime_ray.study.objective import objective

    summaries = [{"trial": t, "explainer": "lrp", "status": "finished", "lambda": 1.0, "ng_width": 1.0,
                  "gamma": 1e-3, **objective([{**r, "gamma": 1e-3} for r in rows], floor)}
                 for t, rows in rows_by_trial.items()]
    for t in summaries:
        t["pareto"] = False
    feasible = [t for t in summaries if t["constraint"] <= 0]
    flags = pareto_flags([(t["select_attack_ssim"], t["select_utility"]) for t in feasible])
    for t, flag in zip(feasible, flags):
        t["pareto"] = flag
    return summaries, flags, tuple(p["trial"] for p in choose_front_points(summaries).get("lrp", []))


def test_the_search_never_reads_the_test_images():
    """With every test-image metric replaced by a constant, or shuffled between attackers, the
    objectives, the Pareto flags and the chosen trial stay the same; with the selection images'
    metrics changed, they change."""
    import random

    from gnime_ray.store.rows import SPLIT_METRICS

    rng = random.Random(0)
    rows = {f"t{i}": _rows_of(f"t{i}", rng) for i in range(6)}
    seen = _what_the_search_reads(rows)
    constant = {t: [{**r, **{m: 0.5 for m in SPLIT_METRICS}} for r in rs] for t, rs in rows.items()}
    assert _what_the_search_reads(constant) == seen
    everyone = [r for rs in rows.values() for r in rs]
    for m in SPLIT_METRICS:  # the test values of every attacker shuffled among them
        values = [r[m] for r in everyone]
        rng.shuffle(values)
        for r, v in zip(everyone, values):
            r[m] = v
    assert _what_the_search_reads(rows) == seen
    chosen = seen[2]
    assert chosen  # the front is not empty
    worse = {t: [{**r, "select_ssim": r["select_ssim"] + (1.0 if t == chosen[0] else 0.0)} for r in rs]
             for t, rs in rows.items()}
    after = _what_the_search_reads(worse)
    assert after[2] != chosen and after[0] != seen[0]


@pytest.mark.slow
def test_a_search_is_reported_by_a_fresh_held_out_frontier(local_ray, tmp_path, capsys):
    """search_and_report: a two-objective search (its journal: two directions and constraint values),
    then the report of its front: none of the search's rows (disjoint attack seeds, other trials),
    GNIMEs trained afresh at each chosen point (the searched network left out), RND and OND matched
    to GNIME's perturbation and to its utility, the frontier's interval columns written beside the
    rows, the search's values derived from its rows' selection numbers only, the choice and the
    optimism recorded; a re-run resumes both studies."""
    import random

    import optuna
    import pandas as pd
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from gnime_ray.study.record import read_record
    from gnime_ray.study.heldout import REPORT_FIRST_SEED
    from gnime_ray.tune.search_then_report import search_and_report

    spec, placement = _study(tmp_path, "sel", num_samples=2, attack_seeds=2, gamma_range=(1e-3, 1e-2))
    outcome = search_and_report(spec, 2, placement, log=lambda _: None, front_points=1)
    search, report = outcome["search"], outcome["reports"]["lrp"]
    (chosen,) = outcome["chosen"]["lrp"]
    trials = {t["trial"]: t for t in search["trials"]}
    assert trials[chosen["trial"]]["pareto"] and trials[chosen["trial"]]["feasible"]
    # the journal: two directions, every trial with its constraint, the front feasible
    kept = optuna.load_study(study_name="sel-lrp", storage=JournalStorage(JournalFileBackend(
        str(tmp_path / "out" / "_optuna" / "sel.log"))))
    assert [d.name for d in kept.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert all(t.constraints["utility_floor"] == pytest.approx(spec.utility_floor - trials[t.user_attrs["tune_trial_id"]]
                                                               ["select_utility"]) for t in kept.trials)
    # the search's recorded values are its rows' selection numbers, whatever their test numbers
    rng = random.Random(1)
    for tid, t in trials.items():
        mine = [r for r in search["rows"] if r["trial"] == tid]
        for r in mine:
            r.update(ssim=rng.random(), utility_deepsim=rng.random())
        recomputed = _what_the_search_reads({tid: mine}, spec.utility_floor)[0][0]
        assert recomputed["select_attack_ssim"] == pytest.approx(t["select_attack_ssim"], abs=1e-12)
        assert recomputed["select_utility"] == pytest.approx(t["select_utility"], abs=1e-12)
    # the report: a fresh experiment
    search_keys = {(r["cell"], r["attack_seed"]) for r in search["rows"]}
    report_keys = {(r["cell"], r["attack_seed"]) for r in report["rows"]}
    assert not search_keys & report_keys
    assert {r["attack_seed"] for r in search["rows"]} == {0, 1}
    assert all(r["defense"] == "gnime" and r["trial"] in trials for r in search["rows"])  # no baselines in a search
    assert {r["attack_seed"] for r in report["rows"]} == {REPORT_FIRST_SEED, REPORT_FIRST_SEED + 1}
    assert not {r["trial"] for r in report["rows"]} & set(trials)
    # baselines + 2 GNIMEs x (GNIME, RND and OND each at perturbation, utility and top-k utility) x 2 seeds
    assert len(report["rows"]) == 4 + 2 * 7 * 2
    assert all(r["split"] == "test" for r in report["rows"])
    searched = {r["gnime_artifact"] for r in search["rows"] if r["trial"] == chosen["trial"]}
    fresh = {r["gnime_seed"]: r["gnime_artifact"] for r in report["rows"] if r["defense"] == "gnime"}
    assert set(fresh) == {1, 2} and not set(fresh.values()) & searched  # the searched network is left out
    matched = {(r["defense"], r["matched_on"]) for r in report["rows"] if r["defense"] in ("rnd", "ond")}
    assert matched == {(d, m) for d in ("rnd", "ond") for m in ("perturbation", "utility", "utility-topk")}
    assert {r["lambda"] for r in report["rows"] if r["defense"] != "none" and r["attack"] == "expmi"} == {chosen["lambda"]}
    # the frontier beside the rows: every RND and OND line with its interval
    points = pd.read_csv(tmp_path / "out" / "_frontier" / "sel-lrp-report-points.csv")
    lines = points[points["defense"].isin(["rnd", "ond"])]
    assert len(lines) == 6 and (lines["delta_low"] <= lines["delta_ssim"]).all()
    assert (lines["delta_ssim"] <= lines["delta_high"]).all() and set(lines["gnime_seeds"]) == {2}
    hv = pd.read_csv(tmp_path / "out" / "_frontier" / "sel-lrp-report-hypervolume.csv")
    assert set(hv["defense"]) == {"gnime", "rnd", "ond"} and (hv["hypervolume"] >= 0).all()
    # the choice and the optimism, recorded
    assert read_record(spec.out, "sel")["chosen"]["lrp"][0]["trial"] == chosen["trial"]
    assert read_record(spec.out, "sel-lrp-report")["identity"]["report_of"] == f"sel/{chosen['trial']}"
    (o,) = outcome["optimism"]["lrp"]
    gnime = [r for r in report["rows"] if r["defense"] == "gnime"]
    assert o["select_attack_ssim"] == trials[chosen["trial"]]["select_attack_ssim"] and o["gnimes"] == 2
    assert o["test_attack_ssim_gnimes"] == pytest.approx(sum(r["ssim"] for r in gnime) / len(gnime))
    saved = pd.read_csv(tmp_path / "out" / "_trials" / "sel.csv")
    row = saved[saved["chosen"]].iloc[0]
    assert row["trial"] == chosen["trial"] and row["report_study"] == "sel-lrp-report" and saved["chosen"].sum() == 1
    # the report's figures: the frontier, and one GNIME's reconstructions when told which
    from gnime_ray.cli import main

    figs = tmp_path / "figs"
    assert main(["figures", "--out", spec.out, "--study", "sel-lrp-report", "--dest", str(figs)]) == 0
    assert {"frontier-sel-lrp-report-lrp.png", "frontier-sel-lrp-report-lrp.csv"} <= {p.name for p in figs.iterdir()}
    assert "reconstructions-digits-lrp.png" not in {p.name for p in figs.iterdir()}
    assert "pass --gnime-seed (one of 1, 2)" in capsys.readouterr().out
    assert main(["figures", "--out", spec.out, "--study", "sel-lrp-report", "--gnime-seed", "1", "--dest", str(figs)]) == 0
    assert {"reconstructions-digits-lrp.png", "perturbation-digits-lrp.csv"} <= {p.name for p in figs.iterdir()}
    assert main(["frontier", "--out", spec.out, "--study", "sel-lrp-report"]) == 0
    assert "GNIME - defence, SSIM [95% interval]" in capsys.readouterr().out
    # a re-run resumes: the same choice, no new row
    again = search_and_report(spec, 2, placement, log=lambda _: None, front_points=1)
    assert again["chosen"] == outcome["chosen"]
    assert len(read_rows(spec.out).to_pylist()) == len(search["rows"]) + len(report["rows"])
    with pytest.raises(GnimeRayError, match="--gnime-seeds must be an integer >= 1, got 0"):
        search_and_report(spec, 0, placement, log=lambda _: None)
