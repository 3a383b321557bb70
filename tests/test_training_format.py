"""The per-machine speed settings: the override, the CUDA rule, the CPU probe (measured once per
machine and kept), and that a memory format changes only float rounding."""

import json

import pytest
import torch

from gnime_ray.models import training_format as speed_module
from gnime_ray.defenses.gnime import GnimeConfig, train_gnime
from gnime_ray.models.training_format import Speed, choose, probe


@pytest.fixture
def timed(monkeypatch):
    """Replace the probe's timing by given seconds per format, counting the measurements."""
    calls = []

    def set_seconds(contiguous: float, channels_last: float) -> list:
        def fake(shape, width, steps=3):
            calls.append((tuple(shape), width))
            return {"contiguous": contiguous, "channels_last": channels_last}
        monkeypatch.setattr(speed_module, "_step_seconds", fake)
        return calls
    return set_seconds


def test_the_preset_wins_and_cuda_follows_the_rule(tmp_path, timed):
    calls = timed(1.0, 0.5)
    assert choose("cpu", "contiguous", cache_dir=str(tmp_path)) == Speed(False, False, "the study's setting")
    assert choose("cpu", "channels_last", bf16=True) == Speed(True, True, "the study's setting")
    assert choose("cuda", cache_dir=str(tmp_path)) == Speed(True, False, "CUDA")
    assert calls == []  # neither measures
    with pytest.raises(ValueError, match="memory_format"):
        choose("cpu", "nhwc")


def test_the_cpu_probe_picks_the_measurably_faster_format_and_keeps_it(tmp_path, timed):
    calls = timed(contiguous=1.0, channels_last=0.7)
    first = choose("cpu", shape=(1, 32, 32), width=0.25, cache_dir=str(tmp_path))
    assert first.channels_last and not first.bf16 and "1.43x" in first.reason
    assert calls == [((1, 32, 32), 0.25)]
    assert choose("cpu", shape=(1, 32, 32), width=0.25, cache_dir=str(tmp_path)) == first
    assert len(calls) == 1  # read from CACHE/speed, not measured again
    [kept] = (tmp_path / "speed").glob("probe-*.json")
    verdict = json.loads(kept.read_text())
    assert verdict["shape"] == [1, 32, 32] and verdict["width"] == 0.25 and verdict["torch"] == torch.__version__
    # another shape is another workload: measured on its own; within the margin stays contiguous
    timed(contiguous=1.0, channels_last=0.97)
    assert not choose("cpu", shape=(3, 64, 64), width=0.25, cache_dir=str(tmp_path)).channels_last


def test_a_damaged_verdict_is_measured_again(tmp_path, timed):
    calls = timed(1.0, 2.0)
    probe((1, 16, 16), 0.125, str(tmp_path))
    [kept] = (tmp_path / "speed").glob("probe-*.json")
    kept.write_text("{not json")
    assert probe((1, 16, 16), 0.125, str(tmp_path))["channels_last"] is False
    assert len(calls) == 2


def test_the_real_probe_times_both_formats(tmp_path):
    verdict = probe((1, 64, 64), 0.0625, str(tmp_path))
    assert set(verdict["seconds"]) == {"contiguous", "channels_last"}
    assert all(0 < s < 60 for s in verdict["seconds"].values())
    assert verdict["channels_last"] == (verdict["seconds"]["channels_last"]
                                        < speed_module.MARGIN * verdict["seconds"]["contiguous"])


def test_channels_last_trains_the_same_gnime_up_to_float_rounding():
    torch.manual_seed(0)
    maps, x, y = torch.rand(40, 1, 32, 32), torch.rand(40, 1, 32, 32), torch.randn(40, 10)
    cfg = GnimeConfig(lam=50.0, ng_width=0.125, inv_width=0.125, epochs=4, batch_size=16, lr=1e-3)
    runs = [train_gnime(maps, y, x, cfg, log=lambda _: None, speed=choose("cpu", fmt))
            for fmt in ("contiguous", "channels_last")]
    for k in ("l_adv", "l_dist", "l_clean"):
        assert runs[0].history[k] == pytest.approx(runs[1].history[k], rel=1e-4)
    # trained, both are contiguous again: what they release does not depend on the training format
    assert all(p.is_contiguous() for p in runs[1].ng.parameters())
    assert not runs[1].ng.dec[0].weight.is_contiguous(memory_format=torch.channels_last)
    e = torch.rand(8, 1, 32, 32)
    assert torch.allclose(runs[0].release(e, y[:8]), runs[1].release(e, y[:8]), atol=1e-3)


