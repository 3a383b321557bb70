"""The record of a study run without Ray (``gnime-ray matrix``, ``gnime-ray cell``): its identity
and its one speed decision (store/studies.py), as a Ray study keeps them (tune/study.py).

A non-Ray study's rows are keyed by (study, cell, attack seed) and a cell's key holds the dataset,
explainer, variant, defence, attack, lambda, NG width, gamma, GNIME seed and study seed; what is
not in it, every preset field and the lambda calibration's target, is the study's identity:
running the same study name with another value of any of them is refused with one line listing
the fields that differ, before any work (a changed ``--set`` would otherwise find the old rows
"already done" and print them as the new budget's). The memory format is decided once, when the
study starts (speed.py ``decide``, on this process's device at the dataset's image shape and the
networks' width), recorded, and followed by every network the study trains, also when it resumes.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from .. import echo
from ..config import Preset
from ..data import IMAGE_SHAPES
from ..speed import decide
from ..store.studies import check_identity, read_record, record_study

Log = Callable[[str], None]


def begin_study(out: str, study: str, kind: str, dataset: str, preset: Preset, device: torch.device,
                cache_dir: Optional[str] = None, log: Log = echo, **identity: Any) -> Preset:
    """Check the study's identity under ``out`` (GnimeRayError listing the differing fields),
    decide or recall its memory format, record the study; return the preset with the memory
    format every training of the study uses. ``identity``: the study's fields beyond the preset."""
    recorded = read_record(out, study)
    if recorded is not None and preset.memory_format == "auto":
        decided = recorded.get("identity", {}).get("preset", {}).get("memory_format", "auto")
        preset = preset.replace(memory_format=decided)
    whole = {"preset": preset.to_dict(), **identity}
    check_identity(out, study, whole, flag="--study")
    if recorded is not None and recorded.get("speed"):
        speed = recorded["speed"]
    else:
        speed = decide(device, preset.memory_format, preset.bf16, shape=IMAGE_SHAPES[dataset],
                       width=preset.net_width, cache_dir=cache_dir)
        preset = preset.replace(memory_format=speed["memory_format"])
        record_study(out, study, kind, {**whole, "preset": preset.to_dict()}, speed)
    log(f"study {study}: speed {speed['memory_format']}, {speed['precision']} for every training ({speed['reason']})")
    return preset
