"""The two-objective search without running one: what a trial reports (over every budget), the
constraint Optuna is told before the result, the journal's constraints, the front (feasible trials
only) and the points a held-out report re-measures."""

import optuna
import pytest

from gnime_ray.config import get_preset
from gnime_ray.study.heldout import choose_front_points, report_spec
from gnime_ray.tune.samplers import make_sampler, startup_trials
from gnime_ray.tune.search import CONSTRAINT, ConstrainedOptunaSearch, make_searcher
from gnime_ray.tune.search_log import OptunaLog
from gnime_ray.study.objective import objective, worst_result
from gnime_ray.study.spec import StudySpec


def _spec(tmp_path, **kw):
    base = dict(name="s", dataset="digits", out=str(tmp_path / "out"), preset=get_preset("smoke"))
    return StudySpec(**{**base, **kw})


def _row(gamma, ssim, util, pert=0.01, tca=0.5):
    return {"gamma": gamma, "select_ssim": ssim, "select_utility_deepsim_paper_n": util, "select_utility_deepsim": 0.1,
            "select_perturbation_mse": pert, "select_tca": tca}


def test_objective_reads_every_budget_and_its_worst_utility():
    rows = [_row(0.004, 0.8, 0.95), _row(0.004, 0.6, 0.93),  # budget 1: SSIM 0.7, utility 0.94
            _row(0.008, 0.4, 0.85), _row(0.008, 0.5, 0.87)]  # budget 2: SSIM 0.45, utility 0.86
    got = objective(rows, floor=0.9, kind="multi")
    assert got["select_attack_ssim"] == pytest.approx((0.7 + 0.45) / 2)
    assert got["select_utility"] == pytest.approx((0.94 + 0.86) / 2) and got["select_utility_min"] == pytest.approx(0.86)
    assert got["constraint"] == pytest.approx(0.9 - 0.86) and got["objective"] == got["select_attack_ssim"]
    single = objective(rows, floor=0.9, kind="single")
    assert single["objective"] == pytest.approx(1 + 0.9 - 0.86)  # below the floor: penalised by its worst budget
    assert objective(rows, floor=0.8, kind="single")["objective"] == pytest.approx((0.7 + 0.45) / 2)
    # the unbounded gamma (NaN in a row, None in a cell) is one budget
    assert objective([_row(float("nan"), 0.3, 0.9), _row(None, 0.5, 0.9)], 0.8)["select_attack_ssim"] == pytest.approx(0.4)
    assert worst_result(_spec_like("multi"))["constraint"] > 0


def _spec_like(kind):
    class S:
        objective, utility_floor = kind, 0.8
    return S


def test_budgets_are_multiples_of_the_papers_perturbation(tmp_path):
    spec = _spec(tmp_path, dataset="mnist5k", explainers=("lrp", "grad"), budgets=(0.5, 1.0, 2.0))
    assert spec.gammas_for("lrp") == (0.00385, 0.0077, 0.0154)  # paper Table 3, MNIST LRP: 0.0077
    assert spec.gammas_for("grad") == (0.00195, 0.0039, 0.0078)
    assert _spec(tmp_path).gammas_for("lrp") == (None,)
    with pytest.raises(ValueError, match="budgets must be given without gamma_range or gammas"):
        _spec(tmp_path, budgets=(1.0,), gamma_range=(1e-3, 1e-2))
    with pytest.raises(ValueError, match="budgets: the paper's Table 3 has no perturbation MSE for 'facescrub'"):
        _spec(tmp_path, dataset="facescrub", budgets=(1.0,))
    with pytest.raises(ValueError, match="budgets must be distinct finite multiples"):
        _spec(tmp_path, budgets=(1.0, -2.0))
    with pytest.raises(ValueError, match="sampler must be one of tpe, gp, random"):
        _spec(tmp_path, sampler="cmaes")
    with pytest.raises(ValueError, match="points must be"):
        _spec(tmp_path, search="grid", points=((1.0, 1.0, 0.01), (2.0, 1.0, None)))  # with and without a gamma


