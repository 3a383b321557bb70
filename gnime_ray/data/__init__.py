"""Datasets: a registry of loaders (images kept as uint8 tensors in memory) and the paper's split."""

from .registry import DATASETS, IMAGE_SHAPES, ROOT_ENV_VAR, DataRequest, ImageDataset, load_dataset, locate_dataset, register_dataset
from .splits import DataSplit, make_split
from . import digits as _digits  # noqa: F401  (registers 'digits')
from . import torchvision_sets as _torchvision_sets  # noqa: F401  (registers 'mnist', 'cifar10')
from . import mnist5k as _mnist5k  # noqa: F401  (registers 'mnist5k')
from . import celeba as _celeba  # noqa: F401  (registers 'celeba')
from . import imagefolder as _imagefolder  # noqa: F401  (registers 'imagenet100', 'facescrub')

__all__ = ["DATASETS", "IMAGE_SHAPES", "ROOT_ENV_VAR", "DataRequest", "ImageDataset", "load_dataset", "locate_dataset", "register_dataset", "DataSplit", "make_split"]
