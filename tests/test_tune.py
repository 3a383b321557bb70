"""The Ray engine (gnime_ray/tune/) on local Ray with a faked GPU: resources, placement groups, attack
pools, Parquet rows, a diverged GNIME, grid and multi-objective studies. The study scripts and
connecting to Ray: test_study_scripts.py; the held-out report after a search: test_heldout.py;
the spec's validation: test_study_spec.py."""

import dataclasses
import math
import os
import re
import tempfile
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
# local Ray studies: minutes in all (`make test-fast` leaves them out)
pytestmark = pytest.mark.slow

from gnime_ray import GnimeRayError  # noqa: E402
from gnime_ray.config import get_preset  # noqa: E402
from gnime_ray.store import SCHEMA, read_rows  # noqa: E402
from gnime_ray.tune import run_study, trial_resources  # noqa: E402
from study_specs import smoke_spec as _spec, smoke_study as _study  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_trial_resources_bundles():
    pgf = trial_resources(0.25, 0.5, attackers=2, cpus=1, use_gpu=True)
    # the trial's bundle, then its attack pool's: two attackers' resources in one bundle (one process)
    assert pgf.bundles == [{"CPU": 1, "GPU": 0.25}, {"CPU": 2, "GPU": 1.0}]
    assert trial_resources(0.25, 0.1, attackers=3, cpus=0.5, use_gpu=True).bundles == [
        {"CPU": 0.5, "GPU": 0.25}, {"CPU": 1.5, "GPU": 0.3}]  # Ray's 4 decimals, not 0.30000000000000004
    assert trial_resources(0.25, 0.25, attackers=1, cpus=1, use_gpu=False).bundles == [{"CPU": 1}, {"CPU": 1}]
    assert trial_resources(0.25, 0.5, attackers=3, cpus=1, use_gpu=False).bundles == [{"CPU": 1}, {"CPU": 3}]
    with pytest.raises(ValueError, match=r"attackers_per_trial x attacker_gpu must be at most 1.*3 x 0.5"):
        trial_resources(0.25, 0.5, attackers=3, cpus=1, use_gpu=True)  # a pool's attackers share one GPU
    for bad in (0.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="trial_gpu"):
            trial_resources(bad, 0.25, attackers=1, cpus=1, use_gpu=True)


def test_an_attack_pool_process_allocates_with_jemalloc_unless_told_otherwise(local_ray, monkeypatch):
    """The pool's runtime_env preloads Ray's jemalloc in that process only (tune/resources.py)."""
    from gnime_ray.tune import resources
    from gnime_ray.tune.resources import JEMALLOC_CONF, JEMALLOC_SO, pool_options

    if not os.path.exists(JEMALLOC_SO):
        pytest.skip(f"this Ray has no {JEMALLOC_SO}")

    @ray.remote
    class Probe:
        def allocator(self) -> tuple[bool, str]:
            return "libjemalloc" in Path("/proc/self/maps").read_text(), os.environ.get("MALLOC_CONF", "")

    def allocator(name: str) -> tuple[bool, str]:
        probe = Probe.options(**pool_options(1, 0.0, 0.5, name)).remote()
        try:
            return ray.get(probe.allocator.remote())
        finally:
            ray.kill(probe)

    assert allocator("jemalloc") == (True, JEMALLOC_CONF)
    assert allocator("system") == (False, "")
    monkeypatch.setattr(resources, "JEMALLOC_SO", "/nonexistent/libjemalloc.so")  # a Ray without it: malloc
    assert resources.pool_options(1, 0.0, 1.0, "jemalloc")["runtime_env"] == {}
    assert "libjemalloc" not in Path("/proc/self/maps").read_text()  # not preloaded into the driver
    with pytest.raises(ValueError, match="pool_allocator must be one of jemalloc, system, got 'tcmalloc'"):
        pool_options(1, 0.0, 1.0, "tcmalloc")


def test_an_attack_pool_too_large_for_one_gpu_is_refused_before_any_work(local_ray, tmp_path):
    spec, placement = _study(tmp_path, "toolarge", attackers_per_trial=3, attacker_gpu=0.5)  # 1.5 GPUs in one pool
    with pytest.raises(GnimeRayError, match=r"attackers_per_trial x attacker_gpu must be at most 1.*3 x 0.5"):
        run_study(spec, placement, log=lambda _: None)
    out = tmp_path / "out"
    assert not (tmp_path / "cache").exists()  # nothing prepared
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]  # nothing written


