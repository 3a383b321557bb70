"""scikit-learn's bundled handwritten digits: the embedded default dataset.

1,797 grey images of 8x8 pixels (values 0..16), 10 classes. Scaled to [0, 1], resized
bilinearly to 32x32 (the MNIST geometry of the paper's networks; ``align_corners=False``,
as Keras/TF image resizing), and stored as uint8. Ships with scikit-learn: no download.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .registry import DataRequest, ImageDataset, register_dataset

SIZE = 32


@register_dataset("digits", shape=(1, 32, 32))
def load_digits(request: Optional[DataRequest] = None) -> ImageDataset:
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = torch.from_numpy(bunch.images).float().div(16.0).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp_(0, 1)
    images = x.mul(255.0).round_().to(torch.uint8)
    labels = torch.from_numpy(bunch.target).long()
    return ImageDataset("digits", images, labels, num_classes=10, info={"layout": "scikit-learn bundled"})
