"""The one list of a study's cells (study/cells.py), as both engines make it: the matrix's
cells are exactly those of the comprehension it used before the list was shared (written out
here), and a Ray trial's cells are the matrix's cells of its GNIME configuration."""


import pytest

from gnime_ray.cellspec import DEFENSES, CellSpec
from gnime_ray.paper import TABLE2_DEFENSES
from gnime_ray.pipeline.matrix import matrix_specs
from gnime_ray.study.cells import baseline_cells, defence_cells
from gnime_ray.study.spec import StudySpec


def _matrix_before(dataset, explainers, seeds, gammas, aux, gnime_seeds, lam, matches):
    """pipeline/matrix.py's matrix_specs as it was written before the list was shared."""
    specs = [CellSpec(dataset, attack="predmi", seed=s, study_seed=0, aux_dataset=aux) for s in range(seeds)]
    for e in explainers:
        specs += [CellSpec(dataset, explainer=e, defense="none", attack="expmi", seed=s, variant="paper",
                           study_seed=0, aux_dataset=aux) for s in range(seeds)]
        for gamma in gammas[e]:
            for d in (DEFENSES if aux == "same" else TABLE2_DEFENSES):
                for m in (matches if d in ("rnd", "ond") else ("perturbation",)) if d != "none" else ():
                    for n in range(gnime_seeds):
                        specs += [CellSpec(dataset, explainer=e, defense=d, attack="expmi", seed=s, lam=lam, width=1.0,
                                           gamma=gamma, variant="paper", study_seed=0, aux_dataset=aux, gnime_seed=n,
                                           match=m) for s in range(seeds)]
    return specs


@pytest.mark.parametrize("aux", ["same", "facescrub"])
def test_the_matrix_makes_the_cells_it_made_before(aux):
    gammas = {"grad": (0.002, 0.004), "lrp": (None,)}
    matches = ("perturbation", "utility", "utility-topk")
    now = matrix_specs("mnist5k", ("grad", "lrp"), 2, gammas=gammas, aux=aux, gnime_seeds=2, lam=100.0,
                       matches=matches)
    before = _matrix_before("mnist5k", ("grad", "lrp"), 2, gammas, aux, 2, 100.0, matches)
    assert sorted((c.key(), c.seed) for c in now) == sorted((c.key(), c.seed) for c in before)
    assert len({(c.key(), c.seed) for c in now}) == len(now)  # no cell twice


def test_a_trials_cells_are_the_matrix_cells_of_its_configuration(tmp_path):
    """A Ray trial's cells (StudySpec.defence_cells of its config, as tune/trial.py lists them) and the
    study's baselines (StudySpec.baseline_cells, tune/study.py) are the matrix's."""
    matches = ("perturbation", "utility")
    matrix = matrix_specs("mnist5k", ("lrp",), 3, lam=10.0, width=0.5, gammas=(0.01,), gnime_seeds=2, matches=matches)
    study = StudySpec(name="s", dataset="mnist5k", out=str(tmp_path), explainers=("lrp",), search="grid",
                      defenses=("gnime", "rnd", "ond"), matches=matches, attack_seeds=3, gnime_seeds=(0, 1))
    config = {"explainer": "lrp", "lam": 10.0, "width": 0.5, "gamma": 0.01, "gnime_seed": 1}
    trial = study.defence_cells(config)
    base = CellSpec("mnist5k", explainer="lrp", defense="gnime", lam=10.0, width=0.5, gnime_seed=1)
    assert trial == defence_cells(base, (0.01,), ("gnime", "rnd", "ond"), matches, range(3), (1,))
    assert {(c.key(), c.seed) for c in trial} == {(c.key(), c.seed) for c in matrix
                                                 if c.gnime_seed == 1 and c.defense != "none" and c.attack == "expmi"}
    # 3 attack seeds x (GNIME + RND and OND at each of 2 matches)
    assert len(trial) == 3 * 5
    assert {(c.key(), c.seed) for c in study.baseline_cells()} == {
        (c.key(), c.seed) for c in matrix if c.defense == "none" or c.attack == "predmi"}


def test_baselines_are_predmi_and_expmi_without_defence():
    cells = baseline_cells("digits", ("grad", "lrp"), range(2), aux="facescrub")
    assert [(c.attack, c.explainer, c.defense, c.seed) for c in cells] == [
        ("predmi", "none", "none", 0), ("predmi", "none", "none", 1), ("expmi", "grad", "none", 0),
        ("expmi", "grad", "none", 1), ("expmi", "lrp", "none", 0), ("expmi", "lrp", "none", 1)]
    assert all(c.aux_dataset == "facescrub" for c in cells)
