"""The study console (tune/console.py): its lines, its progress in trials and its tqdm bar,
driven by hand-made Tune trials and results (no Ray started)."""

import pickle
from types import SimpleNamespace

import pytest

from gnime_ray.tune.console import StudyConsole


def _trial(tid, status="RUNNING"):
    return SimpleNamespace(trial_id=tid, config={"lam": 10.0, "width": 0.5, "gamma": 0.01}, status=status)


def _gnime(epoch, epochs=150):
    return {"stage": "gnime", "epoch": epoch, "epochs": epochs, "l_adv": 0.1, "l_dist": 0.2, "node": "n1",
            "speed": "channels_last, fp32"}


def _final(gnime_seconds, attack_seconds):
    return {"final": True, "status": "finished", "gnime_seconds": gnime_seconds,
            "attack_phase_seconds": attack_seconds, "select_attack_ssim": 0.5, "select_attack_tca": 0.6,
            "select_utility": 0.95, "select_perturbation_mse": 0.01, "constraint": -0.05}


def test_progress_counts_trials_by_gnime_epochs_and_attackers_weighted_by_the_learnt_share():
    lines = []
    console = StudyConsole("s", "lrp", lines.append, trials=2, bar=False)
    a, b = _trial("a"), _trial("b")
    console.on_trial_start(0, [a, b], a)
    console.on_trial_result(0, [a, b], a, _gnime(75))
    assert console.progress() == pytest.approx(0.25)  # half the GNIME, at the default share of a half
    console.on_trial_result(0, [a, b], a, {"stage": "attack", "attackers_done": 1, "attackers": 2,
                                           "gnime_seconds": 30.0})
    assert console.progress() == pytest.approx(0.5 + 0.25)
    console.on_trial_result(0, [a, b], a, _final(30.0, 90.0))
    assert console.progress() == pytest.approx(1.0)
    console.on_trial_result(0, [a, b], b, _gnime(150))  # b's GNIME done: a quarter of a trial, a's share
    assert console.progress() == pytest.approx(1.25)
    # the lines: the start, the node once, the GNIME epochs, the attackers, the end
    assert lines[0] == "[s lrp] trial a: started (lambda=10.0 width=0.5 gamma=0.01)"
    assert sum("running on n1" in line for line in lines) == 2
    assert any("trial a: attackers 1/2 finished" in line for line in lines)
    assert any("trial a: finished in" in line and "attack SSIM 0.5000" in line and "feasible" in line for line in lines)


def test_a_restored_experiment_counts_the_trials_that_ended_before_it():
    console = StudyConsole("s", "lrp", lambda _: None, trials=3, bar=False)
    console.on_step_begin(0, [_trial("a", "TERMINATED"), _trial("b", "ERROR"), _trial("c", "PENDING")])
    assert console.progress() == pytest.approx(2.0)


def test_the_bar_draws_on_stderr_and_is_not_pickled_with_the_experiment(capsys):
    console = StudyConsole("s", "lrp", print, trials=2, bar=True)
    t = _trial("a")
    console.on_trial_result(0, [t], t, _gnime(150))
    assert console.bar.n == pytest.approx(0.5)
    restored = pickle.loads(pickle.dumps(console))  # what Tune does with its callbacks
    assert restored.bar is None and restored.progress() == pytest.approx(0.5)
    console.close()
    err = capsys.readouterr().err
    assert "s lrp:" in err and "/2 trials" in err


def test_no_bar_without_a_terminal_or_a_trial_count(capsys):
    assert StudyConsole("s", "lrp", print, trials=None).bar is None
    console = StudyConsole("s", "lrp", print, trials=2)  # pytest's stderr is not a terminal
    t = _trial("a")
    console.on_trial_result(0, [t], t, _gnime(150))
    console.close()
    assert capsys.readouterr().err == ""


def test_progress_bar_and_the_lines_around_it(capsys):
    from gnime_ray.progress import around_bars, progress_bar

    lines = []
    bar = progress_bar(4, "matrix m", "cell", show=True)
    log = around_bars(lines.append)
    bar.update(1)
    log("[1/4] expmi lrp gnime seed 0")
    bar.update(1)
    bar.close()
    assert lines == ["[1/4] expmi lrp gnime seed 0"]  # the line itself unchanged
    err = capsys.readouterr().err
    assert "matrix m:" in err and "2/4 cells" in err
    hidden = progress_bar(4, "matrix m", "cell")  # not a terminal: nothing drawn
    hidden.update(4)
    hidden.close()
    assert capsys.readouterr().err == ""
