"""One cell end to end on the smoke preset: rows, schema, GNIME reuse, matched magnitudes."""

import json
import math

import pyarrow.dataset as pads
import pytest

from gnime_ray import __version__
from gnime_ray.cellspec import CellSpec
from gnime_ray.config import get_preset
from gnime_ray.pipeline.cell import run_cell
from gnime_ray.pipeline.prepare import prepare
from gnime_ray.provenance import code_commit
from gnime_ray.store import SCHEMA, read_rows, write_rows
from gnime_ray.store.rows import FIGURE_SAMPLE, SPLIT_METRICS, read_figure_sample


@pytest.fixture(scope="module")
def smoke_prep(tmp_path_factory):
    import os

    cache = tmp_path_factory.mktemp("cache")
    os.environ["GNIME_RAY_CACHE"] = str(cache)
    prep = prepare("digits", get_preset("smoke"), 0, explainers=["grad"], log=lambda _: None)
    yield prep
    os.environ.pop("GNIME_RAY_CACHE", None)


def _run(spec, prep, lines=None):
    return run_cell(spec, get_preset("smoke"), prep=prep, log=(lines.append if lines is not None else lambda _: None))


def test_gnime_cell_row_matches_schema_and_round_trips(smoke_prep, tmp_path):
    row = _run(CellSpec("digits", explainer="grad", defense="gnime"), smoke_prep)
    assert set(row) == set(SCHEMA.names) | {FIGURE_SAMPLE}
    assert 0 <= row["tca"] <= 1 and -1 <= row["ssim"] <= 1 and row["mse"] > 0
    # 12 evaluation images: 6 test images (the plain metrics), 6 selection images (select_*)
    assert row["split"] == "test" and row["n_eval"] == 6 and row["n_select"] == 6 and row["paper_n"] == 7000
    assert all(math.isfinite(row[f"select_{m}"]) for m in SPLIT_METRICS) and row["select_ssim"] != row["ssim"]
    # what figures and reproduction need: per-image values of the test images whose means are the row's
    assert len(row["ssim_per_image"]) == len(row["perturbation_per_map"]) == 6
    assert sum(row["ssim_per_image"]) / 6 == pytest.approx(row["ssim"], rel=1e-6)
    assert sum(row["perturbation_per_map"]) / 6 == pytest.approx(row["perturbation_mse"], rel=1e-6)
    # RND and OND are matched to GNIME's perturbation over the whole evaluation split (both sets)
    assert (row["perturbation_mse"] + row["select_perturbation_mse"]) / 2 == pytest.approx(row["matched_mse"], rel=1e-6)
    config = json.loads(row["config"])
    assert CellSpec(**config["cell"]) == CellSpec("digits", explainer="grad", defense="gnime")
    assert config["preset"] == get_preset("smoke").to_dict() and config["overrides"] == {}
    assert config["data"]["prepare_key"] == smoke_prep.key and config["runtime"]["threads"] >= 1
    assert config["runtime"]["code_commit"] == row["code_commit"] == code_commit() and row["code_version"] == __version__
    assert config["runtime"]["precision"] == config["runtime"]["gnime_precision"] == "fp32"
    assert config["runtime"]["memory_format"] in ("contiguous", "channels_last")
    # outside a study compile stays 'auto', undecided: the attacker and GNIME trained eager, as recorded
    assert config["runtime"]["compiled"] is False and config["runtime"]["gnime_compiled"] is False
    assert 0 < row["utility_deepsim"] <= 1
    write_rows([row], str(tmp_path / "out"))
    table = read_rows(str(tmp_path / "out"))
    assert table.num_rows == 1 and set(table.schema.names) == set(SCHEMA.names)
    back = table.to_pylist()[0]
    assert back["cell"] == row["cell"] and back["ssim"] == row["ssim"] and back["study"] == "cells"
    sample = read_figure_sample(str(tmp_path / "out"), back["figure_sample"])
    assert back["figure_sample"].startswith("_figures/study=cells/") and back["figure_sample"].endswith(".npz")
    assert sample["image"].dtype.name == "uint8" and sample["image"].shape == (6, 1, 32, 32)  # all 6 test images
    assert sample["clean_map"].shape == sample["released_map"].shape == (6, 1, 32, 32)
    assert sample["reconstruction"].shape == (6, 1, 32, 32) and list(sample["positions"]) == list(range(6))
    test_images = smoke_prep.dataset.images[smoke_prep.split.eval[smoke_prep.split.test]]
    assert (sample["image"] == test_images.numpy()).all()  # the sample is of the test images, by test position
    # plain pyarrow with hive partitioning reads the same dataset
    assert pads.dataset(str(tmp_path / "out"), partitioning="hive").to_table().num_rows == 1
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_rnd_ond_and_gamma_reuse_gnime_at_matched_magnitude(smoke_prep):
    _run(CellSpec("digits", explainer="grad", defense="gnime"), smoke_prep)
    for defense in ("rnd", "ond"):
        lines = []
        row = _run(CellSpec("digits", explainer="grad", defense=defense, seed=1), smoke_prep, lines)
        assert any("gnime: loaded" in l for l in lines) and not any("training on" in l for l in lines)
        tol = 0.15 if defense == "rnd" else 1e-4  # RND's MSE is a sample of 12 x 1024 Gaussian draws
        whole = (row["perturbation_mse"] + row["select_perturbation_mse"]) / 2  # both sets: the evaluation split
        assert whole == pytest.approx(row["matched_mse"], rel=tol)
    lines = []
    row = _run(CellSpec("digits", explainer="grad", defense="gnime", gamma=1e-3), smoke_prep, lines)
    assert not any("gnime: training" in l for l in lines)  # gamma never retrains the NG
    assert row["gamma"] == 1e-3 and row["perturbation_mse"] >= 1e-3 * (1 - 1e-5)  # MSE = gamma + mean^2


