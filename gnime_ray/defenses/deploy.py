"""Phase II: the trained noise generator deployed in front of a model's explanation API.

``export_release`` turns a trained GNIME (optionally with the gamma bound) into one self-contained
TorchScript file mapping (clean maps, logits) to released maps, exactly as ``GnimeDefense.release``
does: standardise with the training maps' mu and sigma, the NG, sigma * n + mu clipped to [0, 1];
with gamma, Eq. 3's rescaling of each map's noise to pixel variance gamma (unclipped, as in the
study: clipping would break the exact variance). The file loads with plain ``torch.jit.load``;
gnime_ray is not needed to use it. Its ``metadata`` attribute (a JSON string) says what it was
trained on and with.

``Protector`` wraps a classifier and an explainer with such a defence: ``protector(x)`` returns
the logits and the protected maps of a batch, which is what an explanation endpoint should
serve instead of the raw maps.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from .gamma import apply_gamma_bound
from .gnime import GnimeModel


class ReleaseModule(nn.Module):
    """(clean maps (N, C', H', W') float32 in [0, 1], logits (N, K) float32) -> released maps."""

    def __init__(self, model: GnimeModel, gamma: Optional[float], metadata: dict[str, Any]):
        super().__init__()
        self.ng = model.ng.eval()
        self.mu, self.sigma = float(model.mu), float(model.sigma)
        self.gamma = gamma
        self.metadata = json.dumps(metadata, sort_keys=True)

    def forward(self, e: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = self.ng((e - self.mu) / self.sigma, y)
        e_hat = (self.sigma * n + self.mu).clamp(0, 1)
        return e_hat if self.gamma is None else apply_gamma_bound(e, e_hat, self.gamma)


def export_release(model: GnimeModel, path: Path, gamma: Optional[float] = None,
                   metadata: Optional[dict[str, Any]] = None) -> Path:
    """Write the TorchScript release module of ``model`` (on the CPU, traced; the batch size stays
    free) to ``path`` atomically; returns the path."""
    model = GnimeModel.from_state(model.state(), "cpu")
    module = ReleaseModule(model, gamma, {**(metadata or {}), "mu": model.mu, "sigma": model.sigma, "gamma": gamma,
                                          "map_shape": list(model.ng.in_shape), "num_classes": model.ng.num_classes})
    example = (torch.rand(2, *model.ng.in_shape), torch.randn(2, model.ng.num_classes))
    with torch.no_grad(), warnings.catch_warnings():
        # the spatial sizes the U-Net reads are static: their conversion to Python ints is intended
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates TorchScript; its format is the point here
        traced = torch.jit.trace(module, example, check_trace=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, str(tmp), _extra_files={"metadata.json": module.metadata})
    tmp.replace(path)
    return path


class Protector:
    """A classifier whose explanations are released through a defence.

    ``model``: the classifier (images -> logits); ``explainer``: a function (model, images) -> maps
    in [0, 1] (e.g. ``gnime_ray.explain.get_explainer("lrp", "paper")``); ``defence``: an exported
    release module, or the path of one (``gnime-ray export``). ``protector(x)`` -> (logits,
    protected maps) for a batch x: the maps are the defence's release of the explainer's maps."""

    def __init__(self, model: nn.Module, explainer: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                 defence: Union[str, Path, torch.jit.ScriptModule]):
        self.model, self.explainer = model, explainer
        self.defence = torch.jit.load(str(defence), map_location="cpu") if isinstance(defence, (str, Path)) else defence
        self.defence.eval()

    def to(self, device: Union[str, torch.device]) -> "Protector":
        self.defence.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            logits = self.model(x)
        maps = self.explainer(self.model, x)
        with torch.no_grad():
            return logits, self.defence(maps.float(), logits.float())