def test_fit_to_cluster_keeps_concurrent_trials_schedulable(tmp_path):
    from gnime_ray.tune.placement import Placement
    from gnime_ray.tune.study import fit_to_cluster

    placement = Placement(attackers_per_trial=3, max_concurrent_trials=2)
    assert fit_to_cluster(placement, 8).cpus_per_task == 1.0  # 2 x (1 + 3) bundles of 1 CPU fit
    assert fit_to_cluster(placement, 2, log=lambda _: None).cpus_per_task == 0.25
    assert fit_to_cluster(placement, 1, log=lambda _: None).cpus_per_task == 0.125


def test_smoke_study_on_fake_gpu(local_ray, tmp_path):
    # two trials at once, each 0.25 GPU and a pool of two attackers at 0.125: one fake GPU holds both
    spec, placement = _study(tmp_path, "smoke", gammas=(None, 1e-3), attackers_per_trial=2, attacker_gpu=0.125)
    result = run_study(spec, placement, log=lambda _: None)
    trials = result["trials"]
    assert len(trials) == 2
    for t in trials:
        assert t["trial_gpu_assigned"] == 0.25  # the configured GPU fraction
        assert t["attackers_in_trial_pg"]  # attackers ran inside the trial's placement group
        assert isinstance(t["pareto"], bool)
        # the trial's own bundle attacked too (4 cells, a pool of 2): it idled less than its attack phase
        assert 0 < t["trial_attack_seconds"] <= t["attack_phase_seconds"]
        assert t["idle_share"] < t["attack_phase_seconds"] / (t["gnime_seconds"] + t["attack_phase_seconds"])
    rows = result["rows"]
    # baselines once per study (PredMI and unprotected ExpMI, 2 seeds each) + per trial 2 gammas x 2 seeds
    assert len(rows) == 4 + 2 * 4
    keys = [(r["cell"], r["attack_seed"]) for r in rows]
    assert len(set(keys)) == len(keys)
    assert set(read_rows(spec.out).schema.names) == set(SCHEMA.names)
    assert {r["trial"] for r in rows} == {"baseline"} | {t["trial"] for t in trials}
    assert all(r["study"] == "smoke" for r in rows)
    gammas = sorted({r["gamma"] for r in rows if r["defense"] == "gnime"}, key=str)
    assert 1e-3 in gammas
    assert (tmp_path / "out" / "_trials" / "smoke.csv").exists()
    assert (tmp_path / "out" / "_tune" / "smoke-lrp").is_dir()
    # every artifact a row names is under the results root
    for r in rows:
        assert (tmp_path / "out" / r["classifiers_artifact"]).is_file()
        assert r["gnime_artifact"] == "" or (tmp_path / "out" / r["gnime_artifact"]).is_file()

    # the queries of results/_README.md, run as written against this study's results root
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "results" / "_README.md").read_text(), re.S)
    assert len(blocks) == 3
    for code in blocks:
        scope: dict = {}
        exec(code.replace('"results', f'"{spec.out}').replace("'results", f"'{spec.out}"), scope)
        assert len(scope["rows"]) == len(rows)
        columns = scope["rows"].column_names if hasattr(scope["rows"], "column_names") else list(scope["rows"].columns)
        assert {"study", "dataset", "explainer", "ssim", "gnime_artifact"} <= set(columns)

    # the same name with other settings is refused before any work, naming the fields, writing nothing
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*"))
    changed = _spec(tmp_path, "smoke", gammas=(None, 1e-3), preset=get_preset("smoke", gnime_epochs=4), attack_seeds=3)
    with pytest.raises(GnimeRayError, match=r"other settings \(attack_seeds 2 -> 3; preset.gnime_epochs 3 -> 4\)"):
        run_study(changed, log=lambda _: None)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*")) == before


def test_diverged_gnime_is_recorded_and_writes_no_row(local_ray, tmp_path, monkeypatch):
    spec, placement = _study(tmp_path, "diverge", preset=get_preset("smoke", gnime_lr=1e6), baselines=False,
                             num_samples=1)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    result = run_study(spec, placement, log=lambda _: None)
    assert not list(scratch.glob("gnime-optuna-*"))  # the driver's copy of the search journal is removed
    assert result["trials"] == [] and result["rows"] == []
    (trial,) = result["all_trials"]
    assert trial["status"] == "diverged" and "GNIME diverged at epoch" in trial["error"]
    assert trial["constraint"] == 1.0 and not trial["feasible"] and not trial["pareto"]  # infeasible: never on the front
    import pandas as pd

    (saved,) = pd.read_csv(tmp_path / "out" / "_trials" / "diverge.csv").to_dict("records")
    assert saved["status"] == "diverged" and math.isnan(saved["select_attack_ssim"]) and saved["lambda"] == trial["lambda"]