def test_the_constraint_is_set_before_optuna_is_told_and_the_front_is_feasible(tmp_path):
    spec = _spec(tmp_path, num_samples=6, gamma_range=(1e-3, 1e-2), widths=(1.0,))
    searcher = make_searcher(spec)
    assert isinstance(searcher, ConstrainedOptunaSearch)
    from ray import tune

    searcher.set_search_properties(None, None, {"lam": tune.loguniform(1, 10), "width": tune.choice([1.0]),
                                                "gamma": tune.loguniform(1e-3, 1e-2)})
    results = {"a": (0.5, 0.95), "b": (0.3, 0.85), "c": (0.4, 0.75), "d": (0.2, 0.70)}  # (SSIM, utility)
    for tid, (s, u) in results.items():
        assert searcher.suggest(tid) is not None
        searcher.on_trial_complete(tid, {"select_attack_ssim": s, "select_utility": u, "constraint": 0.8 - u})
    study = searcher._ot_study
    told = {t.number: t for t in study.trials}
    assert [told[i].constraints[CONSTRAINT] for i in range(4)] == pytest.approx([0.8 - u for _, u in results.values()])
    # c and d dominate nothing that is feasible: the front holds a and b only (d has the best SSIM)
    assert sorted(t.number for t in study.best_trials) == [0, 1]
    # the journal keeps the same constraints, and its front is the same
    log = OptunaLog(spec, "lrp")
    try:
        for i, (tid, (s, u)) in enumerate(results.items()):
            log.record(tid, {"lam": 20.0, "width": 1.0, "gamma": 2e-3},
                       {"final": True, "status": "finished", "select_attack_ssim": s, "select_utility": u,
                        "constraint": 0.8 - u, "objective": s})
        assert log.pareto_trials() == {"a", "b"}
        assert [t.constraints for t in log.study.trials][2] == {CONSTRAINT: pytest.approx(0.05)}
        assert [d.name for d in log.study.directions] == ["MINIMIZE", "MAXIMIZE"]
    finally:
        log.close()


def test_the_single_objective_keeps_ray_s_plain_searcher(tmp_path):
    searcher = make_searcher(_spec(tmp_path, objective="single"))
    assert not isinstance(searcher, ConstrainedOptunaSearch) and searcher.metric == "objective"


def test_samplers():
    assert startup_trials(3) == 2 and startup_trials(24) == 8
    assert isinstance(make_sampler("tpe", 0, 12), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("gp", 0, 12), optuna.samplers.GPSampler)
    with pytest.raises(ValueError, match="sampler must be one of"):
        make_sampler("nsga", 0, 12)


def _trial(name, ssim, util, pareto, objective_value=None):
    return {"trial": name, "explainer": "lrp", "status": "finished", "lambda": 10.0, "ng_width": 1.0, "gamma": 1e-3,
            "select_attack_ssim": ssim, "select_utility": util, "pareto": pareto,
            "objective": ssim if objective_value is None else objective_value}


def test_choose_takes_the_front_spread_along_it(tmp_path):
    trials = [_trial(f"t{i}", 0.1 * i, 0.9, pareto=i % 2 == 0) for i in range(9)]  # front: t0, t2, t4, t6, t8
    assert [p["trial"] for p in choose_front_points(trials)["lrp"]] == ["t0", "t2", "t4", "t6", "t8"]
    assert [p["trial"] for p in choose_front_points(trials, front_points=3)["lrp"]] == ["t0", "t4", "t8"]
    assert [p["trial"] for p in choose_front_points(trials, front_points=1)["lrp"]] == ["t0"]
    assert [p["trial"] for p in choose_front_points(trials, "single")["lrp"]] == ["t0"]
    assert choose_front_points([_trial("x", 0.2, 0.5, pareto=False)]) == {}  # nothing feasible: nothing to report
    search = _spec(tmp_path, gamma_range=(1e-3, 1e-2))
    report = report_spec(search, "lrp", choose_front_points(trials, front_points=2)["lrp"], final_gnime_seeds=2)
    assert report.points == ((10.0, 1.0, 1e-3), (10.0, 1.0, 1e-3))
    assert report.gnime_seeds == (1, 2)  # the searched network (GNIME seed 0) is left out
    assert report.matches == ("perturbation", "utility", "utility-topk") and report.search == "grid"
    assert report.report_of == "s/t0,t8" and report.first_attack_seed == 1000
    assert report.search_space()["point"].values == (0, 1) and report.search_space()["gnime_seed"].values == (1, 2)
