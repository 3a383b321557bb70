"""The attribute classifiers of the paper's attribute-leakage study (Sec. 5.3.3, Fig. 6).

One binary classifier per attribute: torchvision's ResNet-50 with its final layer replaced by a
single logit (the paper: "ResNet50V2 ... with its final layer replaced for binary classification";
torchvision has the v1 ResNet-50, the nearest well-kept implementation: a named deviation). Input:
(N, 3, H, W) float32 in [0, 1], normalised inside the model with the ImageNet mean and std (what
ImageNet weights expect). Trained from scratch, or from a local weights file (a torchvision
ResNet-50 state dict, e.g. ImageNet weights downloaded beforehand): never downloaded here.
Initialised as torchvision initialises a ResNet (kaiming_normal fan_out convs, unit batch norms,
torch's default Linear), every draw from the caller's ``generator`` (models/initialisation.py), never from
torch's global generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import math

import torch
from torch import nn

from .. import GnimeRayError
from .initialisation import default_generator, on_meta

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class AttributeClassifier(nn.Module):
    """x: (N, 3, H, W) float32 in [0, 1] -> (N,) logit of the attribute being present."""

    def __init__(self, weights: Optional[str] = None, generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        from torchvision.models import resnet50

        with on_meta():  # no draw: initialised from ``generator`` below
            self.net = resnet50(weights=None)
            self.net.fc = nn.Linear(self.net.fc.in_features, 1)
        self.net.to_empty(device="cpu")
        _resnet_init_(self.net, default_generator(generator))
        if weights is not None:
            load_backbone(self.net, weights)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std).squeeze(1)


def _resnet_init_(net: nn.Module, generator: torch.Generator) -> None:
    """torchvision's ResNet initialisation (zero_init_residual off) drawn from ``generator``."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                m.reset_parameters()  # weight 1, bias 0, and the running statistics (no draw)
            elif isinstance(m, nn.Linear):  # torch's default Linear initialisation
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                nn.init.uniform_(m.bias, -1 / math.sqrt(m.in_features), 1 / math.sqrt(m.in_features),
                                 generator=generator)


def load_backbone(net: nn.Module, weights: str) -> None:
    """Load a ResNet-50 state dict (its fc layer is ignored); errors name the file."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise GnimeRayError(f"--weights {path}: no such file; expected a torchvision ResNet-50 state dict (.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling and zip errors of a damaged or foreign file
        raise GnimeRayError(f"--weights {path}: cannot be read as a state dict ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise GnimeRayError(f"--weights {path}: not a ResNet-50 state dict ({len(missing)} missing keys, e.g. "
                            f"{(missing or unexpected)[0]!r}; {len(unexpected)} unexpected)")
