"""Rows of a host array, read one batch at a time: how data reaches a device.

The large arrays of a study (images, maps, logits of a whole dataset) stay where they are: on the
host, usually memory-mapped from the node's cache, shared by every process of the node through the
page cache. Trainers and evaluators see them through ``HostRows`` (an array plus the indices of a
split) and move one batch at a time to the device (pinned memory and non-blocking copies on CUDA),
so that device memory is bounded by the networks and one batch whatever the dataset's size, and
no process copies a whole split. Taking the same rows in the same order gives the same float32
values as indexing a float32 copy of the whole array would: uint8 images are divided by 255 and
float16 maps widened exactly as ``to_float`` and ``.float()`` do on the whole array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch


@dataclass(frozen=True)
class HostRows:
    """Rows ``index`` (None: all) of ``data`` (N, ...), any dtype; ``take`` returns float32.

    uint8 data is taken as images: divided by 255 (``to_float``), so rows are in [0, 1]."""

    data: torch.Tensor
    index: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.data.shape[0] if self.index is None else self.index.numel()

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[1:])

    def rows(self, positions: Optional[torch.Tensor] = None) -> "HostRows":
        """A subset, by positions within these rows (no data is read)."""
        if positions is None:
            return self
        return HostRows(self.data, positions if self.index is None else self.index[positions])

    def take(self, positions: torch.Tensor) -> torch.Tensor:
        """float32 rows at ``positions`` (within these rows), on the host."""
        positions = positions.cpu()
        rows = self.data[positions if self.index is None else self.index[positions]]
        return rows.float().div_(255.0) if rows.dtype == torch.uint8 else rows.float()

    def to(self, device: torch.device | str, positions: torch.Tensor) -> torch.Tensor:
        """``take(positions)`` moved to ``device`` (through pinned memory on CUDA)."""
        return to_device(self.take(positions), device)

    def chunks(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Consecutive position ranges covering all rows."""
        n = len(self)
        for i in range(0, n, batch_size):
            yield torch.arange(i, min(i + batch_size, n))


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A host tensor on ``device``: pinned and copied without blocking on CUDA, as is elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def rows_of(t: torch.Tensor | HostRows) -> HostRows:
    """A tensor (all its rows) or HostRows, as HostRows."""
    return t if isinstance(t, HostRows) else HostRows(t)


@torch.no_grad()
def map_rows(fn: Callable[..., torch.Tensor], inputs: list[HostRows], device: torch.device | str,
             batch_size: int = 256) -> torch.Tensor:
    """``fn`` applied batch by batch to rows of ``inputs`` (moved to ``device``), results
    concatenated on the host."""
    n = len(inputs[0])
    out = [fn(*(r.to(device, pos) for r in inputs)).cpu() for pos in inputs[0].chunks(batch_size)] if n else []
    return torch.cat(out) if out else torch.empty(0)
