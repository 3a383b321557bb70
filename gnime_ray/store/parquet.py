"""The results dataset: one Parquet row per (study, trial, cell, attack seed).

Hive-partitioned by study/dataset/explainer under an output root, a local path or any pyarrow
filesystem URI (s3://bucket/prefix, gs://...). The partition columns live in the directory
names, not in the files; ``read_rows`` (or ``pyarrow.dataset.dataset(root, partitioning="hive")``)
returns them as columns. Each write is one file, written to a hidden temporary name in its
partition and renamed into place, so concurrent writers never collide and a crash never leaves
a half-written file visible (pyarrow skips names starting with '.').
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .. import GnimeRayError
from ..config import PAPER_ATTRIBUTES

PARTITION_COLUMNS = ("study", "dataset", "explainer")

SCHEMA = pa.schema([
    ("study", pa.string()), ("dataset", pa.string()), ("explainer", pa.string()),
    ("trial", pa.string()), ("cell", pa.string()),
    ("aux_dataset", pa.string()), ("variant", pa.string()), ("defense", pa.string()), ("attack", pa.string()),
    ("lambda", pa.float64()), ("ng_width", pa.float64()), ("gamma", pa.float64()),
    ("study_seed", pa.int64()), ("attack_seed", pa.int64()), ("preset", pa.string()),
    ("mse", pa.float64()), ("ssim", pa.float64()), ("tca", pa.float64()), ("deepsim", pa.float64()),
    ("feature_distance", pa.float64()), ("psnr", pa.float64()), ("recl_acc", pa.float64()),
    ("perturbation_mse", pa.float64()), ("matched_mse", pa.float64()), ("utility_deepsim", pa.float64()),
    ("n_eval", pa.int64()), ("attack_epochs_run", pa.int64()),
    ("code_version", pa.string()), ("torch_version", pa.string()), ("device", pa.string()), ("host", pa.string()),
    ("wall_seconds", pa.float64()), ("created_at", pa.string()),
    # attribute leakage (CelebA, Fig. 6): F1 of each attribute classifier on the reconstructions
    *[(f"f1_{a.lower()}", pa.float64()) for a in PAPER_ATTRIBUTES],
])
FILE_SCHEMA = pa.schema([f for f in SCHEMA if f.name not in PARTITION_COLUMNS])


def resolve_out(out: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path) for a local path or a URI. A local path is made absolute and
    must be a directory or not exist yet; raises GnimeRayError otherwise."""
    if "://" in out:
        try:
            return pafs.FileSystem.from_uri(out)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise GnimeRayError(f"--out {out}: not a usable filesystem URI ({exc})") from None
    path = Path(out).expanduser().absolute()
    for p in [path, *path.parents]:
        if p.exists():
            if not p.is_dir():
                raise GnimeRayError(f"--out {path}: {p} exists and is not a directory")
            if not os.access(p, os.W_OK):
                raise GnimeRayError(f"--out {path}: {p} is not writable")
            break
    return pafs.LocalFileSystem(), str(path)


def write_rows(rows: Iterable[dict], out: str) -> list[str]:
    """Append rows to the dataset under ``out``; one file per (study, dataset, explainer) group.
    Returns the paths written. Rows must carry every column of SCHEMA."""
    fs, root = resolve_out(out)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        missing = [f.name for f in SCHEMA if f.name not in row]
        if missing:
            raise ValueError(f"row is missing columns {missing}")
        groups.setdefault(tuple(row[c] for c in PARTITION_COLUMNS), []).append(row)
    written = []
    for key, group in groups.items():
        part = "/".join(f"{c}={v}" for c, v in zip(PARTITION_COLUMNS, key))
        folder = f"{root}/{part}"
        fs.create_dir(folder, recursive=True)
        table = pa.Table.from_pylist([{f.name: r[f.name] for f in FILE_SCHEMA} for r in group], schema=FILE_SCHEMA)
        name = f"part-{uuid.uuid4().hex}.parquet"
        tmp, final = f"{folder}/.{name}.tmp", f"{folder}/{name}"
        with fs.open_output_stream(tmp) as fh:
            pq.write_table(table, fh)
        fs.move(tmp, final)
        written.append(final)
    return written


def write_table(rows: list[dict], out: str, relpath: str) -> str:
    """Write (replace) one Parquet file ``out/relpath`` atomically; returns its path."""
    fs, root = resolve_out(out)
    final = f"{root}/{relpath}"
    folder = final.rsplit("/", 1)[0]
    fs.create_dir(folder, recursive=True)
    tmp = f"{folder}/.{final.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(tmp) as fh:
        pq.write_table(pa.Table.from_pylist(rows), fh)
    fs.move(tmp, final)
    return final


def read_rows(out: str) -> pa.Table:
    """Every row under ``out`` as one table, partition columns included (empty if none)."""
    fs, root = resolve_out(out)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return SCHEMA.empty_table()
    # only the row files: the root may also hold other files (README.md, paper_tables.csv, Tune's _tune/)
    files = [f.path for f in fs.get_file_info(pafs.FileSelector(root, recursive=True))
             if f.type == pafs.FileType.File and f.path.endswith(".parquet")
             and f.path[len(root):].lstrip("/").startswith("study=")
             and not any(part.startswith((".", "_")) for part in f.path[len(root):].split("/"))]
    if not files:
        return SCHEMA.empty_table()
    partitioning = ds.partitioning(pa.schema([SCHEMA.field(c) for c in PARTITION_COLUMNS]), flavor="hive")
    dataset = ds.dataset(files, filesystem=fs, format="parquet", partitioning=partitioning, schema=SCHEMA,
                         partition_base_dir=root)
    return dataset.to_table()