def test_a_preset_refuses_an_unknown_memory_format():
    from gnime_ray.config import get_preset
    from gnime_ray import GnimeRayError

    with pytest.raises(GnimeRayError, match="memory_format must be auto, channels_last or contiguous"):
        get_preset("smoke", memory_format="nchw")


def test_a_preset_refuses_an_unknown_compile_setting():
    from gnime_ray.config import get_preset
    from gnime_ray import GnimeRayError

    assert get_preset("smoke", compile="images>=120").compile == "images>=120"
    for bad in ("yes", "images>=", "images>=-3", True):
        with pytest.raises(GnimeRayError, match="compile must be auto, never, always or images>=N"):
            get_preset("smoke", compile=bad)


def test_a_network_is_compiled_from_the_threshold_the_study_decided():
    assert not choose("cpu", "contiguous", compile="images>=1000", images=999).compiled
    assert choose("cpu", "contiguous", compile="images>=1000", images=1000).compiled
    assert choose("cpu", "contiguous", compile="always").compiled
    for undecided in ("never", "auto"):  # a process outside a study trains eager
        assert not choose("cpu", "contiguous", compile=undecided, images=10**9).compiled
    assert "compiled" in choose("cpu", "contiguous", compile="always").describe()
    with pytest.raises(ValueError, match="compile must be one of"):
        choose("cpu", "contiguous", compile="sometimes")


@pytest.fixture
def compile_timed(monkeypatch, timed):
    """The format probe at 0.064 s per step of 64 images (1 ms per image) in both formats, and the
    compile probe's timing replaced by given seconds, counting its measurements."""
    timed(0.064, 0.064)
    calls = []

    def set_compile(eager: float, compiled: float, compile_s: float) -> list:
        def fake(shape, width, channels_last, steps=3):
            calls.append((tuple(shape), width, channels_last))
            return {"eager_per_image": eager, "compiled_per_image": compiled, "compile": compile_s}
        monkeypatch.setattr(speed_module, "_compile_seconds", fake)
        return calls
    return set_compile


def test_the_compile_decision_measures_only_where_a_compile_could_repay(tmp_path, compile_timed):
    from gnime_ray.models.training_format import decide_compile

    calls = compile_timed(eager=1e-3, compiled=0.5e-3, compile_s=40.0)
    args = dict(shape=(1, 32, 32), width=0.125, channels_last=False, cache_dir=str(tmp_path))
    assert decide_compile("cpu", "never", gnime_images=10**9, **args) == ("never", "the study's setting")
    assert decide_compile("cuda", "auto", gnime_images=10**9, **args)[0] == "never"
    # 3 U-Net passes x 10,000 images x 1 ms = 30 s eager: shorter than any compile, not measured
    setting, why = decide_compile("cpu", "auto", gnime_images=10_000, **args)
    assert setting == "never" and "30s" in why and calls == []
    # long enough: measured once; 40 s of compile repaid after 40 / 0.5 ms = 80,000 images
    setting, why = decide_compile("cpu", "auto", gnime_images=1_000_000, **args)
    assert setting == "images>=80000" and "2.00x" in why and len(calls) == 1
    assert decide_compile("cpu", "auto", gnime_images=2_000_000, **args)[0] == "images>=80000"
    assert len(calls) == 1  # kept under CACHE/speed
    # no gain beyond the margin: eager
    compile_timed(eager=1e-3, compiled=0.97e-3, compile_s=40.0)
    assert decide_compile("cpu", "auto", gnime_images=1_000_000, **{**args, "width": 0.25})[0] == "never"


