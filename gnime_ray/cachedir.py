"""Where gnime_ray keeps what it computes once: ``--cache-dir``, else the ``GNIME_RAY_CACHE``
environment variable, else ``~/.cache/gnime_ray``. Shared by the data layer (decoded datasets under
``data/``), the pipeline (classifiers, maps, GNIME weights; pipeline/cache.py) and the speed probe.

And how a local file gets there, the one way every writer uses: ``atomic_path`` (written under a
temporary name in the same folder and renamed into place, so a crash never leaves half a file and
a reader never sees one) and ``file_lock`` (one process computes a shared file while the others
of the node wait, then read it).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from . import GnimeRayError

ENV_VAR = "GNIME_RAY_CACHE"


def add_cache_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir``, as every command and script takes it."""
    parser.add_argument("--cache-dir", default=None,
                        help=f"the node-local cache (default: ${ENV_VAR}, else ~/.cache/gnime_ray)")


def resolve_cache_dir(cache_dir: Optional[str] = None) -> Path:
    """The absolute cache directory, created if needed; raises GnimeRayError if not writable."""
    raw = cache_dir or os.environ.get(ENV_VAR) or str(Path.home() / ".cache" / "gnime_ray")
    path = Path(raw).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise GnimeRayError(f"cache dir {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GnimeRayError(f"cache dir {path} cannot be created: {exc.strerror or exc}") from None
    try:  # a real write: os.access says yes to root even on read-only directories and mounts
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise GnimeRayError(f"cache dir {path} is not writable: {exc.strerror or exc}") from None
    return path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; moved onto ``path`` when the block ends without an
    error, removed when it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold the node-wide exclusive lock of ``path`` (``flock`` on ``<path>.lock``) for the block:
    the first process computes what ``path`` names, the others wait and then find it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
