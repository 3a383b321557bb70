"""The dataset registry.

A loader is a function ``(root) -> ImageDataset`` registered under its config name with
``@register_dataset(name)``. Loaders read local files only and never download.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .. import GnimeRayError


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image dataset held in memory.

    images: (N, C, H, W) uint8 in [0, 255]; labels: (N,) int64 in [0, num_classes).
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be a (N, C, H, W) uint8 tensor, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def head(self, n: Optional[int]) -> "ImageDataset":
        """The first n images (all when n is None or >= len)."""
        if n is None or n >= len(self):
            return self
        return ImageDataset(self.name, self.images[:n].clone(), self.labels[:n].clone(), self.num_classes)

    def fingerprint(self) -> str:
        """A content hash of the images and labels (identifies the data in cache keys)."""
        h = hashlib.sha256()
        h.update(self.images.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        return h.hexdigest()[:16]


Loader = Callable[[Optional[str]], ImageDataset]
DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn
    return deco


def load_dataset(name: str, root: Optional[str] = None, max_images: Optional[int] = None) -> ImageDataset:
    """Load a registered dataset; an unknown name raises GnimeRayError listing the known ones."""
    if name not in DATASETS:
        raise GnimeRayError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name](root).head(max_images)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1] (same shape, same device)."""
    return images.float().div_(255.0)