def test_a_study_recorded_before_compile_existed_resumes_eager(tmp_path):
    from gnime_ray.config import get_preset
    from gnime_ray.study.opening import recall_study
    from gnime_ray.study.record import record_study

    old = get_preset("smoke", memory_format="contiguous").to_dict()
    del old["compile"]
    record_study(str(tmp_path), "old", "matrix", {"preset": old}, {"memory_format": "contiguous"})
    preset, recorded = recall_study(str(tmp_path), "old", get_preset("smoke"), lambda p: {"preset": p.to_dict()})
    assert recorded is not None and preset.compile == "never" and preset.memory_format == "contiguous"


@pytest.mark.slow
def test_compiled_and_eager_training_give_the_same_losses():
    """torch.compile computes the same GNIME step and attacker step: the losses of a few steps agree
    within float tolerance, and the trained networks release the same maps."""
    from gnime_ray.attacks import build_attacker, train_attacker

    torch.manual_seed(0)
    maps, x, y = torch.rand(24, 1, 16, 16), torch.rand(24, 1, 16, 16), torch.randn(24, 10)
    cfg = GnimeConfig(lam=50.0, ng_width=0.0625, inv_width=0.0625, epochs=3, batch_size=8, lr=1e-3)
    eager, compiled = (Speed(False, False, "test", c) for c in (False, True))
    runs = [train_gnime(maps, y, x, cfg, log=lambda _: None, speed=s) for s in (eager, compiled)]
    for k in ("l_adv", "l_dist", "l_clean"):
        assert runs[0].history[k] == pytest.approx(runs[1].history[k], rel=1e-4)
    assert torch.allclose(runs[0].release(maps[:8], y[:8]), runs[1].release(maps[:8], y[:8]), atol=1e-4)
    assert set(runs[1].state()["ng"]) == set(runs[0].state()["ng"])  # the state is the module's, not the wrapper's
    hists = []
    for s in (eager, compiled):
        net = build_attacker("expmi", (1, 16, 16), (1, 16, 16), 10, 0.0625, generator=torch.Generator().manual_seed(1))
        hists.append(train_attacker("expmi", net, maps, y, x, maps[:8], y[:8], x[:8], epochs=2, batch_size=8,
                                    patience=5, lr=1e-3, seed=0, device=torch.device("cpu"), log=lambda _: None,
                                    speed=s))
    assert hists[0]["train_mse"] == pytest.approx(hists[1]["train_mse"], rel=1e-4)
    assert hists[0]["val_mse"] == pytest.approx(hists[1]["val_mse"], rel=1e-4)


def test_a_study_records_its_compile_decision_and_a_resume_keeps_it(tmp_path, compile_timed):
    from gnime_ray.config import get_preset
    from gnime_ray.study.opening import begin_study
    from gnime_ray.study.record import read_record

    calls = compile_timed(eager=1e-3, compiled=0.5e-3, compile_s=40.0)
    out, cache = str(tmp_path / "out"), str(tmp_path / "cache")
    long_gnime = get_preset("smoke", gnime_epochs=4000, gnime_batch_size=64)  # 3 x 256,000 images x 1 ms: measured
    preset = begin_study(out, "s", "matrix", "digits", long_gnime, torch.device("cpu"), cache, log=lambda _: None)
    speed = read_record(out, "s")["speed"]
    assert preset.compile == speed["compile"] == "images>=80000" and "repaid after 80000" in speed["compile_reason"]
    assert len(calls) == 1
    # a resume follows the record (and measures nothing), even where the machine would now decide otherwise
    compile_timed(eager=1e-3, compiled=0.99e-3, compile_s=40.0)
    again = begin_study(out, "s", "matrix", "digits", long_gnime, torch.device("cpu"), cache, log=lambda _: None)
    assert again.compile == "images>=80000" and len(calls) == 1
    # a smoke GNIME is too short for any compile: eager, nothing measured
    short = begin_study(out, "t", "matrix", "digits", get_preset("smoke"), torch.device("cpu"), cache, log=lambda _: None)
    assert short.compile == "never" and len(calls) == 1
