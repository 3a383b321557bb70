"""Networks of the paper and its release: the target/evaluation classifiers, the one U-Net
builder shared by NG, INV and the ExpMI attacker, and PredMI."""

from .classifiers import ARCH_BY_DATASET, CLASSIFIER_ARCHS, Classifier, build_classifier
from .initialisation import OwnedDropout, dropout_from, keras_init_
from .predmi import PredMI
from .unet import UNet

__all__ = ["ARCH_BY_DATASET", "CLASSIFIER_ARCHS", "Classifier", "build_classifier", "dropout_from", "keras_init_", "OwnedDropout",
           "PredMI", "UNet"]


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())
