"""The Ray engine on local Ray with a faked GPU: resources, placement groups, Parquet rows,
resume after the driver is killed, study scripts."""

import dataclasses
import math
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
# local Ray studies: minutes in all (`make test-fast` leaves them out)
pytestmark = pytest.mark.slow

from gnime_ray import GnimeRayError  # noqa: E402
from gnime_ray.config import get_preset  # noqa: E402
from gnime_ray.store import SCHEMA, read_rows  # noqa: E402
from gnime_ray.tune import StudySpec, run_study, trial_resources  # noqa: E402
from gnime_ray.tune.study import pareto_flags  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, logging_level="ERROR",
             log_to_driver=False)
    yield
    ray.shutdown()


def _spec(tmp, name, **kw):
    base = dict(name=name, dataset="digits", out=str(tmp / "out"), preset=get_preset("smoke"), attack_seeds=2,
                num_samples=2, max_concurrent_trials=2, attackers_per_trial=1, checkpoint_every=1,
                cache_dir=str(tmp / "cache"))
    base.update(kw)
    return StudySpec(**base)


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


def test_study_spec_validation(tmp_path):
    with pytest.raises(ValueError, match="defenses"):
        _spec(tmp_path, "x", defenses=("none",))
    with pytest.raises(ValueError, match="name"):
        _spec(tmp_path, "_hidden")
    with pytest.raises(ValueError, match="attacker_gpu"):
        _spec(tmp_path, "x", attacker_gpu=1.5)
    for field, value in (("lam_range", (10.0, float("inf"))), ("widths", (float("nan"),)),
                         ("gamma_range", (1e-3, float("inf"))), ("gammas", (float("nan"),)),
                         ("trial_gpu", float("nan")), ("attacker_gpu", float("inf")), ("pool_allocator", "tcmalloc")):
        with pytest.raises(ValueError, match=field):
            _spec(tmp_path, "x", **{field: value})


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
    spec = _spec(tmp_path, "toolarge", attackers_per_trial=3, attacker_gpu=0.5)  # 1.5 GPUs in one pool
    with pytest.raises(GnimeRayError, match=r"attackers_per_trial x attacker_gpu must be at most 1.*3 x 0.5"):
        run_study(spec, log=lambda _: None)
    out = tmp_path / "out"
    assert not (tmp_path / "cache").exists()  # nothing prepared
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]  # nothing written


def test_fit_to_cluster_keeps_concurrent_trials_schedulable(tmp_path):
    from gnime_ray.tune.study import fit_to_cluster

    spec = _spec(tmp_path, "x", attackers_per_trial=3, max_concurrent_trials=2)
    assert fit_to_cluster(spec, 8).cpus_per_task == 1.0  # 2 x (1 + 3) bundles of 1 CPU fit
    assert fit_to_cluster(spec, 2, log=lambda _: None).cpus_per_task == 0.25
    assert fit_to_cluster(spec, 1, log=lambda _: None).cpus_per_task == 0.125


def test_pareto_flags():
    assert pareto_flags([(0.5, 0.9), (0.6, 0.8), (0.4, 0.7), (0.5, 0.95)]) == [False, False, True, True]


def test_smoke_study_on_fake_gpu(local_ray, tmp_path):
    # two trials at once, each 0.25 GPU and a pool of two attackers at 0.125: one fake GPU holds both
    spec = _spec(tmp_path, "smoke", gammas=(None, 1e-3), attackers_per_trial=2, attacker_gpu=0.125)
    result = run_study(spec, log=lambda _: None)
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
    spec = _spec(tmp_path, "diverge", preset=get_preset("smoke", gnime_lr=1e6), baselines=False, num_samples=1)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    result = run_study(spec, log=lambda _: None)
    assert not list(scratch.glob("gnime-optuna-*"))  # the driver's copy of the search journal is removed
    assert result["trials"] == [] and result["rows"] == []
    (trial,) = result["all_trials"]
    assert trial["status"] == "diverged" and "GNIME diverged at epoch" in trial["error"]
    assert trial["constraint"] == 1.0 and not trial["feasible"] and not trial["pareto"]  # infeasible: never on the front
    import pandas as pd

    (saved,) = pd.read_csv(tmp_path / "out" / "_trials" / "diverge.csv").to_dict("records")
    assert saved["status"] == "diverged" and math.isnan(saved["select_attack_ssim"]) and saved["lambda"] == trial["lambda"]


