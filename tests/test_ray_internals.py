"""The private parts of Ray that gnime_ray relies on (gnime_ray/tune/ray_internals.py) are where
this version expects them: an upgrade of Ray that moves one fails here, loudly, by name."""

from __future__ import annotations

import ray
from packaging.specifiers import SpecifierSet

from gnime_ray.tune.ray_internals import SUPPORTED_RAY, missing


def test_the_installed_ray_is_supported_and_has_every_private_part_gnime_ray_uses():
    assert ray.__version__ in SpecifierSet(SUPPORTED_RAY), f"Ray {ray.__version__} is outside {SUPPORTED_RAY}"
    assert missing() == []


def test_the_supported_range_is_the_one_pyproject_pins():
    import re
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    pinned = re.search(r'"ray\[tune\]([^"]*)"', pyproject).group(1)
    assert SpecifierSet(pinned) == SpecifierSet(SUPPORTED_RAY)
