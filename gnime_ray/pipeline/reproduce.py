"""Run a recorded row again, from what it recorded, and compare.

A row's ``config`` column holds the cell, every preset field, the data's identity and the runtime
(device, torch threads, versions). ``reproduce_row`` rebuilds the cell from it, sets the same
torch thread count, takes f, f_E, the maps and the GNIME from the results root's artifacts (read
only: nothing is written into the study; a node-local cache is filled) and runs the attacker
again. On a CPU with the same versions and thread count every metric comes back equal (the
attacker, RND's noise and every split are seeded by the cell's key); ``TOLERANCE`` allows float32
noise (oneDNN can pick differently vectorised code for a differently aligned buffer: 1e-9 relative
was seen in DeePSiM). On a GPU, cuDNN picks its convolution algorithms per run and atomics in
some kernels reorder sums, so a GPU row reproduces to float32 noise, not bit for bit; a GPU row
re-run on a CPU trains its attacker along another rounding path and can move by more (not measured
here: no GPU row has been re-run on a CPU), which ``--rtol`` allows for. ``study_rows`` numbers a
study's rows in one stable order (cell, attack seed, trial), so a row can be named by its number
(``gnime-ray reproduce --list``, then ``--row N``). A row made with other versions of torch, numpy or
Python than the installed ones is named in one line before it runs.
"""

from __future__ import annotations

import json
import math
from typing import Callable, Optional

import torch

from .. import GnimeRayError, echo
from ..cellspec import CellSpec
from ..config import preset_from_dict
from ..provenance import code_commit
from ..store.rows import SPLIT_METRICS, read_rows
from .attributes import F1_COLUMNS
from .cell import run_cell
from .prepare import prepare

Log = Callable[[str], None]
METRICS = (*SPLIT_METRICS, *(f"select_{m}" for m in SPLIT_METRICS), "matched_mse", *F1_COLUMNS)
TOLERANCE = 1e-6  # relative to max(1, |recorded|): absolute on metrics of order 0.01 to 1, relative for PSNR


def study_rows(out: str, study: str) -> list[dict]:
    """The study's rows in a stable order (cell, attack seed, trial): row N is ``study_rows(...)[N]``."""
    rows = [r for r in read_rows(out).to_pylist() if r["study"] == study]
    if not rows:
        raise GnimeRayError(f"no study {study!r} under {out}")
    return sorted(rows, key=lambda r: (r["cell"], r["attack_seed"], r["trial"] or ""))


def row_by_number(out: str, study: str, number: int) -> dict:
    rows = study_rows(out, study)
    if not 0 <= number < len(rows):
        raise GnimeRayError(f"study {study!r} has rows 0 to {len(rows) - 1} (see --list), not {number}")
    return rows[number]


def version_differences(row: dict) -> list[str]:
    """'torch 2.14.1 -> 2.15.0' for every recorded version that differs from the installed one."""
    import platform

    import numpy

    runtime = json.loads(row["config"]).get("runtime", {}) if row.get("config") else {}
    installed = {"torch": torch.__version__, "numpy": numpy.__version__, "python": platform.python_version()}
    return [f"{k} {runtime[k]} -> {v}" for k, v in installed.items() if runtime.get(k) not in (None, v)]


def find_row(out: str, study: str, cell: str, attack_seed: int, trial: Optional[str] = None) -> dict:
    """The one row of (study, cell, attack seed[, trial]) under ``out``; GnimeRayError naming what
    is missing or ambiguous."""
    rows = [r for r in read_rows(out).to_pylist() if r["study"] == study]
    if not rows:
        raise GnimeRayError(f"no study {study!r} under {out}")
    rows = [r for r in rows if r["cell"] == cell]
    if not rows:
        raise GnimeRayError(f"study {study!r} has no cell {cell!r} (its cells are listed in the rows' 'cell' column)")
    if trial is not None:
        rows = [r for r in rows if r["trial"] == trial]
        if not rows:
            raise GnimeRayError(f"study {study!r} has no row of cell {cell!r} from trial {trial!r}")
    rows = [r for r in rows if r["attack_seed"] == attack_seed]
    if not rows:
        raise GnimeRayError(f"study {study!r} has no row of cell {cell!r} with attack seed {attack_seed}")
    if len(rows) > 1:
        raise GnimeRayError(f"{len(rows)} rows match; pass --trial (one of {', '.join(sorted(r['trial'] for r in rows))})")
    return rows[0]


def reproduce_row(row: dict, out: str, *, cache_dir: Optional[str] = None, data_root: Optional[str] = None,
                  device: Optional[str] = None, log: Log = echo) -> dict:
    """Run the row's cell again from its ``config`` (module docstring); returns the new row."""
    if not row.get("config"):
        raise GnimeRayError(f"the row of cell {row['cell']} (study {row['study']}) was written by an earlier version "
                            f"without a 'config' column: it cannot be reproduced from what it recorded")
    config = json.loads(row["config"])
    spec = CellSpec(**config["cell"])
    preset = preset_from_dict(config["preset"])
    runtime = config["runtime"]
    recorded = runtime["device"]
    if device is None:
        device = recorded if not recorded.startswith("cuda") or torch.cuda.is_available() else "cpu"
    if device != recorded:
        log(f"reproduce: the row was made on {recorded}, this run uses {device}: expect float32-level differences")
    made_by, here = runtime.get("code_commit"), code_commit()
    if made_by != here:
        log(f"reproduce: the row was made by commit {made_by or '(not recorded)'}, this is {here or '(not a git checkout)'}")
    differ = version_differences(row)
    if differ:
        log(f"reproduce: the row was made with other versions ({'; '.join(differ)}): expect differences beyond float "
            f"rounding (install the versions of constraints.txt)")
    torch.set_num_threads(int(runtime["threads"]))
    if "memory_format" in runtime:  # the attacker's, as it was chosen on the machine that made the row
        preset = preset.replace(memory_format=runtime["memory_format"])
    explainers = [] if spec.attack == "predmi" else [spec.explainer]
    prep = prepare(spec.dataset, preset, spec.study_seed, explainers=explainers, variant=spec.variant,
                   cache_dir=cache_dir, data_root=data_root, device=device, log=log, out=out, read_only=True)
    if prep.key != config["data"]["prepare_key"]:
        raise GnimeRayError(f"the data differ from the row's: prepare key {prep.key} here, "
                            f"{config['data']['prepare_key']} recorded (another dataset version or selection?)")
    return run_cell(spec, preset, prep=prep, device=device, study=row["study"], trial=row["trial"],
                    cache_dir=cache_dir, data_root=data_root, log=log)


def compare(old: dict, new: dict, tolerance: float = TOLERANCE) -> tuple[list[str], bool]:
    """Markdown lines (metric, recorded, reproduced, difference) and whether all agree within
    ``tolerance`` x max(1, |recorded|) (absolute on metrics in [0, 1]; relative for PSNR, in dB)."""
    lines = ["| metric | recorded | reproduced | difference |", "|---|---|---|---|"]
    ok = True
    for m in METRICS:
        a, b = old.get(m), new.get(m)
        if a is None or b is None or (isinstance(a, float) and math.isnan(a) and math.isnan(b)):
            continue
        diff = b - a
        scale = max(1.0, abs(a))
        agree = abs(diff) <= tolerance * scale
        ok = ok and agree
        lines.append(f"| {m} | {a!r} | {b!r} | {diff:+.3g}{'' if agree else '  ← differs'} |")
    return lines, ok
