"""The on-disk cache of prepared artefacts (trained classifiers, maps, GNIME weights, attribute
classifiers).

Location (gnime_ray/cachedir.py): ``--cache-dir``, else the ``GNIME_RAY_CACHE`` environment
variable, else ``~/.cache/gnime_ray``. Entries are keyed by a content hash of everything that determines them.
Every file is written to a temporary name in the same directory and renamed into place, so a
crash never leaves a half-written entry and concurrent writers never see one. Small tensors
(weights) are saved with ``torch.save`` as plain tensors and types and loaded with
``weights_only=True``; large arrays (maps, logits) are ``.npy`` files that every process of a node
memory-maps (one copy in the page cache), each with a metadata file (shape, dtype, size, SHA-256)
against which it is checked before use, so a truncated or corrupted file is never used silently.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..cachedir import atomic_path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_tensors(path: Path, obj: Any) -> None:
    """torch.save ``obj`` (tensors, dicts, lists, numbers, strings) atomically."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_tensors(path: Path, map_location: str | torch.device = "cpu") -> Any:
    return torch.load(path, map_location=map_location, weights_only=True)


def save_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


# ---------------------------------------------------------------- arrays read in place

ARRAY_META = ".json"      # beside ``x.npy``: {"shape", "dtype", "bytes", "sha256"}, written last
ARRAY_VERIFIED = ".ok"    # node-local: the checksum was verified for this (size, mtime)
CHUNK_BYTES = 64 << 20


class ArrayCorrupt(Exception):
    """A cached array whose file does not match its metadata (size or checksum)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def array_meta_path(path: Path) -> Path:
    return path.with_name(path.name + ARRAY_META)


def write_array(path: Path, shape: tuple[int, ...], dtype: np.dtype, fill: Callable[[np.ndarray], None]) -> None:
    """Create the ``.npy`` array ``path`` of ``shape``/``dtype``, let ``fill(memmap)`` write it (in
    chunks, so the whole array is never in memory), then move it into place and write its
    metadata (size, SHA-256) last. A failure leaves nothing behind."""
    with atomic_path(path) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        fill(arr)
        arr.flush()
        del arr
    st = path.stat()
    digest = _sha256(path)
    save_json(array_meta_path(path), {"shape": list(shape), "dtype": np.dtype(dtype).name, "bytes": st.st_size,
                                      "sha256": digest})
    _mark_verified(path, digest)


def _mark_verified(path: Path, digest: str) -> None:
    st = path.stat()
    atomic_write_bytes(path.with_name(path.name + ARRAY_VERIFIED),
                       json.dumps([st.st_size, st.st_mtime_ns, digest]).encode())


def array_ready(path: Path) -> bool:
    """Whether ``path`` and its metadata exist (the metadata is written last)."""
    return path.exists() and array_meta_path(path).exists()


def load_array(path: Path) -> torch.Tensor:
    """The cached array as a tensor memory-mapped from ``path`` (copy-on-write: the file is never
    written), after checking it against its metadata: its size every time, its SHA-256 once per
    node (and again whenever the file changes). Raises ArrayCorrupt on a mismatch."""
    meta = load_json(array_meta_path(path))
    st = path.stat()
    if st.st_size != meta["bytes"]:
        raise ArrayCorrupt(f"{path} has {st.st_size} bytes, its metadata says {meta['bytes']} (truncated?)")
    marker = path.with_name(path.name + ARRAY_VERIFIED)
    try:
        verified = json.loads(marker.read_text()) == [st.st_size, st.st_mtime_ns, meta["sha256"]]
    except (OSError, ValueError):
        verified = False
    if not verified:
        if _sha256(path) != meta["sha256"]:
            raise ArrayCorrupt(f"{path} does not match the SHA-256 in its metadata (corrupted)")
        _mark_verified(path, meta["sha256"])
    arr = np.load(path, mmap_mode="c")
    if list(arr.shape) != meta["shape"] or arr.dtype.name != meta["dtype"]:
        raise ArrayCorrupt(f"{path} holds {arr.dtype.name} {list(arr.shape)}, its metadata says "
                           f"{meta['dtype']} {meta['shape']}")
    return torch.from_numpy(arr)


def remove_array(path: Path) -> None:
    for p in (path, array_meta_path(path), path.with_name(path.name + ARRAY_VERIFIED)):
        p.unlink(missing_ok=True)
