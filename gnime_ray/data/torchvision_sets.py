"""MNIST and CIFAR-10 through torchvision's dataset classes, ``download=False``, as the release uses them.

Train and test sets are concatenated in that order (70,000 and 60,000 images), kept as uint8; MNIST
is resized bilinearly from 28x28 to 32x32 (``align_corners=False``, TF/Keras resizing; values
rounded back to uint8), CIFAR-10 is already 32x32 (the release's code, docs/fidelity.md: divide by 255 and
resize to 32x32).

Root: the folder torchvision expects, i.e. the data root holding ``MNIST/raw/*-ubyte`` or
``cifar-10-batches-py/``; passing those folders themselves works too.

Deviation: torchvision checks the CIFAR-10 batch files' MD5 sums against the official archive; we
check that every batch file exists and decodes to uint8 rows of 3,072 values with labels 0..9
instead, so that re-packed copies (and the tests' tiny fixtures) load. MNIST's reader checks the
IDX magic numbers and sizes itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from .. import GnimeRayError
from .registry import DataRequest, ImageDataset, register_dataset, resolve_root

SIZE = 32
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


def _mnist_folder(root: Optional[str]) -> Path:
    expected = f"MNIST/raw/ with {', '.join(MNIST_FILES)} (torchvision's MNIST layout)"
    folder = resolve_root("mnist", root, ("MNIST", "mnist"),
                          lambda p: (p / "raw").is_dir() and p.name == "MNIST" or (p / "MNIST" / "raw").is_dir(),
                          expected)
    folder = folder if folder.name == "MNIST" else folder / "MNIST"
    missing = [f for f in MNIST_FILES if not (folder / "raw" / f).is_file()]
    if missing:
        raise GnimeRayError(f"{folder / 'raw'}: missing {', '.join(missing)}; expected the four uncompressed MNIST "
                            f"IDX files (gunzip the .gz downloads)")
    return folder


@register_dataset("mnist", locate=_mnist_folder, shape=(1, 32, 32))
def load_mnist(request: DataRequest) -> ImageDataset:
    from torchvision.datasets import MNIST

    folder = _mnist_folder(request.root)
    parts = []
    for train in (True, False):
        try:
            ds = MNIST(str(folder.parent), train=train, download=False)
            parts.append((ds.data, ds.targets))
        except (RuntimeError, ValueError, AssertionError, OSError) as exc:
            raise GnimeRayError(f"{folder / 'raw'}: cannot read the MNIST {'train' if train else 't10k'} IDX files "
                                f"({exc}); expected valid uncompressed IDX files") from None
    x = torch.cat([p[0] for p in parts]).unsqueeze(1).float()  # (N, 1, 28, 28) in [0, 255]
    labels = torch.cat([p[1] for p in parts]).long()
    if x.shape[0] != labels.shape[0]:
        raise GnimeRayError(f"{folder / 'raw'}: {x.shape[0]} images but {labels.shape[0]} labels")
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = x.round_().clamp_(0, 255).to(torch.uint8)
    return ImageDataset("mnist", images, labels, num_classes=10,
                        info={"layout": "torchvision MNIST", "folder": str(folder)})


def _cifar_class():
    from torchvision.datasets import CIFAR10

    class _CIFAR10(CIFAR10):
        """torchvision's CIFAR10 with the MD5 checks replaced by presence and shape checks."""

        def _check_integrity(self) -> bool:
            return all((Path(self.root) / self.base_folder / f).is_file() for f in CIFAR_FILES)

        def _load_meta(self) -> None:
            import pickle

            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as fh:
                self.classes = pickle.load(fh, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return _CIFAR10


def _cifar_folder(root: Optional[str]) -> Path:
    expected = f"{CIFAR_FOLDER}/ with {', '.join(CIFAR_FILES)} (the CIFAR-10 python version)"
    folder = resolve_root("cifar10", root, (CIFAR_FOLDER,),
                          lambda p: p.name == CIFAR_FOLDER or (p / CIFAR_FOLDER).is_dir(), expected)
    folder = folder if folder.name == CIFAR_FOLDER else folder / CIFAR_FOLDER
    missing = [f for f in CIFAR_FILES if not (folder / f).is_file()]
    if missing:
        raise GnimeRayError(f"{folder}: missing {', '.join(missing)}; expected {expected}")
    return folder


@register_dataset("cifar10", locate=_cifar_folder, shape=(3, 32, 32))
def load_cifar10(request: DataRequest) -> ImageDataset:
    folder = _cifar_folder(request.root)
    cls = _cifar_class()
    images, labels = [], []
    for train in (True, False):
        try:
            ds = cls(str(folder.parent), train=train, download=False)
        except Exception as exc:  # pickle, reshape and key errors of a damaged batch file
            raise GnimeRayError(f"{folder}: cannot read the CIFAR-10 {'training' if train else 'test'} batches "
                                f"({type(exc).__name__}: {exc}); expected python pickles with 'data' (N, 3072) "
                                f"uint8 and 'labels'") from None
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
        y = torch.as_tensor(ds.targets, dtype=torch.long)
        if x.dtype != torch.uint8 or y.shape[0] != x.shape[0] or (y.numel() and (y.min() < 0 or y.max() > 9)):
            raise GnimeRayError(f"{folder}: the {'training' if train else 'test'} batches hold {x.shape[0]} images "
                                f"and {y.shape[0]} labels; expected one label in 0..9 per uint8 image")
        images.append(x)
        labels.append(y)
    return ImageDataset("cifar10", torch.cat(images), torch.cat(labels), num_classes=10,
                        info={"layout": "torchvision CIFAR-10 (python)", "folder": str(folder)})
