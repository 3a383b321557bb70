"""The per-machine speed settings: the rule, the override, and that a memory format changes only
float rounding."""

import pytest
import torch

from gnime_ray import speed as speed_module
from gnime_ray.defenses.gnime import GnimeConfig, train_gnime
from gnime_ray.speed import Speed, choose


def test_the_rule_follows_the_device_and_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(speed_module, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert choose("cpu") == Speed(False, False, "a CPU without AVX-512")
    monkeypatch.setattr(speed_module, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert choose("cpu").channels_last and not choose("cpu").bf16  # bf16 changes numbers: only when asked
    assert choose("cuda").channels_last
    assert choose("cpu", "contiguous") == Speed(False, False, "set by the preset")
    assert choose("cpu", "channels_last", bf16=True) == Speed(True, True, "set by the preset")
    with pytest.raises(ValueError, match="memory_format"):
        choose("cpu", "nhwc")


def test_channels_last_trains_the_same_gnime_up_to_float_rounding():
    torch.manual_seed(0)
    maps, x, y = torch.rand(40, 1, 32, 32), torch.rand(40, 1, 32, 32), torch.randn(40, 10)
    cfg = GnimeConfig(lam=50.0, ng_width=0.125, inv_width=0.125, epochs=4, batch_size=16, lr=1e-3)
    runs = [train_gnime(maps, y, x, cfg, log=lambda _: None, speed=choose("cpu", fmt))
            for fmt in ("contiguous", "channels_last")]
    assert runs[1].ng.enc[0].weight.is_contiguous(memory_format=torch.channels_last)
    for k in ("l_adv", "l_dist", "l_clean"):
        assert runs[0].history[k] == pytest.approx(runs[1].history[k], rel=1e-4)


def test_a_preset_refuses_an_unknown_memory_format():
    from gnime_ray.config import get_preset
    from gnime_ray import GnimeRayError

    with pytest.raises(GnimeRayError, match="memory_format must be auto, channels_last or contiguous"):
        get_preset("smoke", memory_format="nchw")
