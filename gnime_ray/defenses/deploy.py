"""Phase II: the trained noise generator deployed in front of a model's explanation API.

``export_release`` turns a trained GNIME (optionally with the gamma bound) into one self-contained
file mapping (clean maps, logits) to released maps, exactly as ``GnimeDefense.release`` does:
standardise with the training maps' mu and sigma, the NG, sigma * n + mu clipped to [0, 1]; with
gamma, Eq. 3's rescaling of each map's noise to pixel variance gamma (unclipped, as in the study:
clipping would break the exact variance). Two formats, neither needing gnime_ray to run:

- ``export`` (the default, a ``.pt2`` file): ``torch.export``'s program, the batch dimension
  dynamic; ``torch.export.load(PATH).module()(clean_maps, logits)``. The format torch keeps.
- ``torchscript``: a traced TorchScript module, ``torch.jit.load(PATH)(clean_maps, logits)``;
  torch 2.14 deprecates TorchScript (``torch.jit.load`` warns), so it is kept only for runtimes
  that still need it.

Either file carries ``metadata.json`` (what it was trained on and with) as an extra file.

``Protector`` wraps a classifier and an explainer with such a defence: ``protector(x)`` returns
the logits and the protected maps of a batch, which is what an explanation endpoint should
serve instead of the raw maps.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from torch import nn
from torch.export.passes import move_to_device_pass

from ..cachedir import atomic_path
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


FORMATS = ("export", "torchscript")


def export_release(model: GnimeModel, path: Path, gamma: Optional[float] = None,
                   metadata: Optional[dict[str, Any]] = None, fmt: str = "export") -> Path:
    """Write the release module of ``model`` (on the CPU; the batch size stays free) to ``path``
    atomically, as ``fmt`` (module docstring); returns the path."""
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    model = GnimeModel.from_state(model.state(), "cpu")
    module = ReleaseModule(model, gamma, {**(metadata or {}), "mu": model.mu, "sigma": model.sigma, "gamma": gamma,
                                          "map_shape": list(model.ng.in_shape), "num_classes": model.ng.num_classes,
                                          "format": fmt}).eval()
    gen = torch.Generator().manual_seed(0)
    example = (torch.rand(2, *model.ng.in_shape, generator=gen), torch.randn(2, model.ng.num_classes, generator=gen))
    extra = {"metadata.json": module.metadata}
    path = Path(path)
    with torch.no_grad(), warnings.catch_warnings(), atomic_path(path) as tmp:
        if fmt == "export":
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(module, example, dynamic_shapes=({0: batch}, {0: batch}))
            torch.export.save(program, str(tmp), extra_files=extra)
        else:
            # the spatial sizes the U-Net reads are static: their conversion to Python ints is intended
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates TorchScript: asked for by name
            torch.jit.save(torch.jit.trace(module, example, check_trace=False), str(tmp), _extra_files=extra)
    return path


def load_release(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> Callable[..., torch.Tensor]:
    """The release module in ``path`` (either format, told apart by its content), on ``device``."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        raise FileNotFoundError(f"{path} is not an exported defence (a file written by 'gnime-ray export')")
    with zipfile.ZipFile(path) as archive:
        is_program = any(name.endswith("/archive_format") for name in archive.namelist())  # torch.export's archive
    if is_program:
        return move_to_device_pass(torch.export.load(str(path)), device).module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # a TorchScript file, deprecated by torch 2.14
        return torch.jit.load(str(path), map_location=device).eval()


class Protector:
    """A classifier whose explanations are released through a defence.

    ``model``: the classifier (images -> logits); ``explainer``: a function (model, images) -> maps
    in [0, 1] (e.g. ``gnime_ray.explain.get_explainer("lrp", "paper")``); ``defence``: the path of
    an exported release (``gnime-ray export``, either format) or a loaded one. ``protector(x)`` ->
    (logits, protected maps) for a batch x: the maps are the defence's release of the explainer's
    maps."""

    def __init__(self, model: nn.Module, explainer: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                 defence: Union[str, Path, Callable[..., torch.Tensor]]):
        self.model, self.explainer = model, explainer
        self._path = Path(defence) if isinstance(defence, (str, Path)) else None
        self.defence = load_release(self._path) if self._path is not None else defence

    def to(self, device: Union[str, torch.device]) -> "Protector":
        """The defence moved to ``device`` (a loaded file is loaded again there)."""
        self.defence = load_release(self._path, device) if self._path is not None else self.defence.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            logits = self.model(x)
        maps = self.explainer(self.model, x)
        with torch.no_grad():
            return logits, self.defence(maps.float(), logits.float())