def test_split_metrics_are_the_metrics_of_each_set_of_images():
    """Each set's metrics equal the metric functions applied to that set alone (DeePSiM with its
    own N), from the per-image values of one evaluation."""
    import torch

    from gnime_ray.metrics import deepsim, feature_distance
    from gnime_ray.pipeline.cell import split_metrics

    g = torch.Generator().manual_seed(0)
    n = 10
    ev = {k: torch.rand(n, generator=g) for k in ("mse", "ssim", "psnr", "perturbation", "u_topk")}
    ev.update({k: torch.randn(n, 5, generator=g) for k in ("f_rec", "f_true", "u_clean", "u_released")})
    ev.update(pred_eval=torch.randint(0, 3, (n,), generator=g), pred_target=torch.randint(0, 3, (n,), generator=g),
              sample_image=torch.zeros(2))
    labels = torch.randint(0, 3, (n,), generator=g)
    pos = torch.tensor([1, 4, 5, 8])
    got = split_metrics(ev, pos, labels, 7000)
    assert got["ssim"] == pytest.approx(ev["ssim"][pos].mean().item())
    assert got["tca"] == (ev["pred_eval"][pos] == labels[pos]).float().mean().item()
    assert got["recl_acc"] == (ev["pred_target"][pos] == labels[pos]).float().mean().item()
    assert got["deepsim"] == deepsim(ev["f_rec"][pos], ev["f_true"][pos])
    assert got["deepsim"] == pytest.approx(math.exp(-torch.linalg.norm((ev["f_rec"][pos] - ev["f_true"][pos]).double()).item() / 4))
    assert got["feature_distance"] == feature_distance(ev["f_rec"][pos], ev["f_true"][pos])
    assert got["utility_deepsim"] == deepsim(ev["u_clean"][pos], ev["u_released"][pos])
    assert got["deepsim_paper_n"] == pytest.approx(got["deepsim"] ** math.sqrt(4 / 7000))  # the release's at N = 7000
    assert got["utility_deepsim_paper_n"] == pytest.approx(got["utility_deepsim"] ** math.sqrt(4 / 7000))
    assert got["perturbation_mse"] == pytest.approx(ev["perturbation"][pos].mean().item())
    assert got["utility_topk"] == pytest.approx(ev["u_topk"][pos].mean().item())
    no_maps = {k: v for k, v in ev.items() if k not in ("perturbation", "u_clean", "u_released", "u_topk")}
    assert math.isnan(split_metrics(no_maps, pos, labels, 7000)["utility_deepsim_paper_n"])
    assert math.isnan(split_metrics(ev, pos, labels)["deepsim_paper_n"])  # no paper N for the dataset


