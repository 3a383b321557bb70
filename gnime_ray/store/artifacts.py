"""Artifacts next to the rows: the trained networks and prepared arrays a row was made from,
kept under the results root so that they outlive any node's disk.

The node-local cache (gnime_ray/cachedir.py) is content-addressed: every entry's path is a hash
of everything that determines it (prepare's classifiers and maps, a GNIME's weights). The artifact
store mirrors that layout under ``OUT/_artifacts/``: the cache file ``CACHE/<relpath>`` is the
artifact ``OUT/_artifacts/<relpath>``. Because the names are content hashes, an artifact is written
once and never changes; any node (or a laptop after ``ray down``) that lacks a cache file fetches
it from the store instead of training it again, and a row names the artifacts it used by these
relative paths (columns ``classifiers_artifact``, ``gnime_artifact``).

Writes go to a hidden temporary name and are moved into place, on the local cache and on the
store alike, so concurrent fetches or publishes of the same file are harmless.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Optional

import pyarrow.fs as pafs

from .. import GnimeRayError
from .root import resolve_out

PREFIX = "_artifacts"
CHUNK = 8 << 20


class ArtifactStore:
    """The artifacts of results root ``out`` for a node whose cache lives at ``cache_root``;
    ``read_only``: fetch, never publish (reproducing a row writes nothing into its study)."""

    def __init__(self, out: str, cache_root: Path, log: Optional[Callable[[str], None]] = None,
                 read_only: bool = False):
        self.out = out
        self.fs, self.root = resolve_out(out)
        self.cache_root = Path(cache_root)
        self.log = log or (lambda _: None)
        self.read_only = read_only

    def ref(self, path: Path) -> str:
        """The artifact path of cache file ``path``, relative to the results root."""
        try:
            rel = Path(path).relative_to(self.cache_root)
        except ValueError:
            raise GnimeRayError(f"{path} is not inside the cache {self.cache_root}") from None
        return f"{PREFIX}/{rel.as_posix()}"

    def _remote(self, path: Path) -> str:
        return f"{self.root}/{self.ref(path)}"

    def exists(self, path: Path) -> bool:
        return self.fs.get_file_info(self._remote(path)).type == pafs.FileType.File

    def fetch(self, path: Path) -> bool:
        """Make cache file ``path`` present locally, downloading it when only the store has it.
        True when it is present afterwards."""
        path = Path(path)
        if path.exists():
            return True
        remote = self._remote(path)
        if self.fs.get_file_info(remote).type != pafs.FileType.File:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as dst, self.fs.open_input_stream(remote) as src:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.log(f"artifacts: fetched {self.ref(path)} from {self.out}")
        return True

    def publish(self, path: Path) -> str:
        """Copy cache file ``path`` into the store unless it is there already (or the store is
        read-only); returns its ref."""
        path = Path(path)
        remote = self._remote(path)
        if not self.read_only and self.fs.get_file_info(remote).type != pafs.FileType.File:
            folder, name = remote.rsplit("/", 1)
            self.fs.create_dir(folder, recursive=True)
            tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
            with open(path, "rb") as src, self.fs.open_output_stream(tmp) as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
            self.fs.move(tmp, remote)
        return self.ref(path)
