"""Target f and evaluation f_E classifiers (the release's code, docs/fidelity.md; the models of Zhao et al.).

- ``small`` (MNIST, CIFAR-10, digits): Conv128-ReLU-MaxPool, Conv256-ReLU-MaxPool, Flatten,
  Dense512-ReLU, Dense(K). 8,690,698 parameters for 32x32x1 and 10 classes.
- ``celeba``: Conv128, Conv256, Conv512 (each ReLU + MaxPool), Flatten, Dropout 0.5, Dense512-ReLU,
  Dropout 0.5, Dense(K). 69,101,288 parameters for 128x128x3 and 1,000 classes.
- ``imagenet100``: the CelebA net with one more conv block (the paper); its width is not given
  anywhere, we use 512 filters (named deviation).

Convs are 3x3 'same', pools 2x2 stride 2, outputs are raw logits (no softmax: the logit vector
is the y_hat that NG, INV and the attackers take). Keras initialisation from ``generator`` and
dropout masks from the trainer's generator (models/initialisation.py).

The layers form one ``nn.Sequential`` (``self.layers``) so explainers can walk them:
``cam_index`` is the index of the last conv block's ReLU (Grad-CAM's target, before pooling),
``feature_index`` the index of the penultimate representation used by DeePSiM (release: the
Flatten output for the small net, the Dense512-ReLU output for CelebA).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .initialisation import OwnedDropout, default_generator, keras_init_, on_meta, scaled

CLASSIFIER_ARCHS: dict[str, dict] = {
    "small": {"conv": (128, 256), "dropout": 0.0, "features": "flatten"},
    "celeba": {"conv": (128, 256, 512), "dropout": 0.5, "features": "dense"},
    "imagenet100": {"conv": (128, 256, 512, 512), "dropout": 0.5, "features": "dense"},
}
ARCH_BY_DATASET = {"digits": "small", "mnist": "small", "mnist5k": "small", "cifar10": "small",
                   "celeba": "celeba", "facescrub": "celeba", "imagenet100": "imagenet100"}


class Classifier(nn.Module):
    """x: (N, C, H, W) float32 in [0, 1] -> logits (N, num_classes)."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, conv: Sequence[int], dense: int = 512,
                 dropout: float = 0.0, features: str = "flatten", width: float = 1.0,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        c, h, w = in_shape
        if h % (2 ** len(conv)) or w % (2 ** len(conv)):
            raise ValueError(f"input {h}x{w} is not divisible by 2^{len(conv)}")
        with on_meta():  # no draw: the weights come from ``generator`` (models/initialisation.py)
            layers: list[nn.Module] = []
            for ch in conv:
                ch = scaled(ch, width)
                layers += [nn.Conv2d(c, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
                c = ch
            self.cam_index = len(layers) - 2
            layers.append(nn.Flatten())
            flat_index = len(layers) - 1
            flat = c * (h >> len(conv)) * (w >> len(conv))
            d = scaled(dense, width)
            if dropout:
                layers.append(OwnedDropout(dropout))
            layers += [nn.Linear(flat, d), nn.ReLU()]
            dense_index = len(layers) - 1
            if dropout:
                layers.append(OwnedDropout(dropout))
            layers.append(nn.Linear(d, num_classes))
            self.layers = nn.Sequential(*layers)
        self.feature_index = flat_index if features == "flatten" else dense_index
        self.in_shape = tuple(in_shape)
        self.num_classes = num_classes
        keras_init_(self, default_generator(generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def forward_to(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """The output of ``self.layers[index]``."""
        for layer in self.layers[: index + 1]:
            x = layer(x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, d) for DeePSiM."""
        return self.forward_to(x, self.feature_index).flatten(1)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(``features(x)``, ``forward(x)``) from one pass through the layers: the same operations
        on the same batch as the two calls, so the same numbers, at the cost of one."""
        h = self.forward_to(x, self.feature_index)
        out = h
        for layer in self.layers[self.feature_index + 1:]:
            out = layer(out)
        return h.flatten(1), out

    def cam_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(last conv activation (N, C', h, w) after ReLU before pooling, logits (N, K))."""
        a = self.forward_to(x, self.cam_index)
        out = a
        for layer in self.layers[self.cam_index + 1:]:
            out = layer(out)
        return a, out


def build_classifier(arch: str, in_shape: Sequence[int], num_classes: int, width: float = 1.0,
                     generator: Optional[torch.Generator] = None) -> Classifier:
    if arch not in CLASSIFIER_ARCHS:
        raise ValueError(f"unknown classifier arch {arch!r}; expected one of {', '.join(CLASSIFIER_ARCHS)}")
    return Classifier(in_shape, num_classes, width=width, generator=generator, **CLASSIFIER_ARCHS[arch])
