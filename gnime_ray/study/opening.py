"""Opening a study, for both engines: ``recall_study`` (the record, a resume's memory format, the
identity checked) and ``settle_speed`` (the one speed decision, recorded), called by the local
engine's ``begin_study`` (``gnime-ray matrix``, ``gnime-ray cell``) and by the Ray engine's
``run_study`` (tune/study.py), which runs its node checks between the two steps.

A non-Ray study's rows are keyed by (study, cell, attack seed) and a cell's key holds the dataset,
explainer, variant, defence, attack, lambda, NG width, gamma, GNIME seed and study seed; what is
not in it, every preset field and the lambda calibration's target, is the study's identity:
running the same study name with another value of any of them is refused with one line listing
the fields that differ, before any work (a changed ``--set`` would otherwise find the old rows
"already done" and print them as the new budget's). The memory format is decided once, when the
study starts (``decide_speed``, on this process's device at the dataset's image shape and the
networks' width), recorded, and followed by every network the study trains, also when it resumes.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from .. import echo
from ..config import Preset
from ..data import IMAGE_SHAPES
from ..models.training_format import choose, cpu_info, decide_compile
from .record import check_identity, read_record, record_study

Log = Callable[[str], None]


def gnime_images(preset: Preset) -> int:
    """The images one GNIME training of ``preset`` steps through, at least (epochs x steps x batch;
    with the release's N // batch steps per epoch, N unknown before prepare, one step counted)."""
    return preset.gnime_epochs * (preset.gnime_steps_per_epoch or 1) * preset.gnime_batch_size


def decide_speed(device: torch.device | str, preset: Preset, *, shape: Sequence[int], cache_dir: Optional[str] = None
                 ) -> dict[str, str]:
    """A study's one speed decision (models/training_format.py), as its record keeps it: the memory format
    (``auto`` resolved on this process's device and CPU), the precision, compiled or eager (``compile``:
    ``auto`` resolved by measurement, ``decide_compile``) and why. Measured in the driver by the local
    engine, in a Ray task on a trial node by the Ray engine (tune/tasks.py). ``shape``: the dataset's
    image shape; the networks' width is the preset's."""
    speed = choose(device, preset.memory_format, preset.bf16, shape=shape, width=preset.net_width, cache_dir=cache_dir)
    reason = "set for the study (--set memory_format, or the search it reports on)" if preset.memory_format != "auto" \
        else speed.reason
    compile_setting, compile_reason = decide_compile(device, preset.compile, shape=shape, width=preset.net_width,
                                                     channels_last=speed.channels_last,
                                                     gnime_images=gnime_images(preset), cache_dir=cache_dir)
    return {"memory_format": speed.name, "precision": "bf16 autocast" if preset.bf16 else "fp32", "reason": reason,
            "compile": compile_setting, "compile_reason": compile_reason,
            "device": torch.device(device).type, "cpu": cpu_info()[0]}


def describe_speed(speed: dict[str, Any]) -> str:
    """A recorded decision in words."""
    compiled = speed.get("compile", "never")
    how = "eager" if compiled == "never" else "compiled" if compiled == "always" else f"compiled from {compiled[8:]} training images"
    return (f"{speed['memory_format']}, {speed['precision']} ({speed['reason']}); {how}"
            f"{' (' + speed['compile_reason'] + ')' if speed.get('compile_reason') else ''}")


def recall_study(out: str, study: str, preset: Preset, identity_of: Callable[[Preset], dict[str, Any]],
                 flag: str = "--study") -> tuple[Preset, Optional[dict[str, Any]]]:
    """Opening a study, step 1, for both engines (``begin_study`` here, tune/study.py ``run_study``):
    its record under ``out`` (None for a new study), and the preset with a resumed study's recorded
    memory-format decision when the preset leaves it ``auto``; the identity ``identity_of(preset)``
    is checked against the record (GnimeRayError listing the fields that differ, naming ``flag``).
    Reads only: nothing is written for a refused study."""
    recorded = read_record(out, study)
    if recorded is not None and preset.memory_format == "auto":
        decided = recorded.get("identity", {}).get("preset", {}).get("memory_format", "auto")
        preset = preset.replace(memory_format=decided)
    if recorded is not None and preset.compile == "auto":  # a study recorded before compile existed ran eager
        preset = preset.replace(compile=recorded.get("identity", {}).get("preset", {}).get("compile", "never"))
    check_identity(out, study, identity_of(preset), flag=flag)
    return preset, recorded


def settle_speed(out: str, study: str, kind: str, preset: Preset, recorded: Optional[dict[str, Any]],
                 identity_of: Callable[[Preset], dict[str, Any]],
                 measure: Callable[[Preset], dict[str, Any]]) -> tuple[Preset, dict[str, Any]]:
    """Opening a study, step 2, for both engines: the speed decision a resumed study recorded, else
    ``measure(preset)`` (``decide_speed`` in this process, or a Ray task's on a trial node) with the
    preset's memory format set to it and the study recorded (its identity and the decision). What
    runs between the two steps is the engine's own (Ray's node checks write a marker, so they
    follow the identity check)."""
    if recorded is not None and recorded.get("speed"):
        return preset, recorded["speed"]
    speed = measure(preset)
    preset = preset.replace(memory_format=speed["memory_format"], compile=speed.get("compile", "never"))
    record_study(out, study, kind, identity_of(preset), speed)
    return preset, speed


def begin_study(out: str, study: str, kind: str, dataset: str, preset: Preset, device: torch.device,
                cache_dir: Optional[str] = None, log: Log = echo, **identity: Any) -> Preset:
    """Open a study of the local engine (matrix, cell): its identity checked under ``out``, its
    memory format recalled or decided on this process's device, the study recorded; returns the
    preset with the memory format every training of the study uses. ``identity``: the study's
    fields beyond the preset."""
    def identity_of(p: Preset) -> dict[str, Any]:
        return {"preset": p.to_dict(), **identity}

    def decide_here(p: Preset) -> dict[str, Any]:
        return decide_speed(device, p, shape=IMAGE_SHAPES[dataset], cache_dir=cache_dir)

    preset, recorded = recall_study(out, study, preset, identity_of)
    preset, speed = settle_speed(out, study, kind, preset, recorded, identity_of, decide_here)
    log(f"study {study}: speed for every training: {describe_speed(speed)}")
    return preset