def test_multi_objective_and_grid_studies(local_ray, tmp_path, capsys):
    multi = run_study(*_study(tmp_path, "multi", objective="multi", attack_seeds=1, baselines=False,
                             gamma_range=(1e-3, 1e-2)), log=lambda _: None)
    assert len(multi["trials"]) == 2 and any(t["pareto"] for t in multi["trials"])
    assert all(1e-3 <= t["gamma"] <= 1e-2 for t in multi["trials"])  # gamma searched on a log scale
    assert len(multi["rows"]) == 2
    # the search, kept as an Optuna study under the results root (what optuna-dashboard opens)
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    out = tmp_path / "out"
    kept = optuna.load_study(study_name="multi-lrp",
                             storage=JournalStorage(JournalFileBackend(str(out / "_optuna" / "multi.log"))))
    assert len(kept.trials) == 2 and [d.name for d in kept.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert kept.metric_names == ["attack SSIM on the selection images",
                                 "utility DeePSiM on the selection images (the utility floor is the constraint)"]
    assert all(set(t.constraints) == {"utility_floor"} for t in kept.trials)
    by_id = {t.user_attrs["tune_trial_id"]: t for t in kept.trials}
    for t in multi["trials"]:
        assert by_id[t["trial"]].params["lam"] == t["lambda"] and by_id[t["trial"]].params["gamma"] == t["gamma"]
        assert by_id[t["trial"]].values == [t["select_attack_ssim"], t["select_utility"]]
    assert {t.user_attrs["tune_trial_id"] for t in kept.best_trials} == {t["trial"] for t in multi["trials"]
                                                                        if t["pareto"]}
    # one trial's table, its defence exported, and the search's figures
    from gnime_ray.cli import main

    trial = multi["trials"][0]["trial"]
    assert main(["table", "--out", str(out), "--dataset", "digits", "--study", "multi", "--trial", trial,
                 "--explainers", "lrp"]) == 0
    assert main(["export", "--out", str(out), "--study", "multi", "--trial", trial, "--dest", str(tmp_path / "d.pt")]) == 0
    assert main(["export", "--out", str(out), "--study", "multi", "--dest", str(tmp_path / "d.pt")]) == 2  # two GNIMEs: which?
    # a search's figures show one of its GNIME configurations: refused in one line without --trial
    assert main(["figures", "--out", str(out), "--study", "multi", "--dest", str(tmp_path / "figs")]) == 2
    assert "holds 2 GNIME configurations for lrp: pass --trial" in capsys.readouterr().err
    assert main(["figures", "--out", str(out), "--study", "multi", "--trial", trial, "--dest", str(tmp_path / "figs")]) == 0
    assert {"search-multi-lrp.png", "search-multi-lrp.csv", "pareto-multi-lrp.png",
            "reconstructions-digits-lrp.png"} <= {p.name for p in (tmp_path / "figs").iterdir()}
    grid = run_study(*_study(tmp_path, "grid", search="grid", lam_range=(50.0, 50.0), widths=(1.0, 0.5),
                            attack_seeds=1, baselines=False, defenses=("gnime", "rnd")), log=lambda _: None)
    assert sorted(t["ng_width"] for t in grid["trials"]) == [0.5, 1.0]
    assert sorted(r["defense"] for r in grid["rows"]) == ["gnime", "gnime", "rnd", "rnd"]
    assert {r["lambda"] for r in grid["rows"]} == {50.0}


def test_node_cpus_widens_then_restores_the_worker_threads(local_ray):
    import os

    from gnime_ray.tune.resources import node_cpus

    @ray.remote(num_cpus=0.5)
    def threads():
        import torch

        before = torch.get_num_threads()
        with node_cpus() as inside:
            seen = torch.get_num_threads()
        return before, inside, seen, torch.get_num_threads()

    before, inside, seen, after = ray.get(threads.remote())
    assert inside == seen == min(4, len(os.sched_getaffinity(0))) and after == before


def test_three_attackers_map_the_maps_instead_of_copying_them(local_ray, tmp_path):
    """Three concurrent attacker processes on one node read one float16 maps file through the page cache:
    each maps it and none holds a private copy of any of its pages (Private_Dirty 0)."""
    from fixtures import write_celeba_official

    from gnime_ray.cellspec import CellSpec
    from gnime_ray.tune.attack_pool import attack_cell
    from gnime_ray.tune.tasks import prepared

    data = tmp_path / "data"
    write_celeba_official(data, {i: 30 for i in range(1, 41)}, attrs=False)  # 1,200 images, 3x128x128
    preset = get_preset("smoke", max_images=None, celeba_identities=40, celeba_images_per_identity=30,
                        explain_batch_size=128)
    spec = _spec(tmp_path, "mapped", dataset="celeba", explainers=("grad",), preset=preset, data_root=str(data))
    prep = prepared(spec, "cpu")  # prepare once (in this process), as a study's prepare task does
    maps_file = prep.cache_path / f"maps-grad-paper-b{preset.explain_batch_size}.f16.npy"
    assert maps_file.stat().st_size > 100e6  # 1,200 x 3 x 128 x 128 float16 = 118 MB

    @ray.remote(num_cpus=1)
    def attack_and_inspect(seed: int) -> tuple[dict, dict]:
        cell = CellSpec("celeba", explainer="grad", defense="none", seed=seed).to_dict()
        row = attack_cell(cell, spec, None, "t", "cpu")
        # Rss, Private_Dirty, ... (kB) summed over this process's mappings of the maps file
        totals: dict[str, int] = {}
        inside = False
        for line in open("/proc/self/smaps"):
            head = line.split()
            if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
                inside = line.rstrip().endswith(str(maps_file))
                totals["mappings"] = totals.get("mappings", 0) + inside
            elif inside and len(head) == 3 and head[0].endswith(":") and head[2] == "kB":
                totals[head[0][:-1]] = totals.get(head[0][:-1], 0) + int(head[1])
        return row, totals

    results = ray.get([attack_and_inspect.remote(s) for s in range(3)])
    for row, mapping in results:
        assert row["status"] == "finished" and not row["skipped"] and row["n_eval"] == 60  # half of 120: test
        assert mapping.get("mappings", 0) >= 1 and mapping["Rss"] > 0  # the file is mapped and was read
        assert mapping["Private_Dirty"] == 0 and mapping.get("Anonymous", 0) == 0  # no page of it was copied


def test_attack_pool_threads_compute_what_each_attacker_computes_alone(local_ray, tmp_path):
    """Three attackers at once in one process (an attack pool's threads: RND's noise, two seeds of
    ExpMI without defence) give exactly the rows each gives alone, one after the other, at the same
    torch thread count: every draw comes from a generator the attacker owns (models/initialisation.py)."""
    import torch

    from gnime_ray.cellspec import CellSpec
    from gnime_ray.tune.attack_pool import attack_batch, attack_cell
    from gnime_ray.tune.placement import Placement

    cells = [CellSpec("digits", explainer="grad", defense=d, seed=s).to_dict()
             for d, s in (("none", 0), ("none", 1), ("rnd", 0))]
    alone = _spec(tmp_path, "pooled", explainers=("grad",), out=str(tmp_path / "alone"))
    pooled = dataclasses.replace(alone, out=str(tmp_path / "pooled"))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # what a pool sets for each attacker (cpus_per_task 1)
        one_by_one = [attack_cell(c, alone, None, "t", "cpu") for c in cells]
        at_once = attack_batch(cells, pooled, Placement(use_gpu=False), None, "t")
    finally:
        torch.set_num_threads(threads)
    metrics = ("mse", "ssim", "psnr", "tca", "deepsim", "perturbation_mse", "utility_deepsim", "attack_epochs_run")

    def same(x: float, y: float) -> bool:
        return x == y or (math.isnan(x) and math.isnan(y))

    for a, b in zip(one_by_one, at_once):
        assert a["status"] == b["status"] == "finished" and not b["skipped"]
        assert (a["cell"], a["attack_seed"]) == (b["cell"], b["attack_seed"])
        assert all(same(a[m], b[m]) for m in metrics), {m: (a[m], b[m]) for m in metrics}
        assert a["ssim_per_image"] == b["ssim_per_image"]
    assert len({r["ssim"] for r in at_once}) == 3  # three different attackers, not one computed thrice
