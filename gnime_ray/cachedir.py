"""Where gnime_ray keeps what it computes once: ``--cache-dir``, else the ``GNIME_RAY_CACHE``
environment variable, else ``~/.cache/gnime_ray``. Shared by the data layer (decoded datasets under
``data/``) and the pipeline (classifiers, maps, GNIME weights; pipeline/cache.py)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

from . import GnimeRayError

ENV_VAR = "GNIME_RAY_CACHE"


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
