"""A study's record under the results root: ``OUT/_studies/<name>.json``.

Every kind of study (a Ray study, ``gnime-ray matrix``, ``gnime-ray cell``) keeps one. It holds:
- ``identity``: every field that changes a number the study produces and is not already part of
  its rows' keys (the preset with its memory format as decided, the search space, the seeds, ...).
  Running the same name with another identity is refused with one line listing the fields that
  differ (``check_identity``), so that a study never resumes, or adds rows, with settings other
  than the ones its rows were made with;
- ``speed``: the study's one speed decision (memory format and precision, and why: training_format.py),
  made once when the study starts and followed by every process of it, whichever node it runs on;
- ``kind`` (``search``, ``report``, ``matrix``, ``cells``, ``grid``) and, for a search, the trial
  chosen per explainer once the search has ended (``chosen``), so that the held-out report after
  it depends on nothing that can change between runs;
- the code version that started it.
"""

from __future__ import annotations

from typing import Any, Optional

from .. import GnimeRayError, __version__
from ..config import LATER_PRESET_FIELDS
from ..provenance import code_commit, command_line
from ..store.root import read_json, write_json


def record_relpath(name: str) -> str:
    return f"_studies/{name}.json"


def read_record(out: str, name: str) -> Optional[dict[str, Any]]:
    """The study's record, or None for a study never started under ``out``."""
    return read_json(out, record_relpath(name))


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'field old -> new' for every field (nested fields dotted) in which two identities differ."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key} {a!r} -> {b!r}")
    return diffs


def check_identity(out: str, name: str, identity: dict[str, Any], flag: str = "--study") -> Optional[dict[str, Any]]:
    """Refuse a study name whose recorded identity differs (GnimeRayError listing the fields);
    return the record when the study was started before (a resume), else None. Reads only."""
    recorded = read_record(out, name)
    if recorded is None:
        return None
    old = recorded.get("identity", {})
    if isinstance(old.get("preset"), dict) and isinstance(identity.get("preset"), dict):
        # a record from before a preset field existed ran as if with today's value (config.py LATER_PRESET_FIELDS)
        old = {**old, "preset": {**{f: identity["preset"][f] for f in LATER_PRESET_FIELDS if f in identity["preset"]},
                                 **old["preset"]}}
    diffs = differences(old, identity)
    if diffs:
        raise GnimeRayError(f"study {name!r} under {out} was started with other settings ({'; '.join(diffs)}): "
                            f"pass another {flag} to start a new study, or the recorded settings "
                            f"({record_relpath(name)}) to resume it")
    return recorded


def record_study(out: str, name: str, kind: str, identity: dict[str, Any], speed: dict[str, Any],
                 **extra: Any) -> dict[str, Any]:
    """Write the study's record unless it exists; return the record as it stands."""
    recorded = read_record(out, name)
    if recorded is None:
        recorded = {"kind": kind, "identity": identity, "speed": speed, "code_version": __version__,
                    "code_commit": code_commit(), "command": command_line(), **extra}
        write_json(out, record_relpath(name), recorded)
    return recorded


def update_record(out: str, name: str, **fields: Any) -> dict[str, Any]:
    """Add fields to an existing record (the chosen trials of a search); return it."""
    recorded = read_record(out, name)
    if recorded is None:
        raise GnimeRayError(f"study {name!r} has no record under {out}")
    recorded.update(fields)
    write_json(out, record_relpath(name), recorded)
    return recorded
