"""The on-disk cache of prepared artefacts (trained classifiers, maps, GNIME weights, attribute
classifiers).

Location (gnime_ray/cachedir.py): ``--cache-dir``, else the ``GNIME_RAY_CACHE`` environment
variable, else ``~/.cache/gnime_ray``. Entries are keyed by a content hash of everything that determines them.
Every file is written to a temporary name in the same directory and renamed into place, so a
crash never leaves a half-written entry and concurrent writers never see one. Tensors are saved
with ``torch.save`` as plain tensors and types and loaded with ``weights_only=True``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path: Path, obj: Any) -> None:
    """torch.save ``obj`` (tensors, dicts, lists, numbers, strings) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: Path, map_location: str | torch.device = "cpu") -> Any:
    return torch.load(path, map_location=map_location, weights_only=True)


def save_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())