def test_none_and_predmi_cells(smoke_prep):
    none = _run(CellSpec("digits", explainer="grad", defense="none"), smoke_prep)
    assert none["perturbation_mse"] == 0 and none["utility_deepsim"] == 1 and none["matched_mse"] == 0
    assert none["utility_topk"] == 1 and none["matched_on"] == "" and none["matching"] == ""
    pred = _run(CellSpec("digits", attack="predmi", explainer="grad", defense="gnime"), smoke_prep)
    assert pred["explainer"] == "none" and pred["defense"] == "none" and math.isnan(pred["perturbation_mse"])


def test_read_rows_ignores_other_files_in_the_results_root(smoke_prep, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "README.md").write_text("# results\n")
    (out / "paper_tables.csv").write_text("table,dataset\n1,mnist\n")
    (out / "_tune").mkdir()
    (out / "_tune" / "state.parquet").write_bytes(b"not parquet")
    assert read_rows(str(out)).num_rows == 0
    row = _run(CellSpec("digits", explainer="grad", defense="none"), smoke_prep)
    write_rows([row], str(out))
    assert read_rows(str(out)).num_rows == 1


def _cli_study(tmp_path, cache_dir):
    """A small matrix study (lrp, 2 seeds) written by the CLI, as a researcher would make one."""
    from gnime_ray.cli import main

    out = tmp_path / "out"
    assert main(["matrix", "--dataset", "digits", "--preset", "smoke", "--attack-seeds", "2", "--explainers", "lrp",
                 "--out", str(out), "--study", "m", "--gamma", "0.002"]) == 0
    return out


