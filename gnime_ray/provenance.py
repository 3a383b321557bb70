"""What made a number: the code's version and git commit, and the command that ran.

``code_commit()`` is the short commit of the git checkout gnime_ray is imported from, with
``+dirty`` when tracked files differ from it (None when the package is not in a git checkout, e.g.
installed from a wheel or synced to a node without ``.git``). It is recorded in every row
(``config.runtime.code_commit``) and in every study's record, beside ``code_version``;
``command_line()`` (the script and its arguments) is recorded in the study's record.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Optional

PACKAGE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def code_commit() -> Optional[str]:
    """The checkout's short commit, '+dirty' when tracked files are modified; None outside git."""
    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short=7", "HEAD")
    if not commit:
        return None
    changes = git("status", "--porcelain", "--untracked-files=no")
    return commit + ("+dirty" if changes else "")


def command_line(argv: Optional[list[str]] = None) -> str:
    """The command as a user would type it again: ``python SCRIPT ARGS`` or ``gnime-ray ARGS``."""
    argv = list(sys.argv if argv is None else argv)
    head = Path(argv[0]).name if argv else ""
    if head == "gnime-ray":
        return shlex.join(["gnime-ray", *argv[1:]])
    if head.endswith(".py"):
        return shlex.join(["python", argv[0], *argv[1:]])
    return shlex.join(argv)
