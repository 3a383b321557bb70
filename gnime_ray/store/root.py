"""The results root: where a study's rows and side files live, and its file layer.

A results root (``--out``) is a local path or any pyarrow filesystem URI (s3://bucket/prefix,
gs://...). ``resolve_out`` turns it into (filesystem, root path), ``probe_out`` checks it answers
before any work, and every file under it (rows, trial tables, study records, the Optuna journal,
artifacts) is written whole or not at all: to a hidden temporary name in its folder, then moved
into place (``atomic_write``), so a crash never leaves a half-written file visible (Parquet
readers skip names starting with '.' or '_').

Everything a study keeps besides its rows (store/rows.py) lives in folders starting with '_'
(skipped by Parquet discovery), and none of it is a ``.parquet`` file, so that a glob such as
DuckDB's ``OUT/**/*.parquet`` matches row files only: trial summaries are CSV (``_trials/``), the
study records JSON (``_studies/``), trained networks and maps ``.pt``/``.npy`` (``_artifacts/``),
each row's sample of images for figures ``.npz`` (``_figures/``), Tune's state its own files
(``_tune/``).
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path
from typing import Any, Optional

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs

from .. import GnimeRayError


def is_uri(out: str) -> bool:
    return "://" in out


def resolve_out(out: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path) for a local path or a URI. A local path is made absolute and
    must be a directory or not exist yet; raises GnimeRayError otherwise. Nothing is written."""
    if is_uri(out):
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


def canonical_out(out: str) -> str:
    """The results root as every process should name it: a URI unchanged, a local path absolute."""
    return out if is_uri(out) else resolve_out(out)[1]


def probe_out(out: str) -> None:
    """Check that the results root can be reached before any work: for a URI, that its bucket
    exists and answers (credentials and endpoint come from the standard AWS/GCP environment);
    raises GnimeRayError with one line otherwise. Writes nothing."""
    fs, root = resolve_out(out)
    if not is_uri(out):
        return
    bucket = root.split("/", 1)[0]
    try:
        info = fs.get_file_info(bucket)
    except OSError as exc:
        raise GnimeRayError(f"--out {out}: cannot reach bucket {bucket!r}: {str(exc).splitlines()[0]}") from None
    if info.type != pafs.FileType.Directory:
        raise GnimeRayError(f"--out {out}: bucket {bucket!r} does not exist (or these credentials cannot see it); "
                            f"create it first")


def atomic_write(fs: pafs.FileSystem, final: str, data: bytes) -> None:
    """Write (replace) ``final`` on ``fs`` whole or not at all (module docstring)."""
    folder, name = final.rsplit("/", 1)
    fs.create_dir(folder, recursive=True)
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(tmp) as fh:
        fh.write(data)
    fs.move(tmp, final)


def write_csv(rows: list[dict], out: str, relpath: str) -> str:
    """Write (replace) ``out/relpath`` as CSV with a header, atomically; returns its path."""
    fs, root = resolve_out(out)
    buf = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pylist(rows), buf)
    atomic_write(fs, f"{root}/{relpath}", buf.getvalue())
    return f"{root}/{relpath}"


def read_csv(out: str, relpath: str) -> Optional[pa.Table]:
    fs, root = resolve_out(out)
    path = f"{root}/{relpath}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as fh:
        return pacsv.read_csv(io.BytesIO(fh.read()))


def write_file(out: str, relpath: str, data: bytes) -> str:
    """Write (replace) ``out/relpath`` atomically; returns its path."""
    fs, root = resolve_out(out)
    atomic_write(fs, f"{root}/{relpath}", data)
    return f"{root}/{relpath}"


def write_json(out: str, relpath: str, obj: Any) -> str:
    fs, root = resolve_out(out)
    atomic_write(fs, f"{root}/{relpath}", (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
    return f"{root}/{relpath}"


def read_json(out: str, relpath: str) -> Optional[Any]:
    """The JSON object at ``out/relpath``, or None when there is none."""
    fs, root = resolve_out(out)
    path = f"{root}/{relpath}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as fh:
        return json.loads(fh.read().decode())


def delete_file(out: str, relpath: str) -> None:
    fs, root = resolve_out(out)
    path = f"{root}/{relpath}"
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)
