"""Datasets: a registry of loaders (images kept as uint8 tensors in memory) and the paper's split."""

from .registry import DATASETS, ImageDataset, load_dataset, register_dataset
from .splits import DataSplit, make_split
from . import digits as _digits  # noqa: F401  (registers 'digits')

__all__ = ["DATASETS", "ImageDataset", "load_dataset", "register_dataset", "DataSplit", "make_split"]
