"""Real-data features end to end on the tiny fixtures: `data check`, CelebA cells with an
auxiliary FaceScrub attacker (Table 2), the attribute classifiers (Fig. 6), the CelebA study."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import write_celeba_official, write_imagefolder
from torch import nn

from gnime_ray.cellspec import CellSpec
from gnime_ray.cli import main
from gnime_ray.config import get_preset
from gnime_ray.metrics import f1_score
from gnime_ray.paper import PAPER_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # studies end to end (`make test-fast` leaves them out)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """celeba/ (9 identities with 8-10 images; the smoke preset selects 6 x 8) and facescrub/."""
    root = tmp_path_factory.mktemp("data")
    write_celeba_official(root, {i: 8 + (i % 3) for i in range(1, 10)})
    write_imagefolder(root / "facescrub", ["Alan_Alda", "Bea_Arthur", "Kate_Moss"], per_class=6, size=(40, 40))
    return root


def test_paper_preset_celeba_budgets():
    assert get_preset("paper", "celeba").classifier_batch_size == 128
    assert get_preset("paper", "celeba").gnime_batch_size == 128
    assert get_preset("paper", "mnist").gnime_batch_size == 1024
    assert get_preset("paper", "celeba", gnime_batch_size=64).gnime_batch_size == 64  # --set still wins


def test_data_check_prints_counts_and_selection(data_root, tmp_path, capsys):
    cache = tmp_path / "cache"
    argv = ["data", "check", "--dataset", "celeba", "--data-root", str(data_root), "--preset", "smoke",
            "--cache-dir", str(cache)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "dataset celeba: 48 images (3, 128, 128) uint8, 6 classes (8 to 8 images per class)" in out
    assert "layout: official" in out and "identities: 6" in out and "Eyeglasses" in out
    entry = next((cache / "data").iterdir())
    assert len((entry / "identities.txt").read_text().split()) == 6
    assert main(["data", "check", "--dataset", "celeba", "--data-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"data root {tmp_path / 'nowhere'} does not exist" in err


def test_f1_matches_scikit_learn():
    from sklearn.metrics import f1_score as sk_f1

    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
        assert f1_score(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(sk_f1(b, a))
    assert f1_score(torch.zeros(5), torch.zeros(5)) == 0.0 == sk_f1(np.zeros(5), np.zeros(5), zero_division=0)


def test_aux_cell_trains_on_facescrub_and_evaluates_on_celeba(data_root, tmp_path):
    from gnime_ray.pipeline.cell import run_cell
    from gnime_ray.store import SCHEMA

    lines = []
    spec = CellSpec("celeba", explainer="grad", defense="gnime", aux_dataset="facescrub")
    row = run_cell(spec, get_preset("smoke", "celeba"), cache_dir=str(tmp_path / "cache"), data_root=str(data_root),
                   log=lines.append)
    assert row["aux_dataset"] == "facescrub" and row["cell"].startswith("celeba/facescrub/grad")
    # 18 FaceScrub images: 16 train the attacker, 2 early-stop it; CelebA's 48-image split evaluates it
    # (its 5 evaluation images: 2 test, 3 selection)
    assert any("training expmi on 16 released maps" in line for line in lines)
    assert row["n_eval"] == 2 and row["n_select"] == 3 and set(SCHEMA.names) <= set(row)
    assert all(np.isnan(row[f"f1_{a.lower()}"]) for a in PAPER_ATTRIBUTES)  # no attribute classifiers trained
    with pytest.raises(Exception, match="auxiliary dataset digits has images"):
        run_cell(CellSpec("celeba", explainer="grad", defense="none", aux_dataset="digits"),
                 get_preset("smoke", "celeba"), cache_dir=str(tmp_path / "cache"), data_root=str(data_root),
                 log=lambda _: None)


class _TinyAttributeNet(nn.Module):
    """Stands in for ResNet-50 so that the training/caching/F1 plumbing is tested in seconds."""

    def __init__(self, weights=None, generator=None):
        from gnime_ray.models.initialisation import (
            default_generator,
            keras_init_,
            on_meta,
        )

        super().__init__()
        with on_meta():
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     nn.Linear(4, 1))
        keras_init_(self, default_generator(generator))

    def forward(self, x):
        return self.net(x).squeeze(1)


def test_attribute_classifiers_disjoint_cached_and_recorded(data_root, tmp_path, monkeypatch, capsys):
    from gnime_ray.pipeline import attributes as attr_mod
    from gnime_ray.pipeline.cell import run_cell

    monkeypatch.setattr(attr_mod, "AttributeClassifier", _TinyAttributeNet)
    cache = tmp_path / "cache"
    preset = get_preset("smoke", "celeba")
    assert main(["attributes", "--data-root", str(data_root), "--preset", "smoke", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "| Eyeglasses |" in out and "| Blond_Hair |" in out
    # the attribute set: identities outside the subset only
    entries = {json.loads((e / "meta.json").read_text())["key"].get("purpose"): e for e in (cache / "data").iterdir()}
    subset = json.loads((entries[None] / "meta.json").read_text())
    attr_set = json.loads((entries["attributes"] / "meta.json").read_text())
    assert not set(subset["identities"]) & set(attr_set["identities"])
    assert not set(subset["files"]) & set(attr_set["files"]) and len(attr_set["files"]) == 16
    # a second call loads them; a cell of the same subset fills the f1 columns
    assert main(["attributes", "--data-root", str(data_root), "--preset", "smoke", "--cache-dir", str(cache)]) == 0
    assert "attributes: loaded from cache" in capsys.readouterr().out
    row = run_cell(CellSpec("celeba", explainer="grad", defense="none"), preset, cache_dir=str(cache),
                   data_root=str(data_root), log=lambda _: None)
    values = [row[f"f1_{a.lower()}"] for a in PAPER_ATTRIBUTES]
    assert all(0.0 <= v <= 1.0 for v in values)


def test_resnet50_attribute_classifier_and_local_weights(tmp_path):
    from torchvision.models import resnet50

    from gnime_ray import GnimeRayError
    from gnime_ray.models.attribute_classifier import AttributeClassifier

    torch.manual_seed(0)
    ref = resnet50(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r50.pth")
    model = AttributeClassifier(str(tmp_path / "r50.pth")).eval()
    assert torch.equal(model.net.conv1.weight, ref.conv1.weight) and model.net.fc.out_features == 1
    with torch.no_grad():
        assert model(torch.rand(2, 3, 64, 64)).shape == (2,)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(GnimeRayError, match="not a ResNet-50 state dict"):
        AttributeClassifier(str(tmp_path / "other.pth"))
    with pytest.raises(GnimeRayError, match="no such file"):
        AttributeClassifier(str(tmp_path / "missing.pth"))


def test_celeba_lambda_study_on_the_fixture(data_root, tmp_path):
    """studies/celeba_lambda.py --data-root DIR --preset smoke, end to end on local Ray."""
    env = dict(os.environ, GNIME_RAY_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, str(ROOT / "studies" / "celeba_lambda.py"), "--data-root", str(data_root),
                        "--preset", "smoke", "--out", str(tmp_path / "out"), "--num-cpus", "2", "--num-samples", "1",
                        "--attack-seeds", "1", "--explainers", "grad", "--gnime-seeds", "1"], capture_output=True,
                       text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "CelebA: official layout" in r.stdout and "| grad |" in r.stdout
    assert "optimism of the search (grad)" in r.stdout and "celeba (ours, 1 seeds)" in r.stdout
    rows = load_rows(tmp_path / "out")
    counts = Counter((x["study"], x["attack"], x["defense"], x["matched_on"]) for x in rows)
    # the search: its one trial's GNIME attacked at each of the three budgets (0.5, 1, 2 x the paper's),
    # no baselines (its report runs them)
    expected = {("celeba_lambda", "expmi", "gnime", ""): 3}
    # its report: each budget a front point, one fresh GNIME each, RND and OND at its perturbation and utility
    report = "celeba_lambda-grad-report"
    expected.update({(report, "expmi", "gnime", ""): 3, (report, "expmi", "none", ""): 1,
                     (report, "predmi", "none", ""): 1})
    for defense in ("rnd", "ond"):
        expected.update({(report, "expmi", defense, m): 3 for m in ("perturbation", "utility", "utility-topk")})
    assert dict(counts) == expected, dict(counts)
    assert all(x["dataset"] == "celeba" for x in rows)


def test_table2_study_on_the_fixture(data_root, tmp_path):
    """studies/table2.py: CelebA's target, attackers trained on FaceScrub, Table 2 printed."""
    env = dict(os.environ, GNIME_RAY_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, str(ROOT / "studies" / "table2.py"), "--data-root", str(data_root),
                        "--preset", "smoke", "--out", str(tmp_path / "out"), "--num-cpus", "2", "--attack-seeds", "1",
                        "--explainers", "grad"], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "celeba (ours, attacker trained on facescrub, 1 attack seeds x 2 GNIMEs)" in r.stdout  # 2 by default
    assert "celeba (paper, attacker trained on facescrub, 5 runs)" in r.stdout
    rows = load_rows(tmp_path / "out")
    assert sorted((x["attack"], x["defense"], x["gnime_seed"]) for x in rows) == [
        ("expmi", "gnime", 0), ("expmi", "gnime", 1), ("expmi", "none", 0), ("predmi", "none", 0)]
    assert all(x["aux_dataset"] == "facescrub" for x in rows)


def load_rows(out):
    from gnime_ray.store import read_rows

    return read_rows(str(out)).to_pylist()