def test_study_scripts_help_and_missing_celeba(tmp_path):
    for script in ("quickstart.py", "table1.py", "celeba_lambda.py", "table2.py"):
        r = subprocess.run([sys.executable, str(ROOT / "studies" / script), "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "--num-samples" in r.stdout and "--trial-gpu" in r.stdout
    r = subprocess.run([sys.executable, str(ROOT / "studies" / "celeba_lambda.py"), "--data-root", str(tmp_path / "no")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"data root {tmp_path / 'no'} does not exist" in r.stderr and "celeba/img_align_celeba" in r.stderr


def test_multi_objective_and_grid_studies(local_ray, tmp_path, capsys):
    multi = run_study(_spec(tmp_path, "multi", objective="multi", attack_seeds=1, baselines=False,
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
    grid = run_study(_spec(tmp_path, "grid", search="grid", lam_range=(50.0, 50.0), widths=(1.0, 0.5),
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


@pytest.mark.parametrize("args,needle", [
    (["--trial-gpu", "inf"], "trial_gpu must be a finite number in (0, 1], got inf"),
    (["--attacker-gpu", "nan"], "attacker_gpu must be a finite number in (0, 1], got nan"),
    (["--set", "gnime_lr=inf"], "gnime_lr must be a finite number > 0, got inf"),
    (["--out", "s3://no-such-bucket/x"], "cannot reach bucket 'no-such-bucket'"),
    (["--gnime-seeds", "0"], "--gnime-seeds: expected an integer >= 1, got 0"),
    (["--final-gnime-seeds", "2"], "--final-gnime-seeds is no longer a flag: use --gnime-seeds"),
    (["--name", "x"], "--name is no longer a flag: use --study"),
    (["--set", "test_fraction=1.5"], "test_fraction must be in (0, 1)"),
    (["--set", "test_fraction=0"], "test_fraction must be in (0, 1)"),
])
def test_study_script_bad_input_fails_in_one_line_before_ray(args, needle, tmp_path):
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y", "AWS_EC2_METADATA_DISABLED": "true"}
    r = subprocess.run([sys.executable, str(ROOT / "studies" / "quickstart.py"), "--dataset", "digits", "--preset", "smoke",
                        "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), *args],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr[-2000:]
    assert "ray:" not in r.stdout and not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_a_script_never_attaches_to_another_process_private_ray(local_ray):
    """This test process runs a private ray.init(); a script started without --address starts its own."""
    probe = textwrap.dedent("""
        import ray
        from gnime_ray.tune import connect
        print("STARTED_HERE", connect(num_cpus=1, log=lambda _: None), ray.cluster_resources().get("GPU", 0))
    """)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert "STARTED_HERE True 0" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]  # not the fake-GPU test Ray


def test_a_recorded_cluster_is_current_while_its_raylet_runs_here(tmp_path):
    """connect()'s decision reads the process table, it times nothing: a raylet whose command line
    names the recorded GCS address means the cluster is current; another cluster's raylet, or a
    process that only mentions the address, does not."""
    from gnime_ray.tune.cluster import _raylet_of

    def process(pid: int, *argv: str) -> None:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    (tmp_path / "self").mkdir()
    process(10, "/venv/ray/core/src/ray/gcs/gcs_server", "--gcs-address=10.0.0.1:6379")
    process(11, "/venv/ray/core/src/ray/raylet/raylet", "--node_id=x", "--gcs-address=10.0.0.2:6379")
    assert not _raylet_of("10.0.0.1:6379", tmp_path)
    assert _raylet_of("10.0.0.2:6379", tmp_path)
    assert _raylet_of("10.0.0.1:6379", tmp_path / "absent")  # no process table: Ray's record is trusted


def test_address_auto_without_a_ray_start_cluster_is_one_line(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "RAY_TMPDIR": str(tmp_path)}
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")  # a cluster that is gone
    r = subprocess.run([sys.executable, str(ROOT / "studies" / "quickstart.py"), "--dataset", "digits", "--preset", "smoke", "--address",
                        "auto", "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert "--address auto: this machine is not a node of a running Ray cluster" in r.stderr


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
    spec = _spec(tmp_path, "mapped", dataset="celeba", explainers=("grad",), preset=preset, data_root=str(data),
                 use_gpu=False)
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

    cells = [CellSpec("digits", explainer="grad", defense=d, seed=s).to_dict()
             for d, s in (("none", 0), ("none", 1), ("rnd", 0))]
    alone = _spec(tmp_path, "pooled", explainers=("grad",), out=str(tmp_path / "alone"), use_gpu=False)
    pooled = dataclasses.replace(alone, out=str(tmp_path / "pooled"))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # what a pool sets for each attacker (cpus_per_task 1)
        one_by_one = [attack_cell(c, alone, None, "t", "cpu") for c in cells]
        at_once = attack_batch(cells, pooled, None, "t")
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


def _rows_of(trial: str, rng) -> list[dict]:
    """Two attackers' rows of one trial, every metric random, on both sets of images."""
    from gnime_ray.store.rows import SPLIT_METRICS

    return [{"trial": trial, **{f"{p}{m}": rng.random() for p in ("", "select_") for m in SPLIT_METRICS}}
            for _ in range(2)]


def _what_the_search_reads(rows_by_trial: dict[str, list[dict]], floor: float = 0.3) -> tuple:
    """Each trial's objective and searched values, the Pareto flags and the chosen trial, computed
    as the study computes them (tune/spec.py objective, tune/study.py, tune/heldout.py choose_front_points)."""
    from gnime_ray.tune.heldout import choose_front_points
    from gnime_ray.tune.spec import objective

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

    from gnime_ray.store.studies import read_record
    from gnime_ray.tune.heldout import REPORT_FIRST_SEED, search_and_report

    spec = _spec(tmp_path, "sel", num_samples=2, attack_seeds=2, gamma_range=(1e-3, 1e-2))
    outcome = search_and_report(spec, 2, log=lambda _: None, front_points=1)
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
    again = search_and_report(spec, 2, log=lambda _: None, front_points=1)
    assert again["chosen"] == outcome["chosen"]
    assert len(read_rows(spec.out).to_pylist()) == len(search["rows"]) + len(report["rows"])
    with pytest.raises(GnimeRayError, match="--gnime-seeds must be an integer >= 1, got 0"):
        search_and_report(spec, 0, log=lambda _: None)
