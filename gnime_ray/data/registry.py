"""The dataset registry.

A loader is a function ``(request) -> ImageDataset`` registered under its config name with
``@register_dataset(name)``; the :class:`DataRequest` carries the data root, the preprocessing
cache directory, the selection options and the progress log. Loaders read local files only and
never download.

Data root: ``--data-root DIR``, else the ``GNIME_RAY_DATA`` environment variable. DIR holds each
dataset in its usual folder (``MNIST/raw``, ``cifar-10-batches-py``, ``celeba``,
``celeba_cropped_1000``, ``imagenet100``, ``facescrub``); a loader also accepts DIR pointing at
its own folder directly.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .. import GnimeRayError, echo
from ..cellspec import content_hash

ROOT_ENV_VAR = "GNIME_RAY_DATA"


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image dataset held in memory.

    images: (N, C, H, W) uint8 in [0, 255] (a memory-mapped file for the large datasets);
    labels: (N,) int64 in [0, num_classes). ``attributes``: optional (N, A) int8 in {0, 1} with
    ``attribute_names`` (CelebA's list_attr_celeba.txt). ``info``: how the data was selected
    (layout, files, cache path), for ``gnime-ray data check`` and provenance.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    attributes: Optional[torch.Tensor] = None
    attribute_names: tuple[str, ...] = ()
    info: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be a (N, C, H, W) uint8 tensor, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")
        if self.attributes is not None and self.attributes.shape != (self.images.shape[0], len(self.attribute_names)):
            raise ValueError(f"attributes must have shape ({self.images.shape[0]}, {len(self.attribute_names)}), "
                             f"got {tuple(self.attributes.shape)}")

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
        attrs = None if self.attributes is None else self.attributes[:n].clone()
        return ImageDataset(self.name, self.images[:n].clone(), self.labels[:n].clone(), self.num_classes,
                            attrs, self.attribute_names, {**self.info, "max_images": n})

    def fingerprint(self) -> str:
        """What identifies the data in cache keys. A dataset read through the preprocessing cache
        (data/imagecache.py) is identified by its cache entry, itself a hash of the source files'
        names and sizes, the selection and the output size: nothing is read. A dataset held in
        memory (digits, MNIST, CIFAR-10: at most a few hundred MB) is hashed, in chunks."""
        if "cache" in self.info:
            return content_hash({"entry": Path(self.info["cache"]).name, "rows": len(self),
                                 "max_images": self.info.get("max_images")})
        h = hashlib.sha256()
        arr = self.images.numpy()
        for i in range(0, arr.shape[0], 1024):
            h.update(memoryview(arr[i:i + 1024]).cast("B"))
        h.update(self.labels.numpy().tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class DataRequest:
    """What a loader needs besides its name.

    root: the data root (None: ``$GNIME_RAY_DATA``); cache_dir: where preprocessed arrays are
    kept (None: the default cache, ``$GNIME_RAY_CACHE`` or ``~/.cache/gnime_ray``); options: the selection
    knobs of the preset (``celeba_identities``, ``celeba_images_per_identity``, ...).
    """

    root: Optional[str] = None
    cache_dir: Optional[Path] = None
    options: dict = field(default_factory=dict)
    log: Callable[[str], None] = echo
    progress: bool = True

    def option(self, key: str, default: Any) -> Any:
        return self.options.get(key, default)


def resolve_root(dataset: str, root: Optional[str], folders: tuple[str, ...], marker: Callable[[Path], bool],
                 expected: str) -> Path:
    """The folder of ``dataset``: ``root/<one of folders>`` or ``root`` itself, whichever
    ``marker`` accepts. Raises GnimeRayError naming what was looked for when none does."""
    raw = root or os.environ.get(ROOT_ENV_VAR)
    if not raw:
        raise GnimeRayError(f"dataset {dataset!r} needs a data root: pass --data-root DIR or set ${ROOT_ENV_VAR} "
                            f"(DIR holding {expected})")
    base = Path(raw).expanduser().absolute()
    if not base.is_dir():
        raise GnimeRayError(f"data root {base} does not exist or is not a directory (expected a folder holding "
                            f"{expected})")
    candidates = [base / f for f in folders] + [base]
    for c in candidates:
        if c.is_dir() and marker(c):
            return c
    raise GnimeRayError(f"{dataset}: found no dataset under {base}: expected {expected} "
                        f"(looked in {', '.join(str(c) for c in candidates)})")


Loader = Callable[[DataRequest], ImageDataset]
# a locator finds a dataset's folder under a data root without reading any image (raises
# GnimeRayError naming what it looked for); datasets bundled with a package have none
Locator = Callable[[Optional[str]], Path]
DATASETS: dict[str, Loader] = {}
LOCATORS: dict[str, Locator] = {}
# (C, H, W) of a dataset's images as its loader returns them, known without reading any image
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {}


def register_dataset(name: str, locate: Optional[Locator] = None,
                     shape: Optional[tuple[int, int, int]] = None) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        DATASETS[name] = fn
        if locate is not None:
            LOCATORS[name] = locate
        if shape is not None:
            IMAGE_SHAPES[name] = shape
        return fn
    return deco


def locate_dataset(name: str, root: Optional[str]) -> Optional[Path]:
    """The folder a dataset would be read from under ``root`` (None for a bundled dataset): a
    cheap check that the data is there, e.g. on every node of a cluster before a study."""
    if name not in DATASETS:
        raise GnimeRayError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(DATASETS))}")
    locate = LOCATORS.get(name)
    return None if locate is None else locate(root)


def load_dataset(name: str, root: Optional[str] = None, max_images: Optional[int] = None, *,
                 cache_dir: Optional[Path] = None, options: Optional[dict] = None,
                 log: Callable[[str], None] = echo, progress: bool = True) -> ImageDataset:
    """Load a registered dataset; an unknown name raises GnimeRayError listing the known ones."""
    if name not in DATASETS:
        raise GnimeRayError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(DATASETS))}")
    request = DataRequest(root=root, cache_dir=cache_dir, options=dict(options or {}), log=log, progress=progress)
    return DATASETS[name](request).head(max_images)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1] (same shape, same device)."""
    return images.float().div_(255.0)
