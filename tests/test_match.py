"""RND and OND matched to GNIME's utility (pipeline/match.py), on the smoke preset: the size found
gives the defence GNIME's utility on the selection images (recomputed here by hand), is the same for
every attack seed, and is recorded in the row."""

import json
import math

import pytest
import torch

from gnime_ray.cellspec import CellSpec
from gnime_ray.config import get_preset
from gnime_ray.defenses import GnimeDefense
from gnime_ray.metrics import deepsim_at, features, masked, topk_agreement
from gnime_ray.pipeline.cell import run_cell
from gnime_ray.pipeline.defend import train_or_load_gnime
from gnime_ray.pipeline.match import TOLERANCE
from gnime_ray.pipeline.prepare import prepare

GAMMA = 0.01


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return prepare("digits", get_preset("smoke"), 0, explainers=["lrp"], log=lambda _: None, cache_dir=str(cache))


def _row(prep, **kw):
    spec = CellSpec("digits", explainer="lrp", gamma=GAMMA, **kw)
    return run_cell(spec, get_preset("smoke"), prep=prep, log=lambda _: None, cache_dir=str(prep.cache_root))


def _selection(prep):
    sel, ev = prep.split.select, prep.split.eval
    return (prep.map_rows(("lrp", "paper"), ev).take(sel), prep.image_rows(ev).take(sel),
            prep.logit_rows(ev).take(sel))


def test_match_is_normalised_and_keyed():
    assert CellSpec("digits", defense="gnime", match="utility").match == "perturbation"
    assert CellSpec("digits", attack="predmi", match="utility").match == "perturbation"
    key = CellSpec("digits", defense="rnd", match="utility-topk").key()
    assert "/rnd-at-utility-topk/" in key and CellSpec("digits", defense="rnd").key() != key
    assert "/rnd/" in CellSpec("digits", defense="rnd").key()  # the paper's protocol keeps its earlier keys
    with pytest.raises(ValueError, match="match must be one of perturbation, utility, utility-topk"):
        CellSpec("digits", defense="rnd", match="psnr")


def test_rnd_at_gnime_utility_reaches_it_on_the_selection_images(prep):
    gnime_row = _row(prep, defense="gnime")
    rows = [_row(prep, defense="rnd", match="utility", seed=s) for s in (0, 1)]
    assert rows[0]["matched_mse"] == rows[1]["matched_mse"]  # one size for every attack seed
    assert rows[0]["matched_on"] == "utility" and gnime_row["matched_on"] == "" and gnime_row["matching"] == ""
    found = json.loads(rows[0]["matching"])
    assert found["size"] == rows[0]["matched_mse"] and found["measure"] == "utility"
    # GNIME's utility on the selection images, as the match read it, is the gnime row's select utility
    assert found["target_utility"] == pytest.approx(gnime_row["select_utility_deepsim_paper_n"], abs=1e-9)
    # recomputed by hand: RND's one fixed draw at that size gives the achieved utility, within the tolerance
    e, x, _ = _selection(prep)
    from gnime_ray.cellspec import derive_seed

    spec = CellSpec("digits", explainer="lrp", gamma=GAMMA, defense="rnd", match="utility")
    z = torch.randn(e.shape, generator=torch.Generator().manual_seed(derive_seed(0, "match", spec.key())))
    u = deepsim_at(features(prep.target, masked(x, e)), features(prep.target, masked(x, e + math.sqrt(found["size"]) * z)),
                   7000)
    assert u == pytest.approx(found["achieved_utility"], abs=1e-9)
    assert found["converged"] and abs(u - found["target_utility"]) <= TOLERANCE * (1 - found["target_utility"])
    # the released maps of the cell are at that size: its perturbation is about it (a new draw per map)
    assert rows[0]["perturbation_mse"] == pytest.approx(found["size"], rel=0.25)


def test_ond_at_gnime_topk_utility(prep):
    row = _row(prep, defense="ond", match="utility-topk")
    found = json.loads(row["matching"])
    e, x, y = _selection(prep)
    gnime = train_or_load_gnime(prep, CellSpec("digits", explainer="lrp", gamma=GAMMA), get_preset("smoke"),
                                torch.device("cpu"), log=lambda _: None)
    released = GnimeDefense(gnime, GAMMA).release(e, y, x, None)
    assert found["target_utility"] == pytest.approx(topk_agreement(e, released).mean().item(), abs=1e-6)
    # OND's perturbation is exactly the size found (its maps are scaled onto that L2 sphere)
    assert row["perturbation_mse"] == pytest.approx(found["size"], rel=1e-4)
    assert found["converged"] or found["size"] in (1e-8, 1.0)  # a target no size reaches ends at the range's end
    sizes = [s for s, _ in found["evaluations"]]
    assert len(sizes) == len(set(sizes)) and found["size"] in sizes
