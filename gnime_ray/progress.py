"""What long work shows while it runs: a tqdm bar on a terminal, with tqdm's estimate of the time
left, and the log lines written around it (cleared and drawn again, so neither tears the other).
Where stderr is not a terminal (a log file, CI, Ray's worker logs) there is no bar, only the
lines, which carry their own time left (``gnime_ray.time_left``). Used by the matrix (a bar in
cells) and the Ray studies' console (tune/console.py, a bar in trials)."""

from __future__ import annotations

import sys
from typing import Callable, Optional

from tqdm import tqdm

Log = Callable[[str], None]


def progress_bar(total: int, desc: str, unit: str, show: Optional[bool] = None) -> tqdm:
    """A bar of ``total`` ``unit``s on stderr; ``show`` None: only when stderr is a terminal
    (tqdm's own test). Fractional progress is allowed (``bar.n`` set, then ``bar.refresh()``)."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None if show is None else not show,
                dynamic_ncols=True, leave=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.4g}/{total} " + unit + "s [{elapsed}<{remaining}]")


def around_bars(log: Log) -> Log:
    """``log`` with every bar on the terminal cleared before the line and drawn again after it."""
    def write(line: str) -> None:
        with tqdm.external_write_mode():
            log(line)

    return write
