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