def test_export_reproduce_and_figures_from_a_cli_study(cache_dir, tmp_path, capsys):
    import subprocess
    import sys

    import torch

    from gnime_ray.cli import main
    from gnime_ray.defenses import GnimeDefense, GnimeModel
    from gnime_ray.explain import get_explainer
    from gnime_ray.pipeline.cache import load_tensors
    from gnime_ray.pipeline.prepare import prepare

    out = _cli_study(tmp_path, cache_dir)
    rows = read_rows(str(out)).to_pylist()
    gnime_row = next(r for r in rows if r["defense"] == "gnime" and r["attack_seed"] == 0)
    capsys.readouterr()

    # Phase II: the study's GNIME with its gamma, as one file (torch.export's, and TorchScript on request)
    defence, scripted = tmp_path / "defence.pt2", tmp_path / "defence.pt"
    assert main(["export", "--out", str(out), "--study", "m", "--dest", str(defence)]) == 0
    assert "torch.export.load(PATH).module()" in capsys.readouterr().out
    assert main(["export", "--out", str(out), "--study", "m", "--dest", str(scripted), "--format", "torchscript"]) == 0
    prep = prepare("digits", get_preset("smoke"), 0, explainers=["lrp"], log=lambda _: None)
    model = GnimeModel.from_state(load_tensors(cache_dir / gnime_row["gnime_artifact"][len("_artifacts/"):]))
    ev = prep.split.eval
    maps, logits = prep.maps[("lrp", "paper")][ev].float(), prep.logits[ev]
    expected = GnimeDefense(model, 0.002).release(maps, logits, None, 0)
    torch.save({"maps": maps, "logits": logits}, tmp_path / "inputs.pt")
    # a fresh Python in which gnime_ray cannot be imported: only torch loads and runs the defence,
    # from either file; the default format loads without torch's deprecation warning
    for path, load in ((defence, "torch.export.load({!r}).module()"), (scripted, "torch.jit.load({!r})")):
        probe = (
            "import sys, importlib.abc, warnings\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'gnime_ray': raise ImportError('gnime_ray is not available here')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import torch\n"
            f"with warnings.catch_warnings(record=True) as caught:\n"
            f"    warnings.simplefilter('always')\n"
            f"    d = {load.format(str(path))}\n"
            f"x = torch.load({str(tmp_path / 'inputs.pt')!r})\n"
            f"torch.save(d(x['maps'], x['logits']), {str(tmp_path / 'released.pt')!r})\n"
            "assert not any(m.startswith('gnime_ray') for m in sys.modules)\n"
            "print('DEPRECATED' if any('deprecated' in str(w.message) for w in caught) else 'CURRENT')\n")
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        assert torch.equal(torch.load(tmp_path / "released.pt"), expected)
        assert r.stdout.split()[-1] == ("CURRENT" if path == defence else "DEPRECATED")

    # the wrapper a deployment uses: logits and protected maps of a batch, from either file
    import gnime_ray

    x = prep.images(ev[:5])
    for path in (defence, scripted):
        protector = gnime_ray.Protector(prep.target, get_explainer("lrp", "paper"), path)
        got_logits, protected = protector(x)
        assert torch.allclose(got_logits, prep.logits[ev[:5]], atol=1e-5)
        assert protected.shape == (5, 1, 32, 32) and not torch.allclose(protected, maps[:5])
        assert torch.equal(protector.to("cpu")(x)[1], protected)
    with pytest.raises(FileNotFoundError, match="not an exported defence"):
        gnime_ray.Protector(prep.target, get_explainer("lrp", "paper"), tmp_path / "inputs.pt.missing")

    # a row, run again from what it recorded with a fresh cache: the same metrics, nothing written
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main(["reproduce", "--out", str(out), "--study", "m", "--cell", gnime_row["cell"], "--attack-seed", "0",
                 "--cache-dir", str(tmp_path / "fresh")]) == 0
    text = capsys.readouterr().out
    assert "reproduced: every metric within" in text and "| ssim | " in text
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before

    # figures: the reconstruction grid and the perturbation histogram, PNG and CSV
    assert main(["figures", "--out", str(out), "--dest", str(tmp_path / "figs")]) == 0
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == ["perturbation-digits-lrp.csv", "perturbation-digits-lrp.png", "reconstructions-digits-lrp.csv",
                     "reconstructions-digits-lrp.png"]
    grid = (tmp_path / "figs" / "reconstructions-digits-lrp.csv").read_text().splitlines()
    assert len(grid) == 1 + 6 * 5  # the 6 test images x (PredMI, ExpMI, RND, OND, GNIME)
    assert grid[0].startswith("test_position,")

    # the same study name with another preset field: refused in one line naming it, nothing written
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main(["matrix", "--dataset", "digits", "--preset", "smoke", "--attack-seeds", "2", "--explainers", "lrp",
                 "--out", str(out), "--study", "m", "--gamma", "0.002", "--set", "gnime_lr=0.001"]) == 2
    err = capsys.readouterr().err
    assert "study 'm'" in err and "preset.gnime_lr 0.0001 -> 0.001" in err and err.count("\n") == 1
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    # ... and so is a single cell with another budget under the matrix's name
    assert main(["cell", "--dataset", "digits", "--preset", "smoke", "--out", str(out), "--study", "m",
                 "--set", "attack_epochs=3"]) == 2
    assert "preset.attack_epochs 2 -> 3" in capsys.readouterr().err
    # the same settings again: every cell already done, the study's memory format as recorded
    assert main(["matrix", "--dataset", "digits", "--preset", "smoke", "--attack-seeds", "2", "--explainers", "lrp",
                 "--out", str(out), "--study", "m", "--gamma", "0.002"]) == 0
    text = capsys.readouterr().out
    assert "matrix m: 10 cells, 10 already done" in text

    # bad input: one line, non-zero
    for argv, needle in ((["export", "--out", str(out), "--study", "nope", "--dest", str(tmp_path / "x.pt")], "no study 'nope'"),
                         (["export", "--out", str(out), "--study", "m", "--trial", "t9", "--dest", str(tmp_path / "x.pt")],
                          "has no trial 't9'"),
                         (["reproduce", "--out", str(out), "--study", "m", "--cell", "nocell", "--attack-seed", "0"],
                          "has no cell 'nocell'"),
                         (["reproduce", "--out", str(out), "--study", "m", "--cell", gnime_row["cell"], "--attack-seed", "7"],
                          "no row of cell"),
                         (["figures", "--out", str(tmp_path / "empty"), "--dest", str(tmp_path / "f2")], "no rows"),
                         (["table", "--out", str(out), "--dataset", "digits", "--study", "m", "--trial", "t9"],
                          "has no trial 't9'")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, (argv, err)


def test_figures_refuse_rows_without_figure_data(tmp_path, capsys):
    from gnime_ray.cli import main

    row = {f.name: float("nan") if str(f.type) == "double" else None for f in SCHEMA}
    row.update(study="old", dataset="digits", explainer="lrp", trial="", cell="c", aux_dataset="same", variant="paper",
               defense="gnime", attack="expmi", study_seed=0, attack_seed=0, preset="smoke", n_eval=5,
               attack_epochs_run=1)
    write_rows([row], str(tmp_path / "out"))  # as an earlier version wrote rows: no figure data
    assert main(["figures", "--out", str(tmp_path / "out"), "--dest", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err
    assert "keep no figure data (written by an earlier version" in err and err.count("\n") == 1


def test_figure_6_plots_the_mean_f1_per_defence(tmp_path):
    """The attribute figure (Fig. 6): one bar per (defence, attribute) at the mean F1 over the rows."""
    from gnime_ray.report.figures import _attributes

    rows = [{"attack": "expmi", "explainer": "lrp", "defense": "none", "f1_male": f, "f1_young": 0.3} for f in (0.5, 0.7)]
    rows += [{"attack": "predmi", "explainer": "none", "defense": "none", "f1_male": 0.4, "f1_young": float("nan")}]
    png, csv = _attributes(tmp_path, rows, "celeba")
    assert png.stat().st_size > 0
    assert csv.read_text().splitlines() == ["defence,attribute,f1", "PredMI,male,0.400000", "PredMI,young,nan",
                                            "lrp none,male,0.600000", "lrp none,young,0.300000"]
    assert _attributes(tmp_path, [{"attack": "predmi", "f1_male": float("nan")}], "digits") == []  # no F1: no figure


def test_gnime_variant_and_release_attackers_are_recorded_and_keyed(smoke_prep):
    """The GNIME variant is in the cache key (another training) and in the row; the release's
    attacker settings (per defence) change the attacker, the uniform ones do not depend on it."""
    from gnime_ray.attacks import attack_settings
    from gnime_ray.pipeline.defend import gnime_path

    paper, one_scale = get_preset("smoke"), get_preset("smoke", gnime_variant="one-scale")
    spec = CellSpec("digits", explainer="grad", defense="gnime")
    assert gnime_path(smoke_prep, spec, paper) != gnime_path(smoke_prep, spec, one_scale)
    rows = {p.gnime_variant: run_cell(spec, p, prep=smoke_prep, log=lambda _: None) for p in (paper, one_scale)}
    assert rows["paper"]["gnime_variant"] == "paper" and rows["one-scale"]["gnime_variant"] == "one-scale"
    assert rows["paper"]["gnime_artifact"] != rows["one-scale"]["gnime_artifact"] or not rows["paper"]["gnime_artifact"]
    assert rows["paper"]["perturbation_mse"] != rows["one-scale"]["perturbation_mse"]
    none = run_cell(CellSpec("digits", explainer="grad", defense="none"), paper, prep=smoke_prep, log=lambda _: None)
    assert none["gnime_variant"] == ""
    # attackers: the release's settings per defence, or one setting for all
    assert attack_settings("release", "gnime", 32) == ((0.9, 0.999), 128)
    assert attack_settings("release", "rnd", 32) == attack_settings("release", "none", 32) == ((0.5, 0.999), 256)
    assert attack_settings("uniform", "rnd", 32) == attack_settings("uniform", "gnime", 32) == ((0.9, 0.999), 32)
    release = get_preset("smoke", attack_optimiser="release")
    a = run_cell(CellSpec("digits", explainer="grad", defense="none"), release, prep=smoke_prep, log=lambda _: None)
    assert a["ssim"] != none["ssim"]
    from gnime_ray import GnimeRayError

    with pytest.raises(GnimeRayError, match="attack_optimiser must be uniform or release, got 'keras'"):
        get_preset("smoke", attack_optimiser="keras")


def test_the_shared_reference_features_equal_f_on_the_evaluation_images_and_x_times_e(smoke_prep):
    """pipeline/cell.py reference_features: f's features of the evaluation images and of x*e,
    computed once per process, are exactly what f gives for them, and a second call reuses them."""
    import torch

    from gnime_ray.metrics import features, masked
    from gnime_ray.pipeline.cell import reference_features

    split = smoke_prep.split
    truth = smoke_prep.image_rows(split.eval)
    clean = smoke_prep.map_rows(("grad", "paper"), split.eval)
    smoke_prep.memo.clear()
    ref = reference_features(smoke_prep, truth, clean, ("grad", "paper"), 16)
    x, e = truth.take(torch.arange(len(truth))), clean.take(torch.arange(len(clean)))
    target = smoke_prep.target.eval()
    assert torch.allclose(ref["f_true"], features(target, x, 16), atol=1e-6)
    assert torch.allclose(ref["u_clean"], features(target, masked(x, e), 16), atol=1e-6)
    assert reference_features(smoke_prep, truth, clean, ("grad", "paper"), 16) is ref
