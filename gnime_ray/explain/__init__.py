"""Explainers: pure, batched functions ``(model, x) -> maps``.

``x: (N, C, H, W) float32 in [0, 1]``; ``maps: (N, C', H', W') float32 in [0, 1]``, computed for
the model's predicted class (LRP 'paper': for the whole logit vector). Two variants each:

- ``paper``: the release's behaviour as its scripts ran it, quirks included (the release's code, docs/fidelity.md);
- ``paper-flat``: ``paper`` with LRP's flat rule at the first conv, the release's code as written
  (which its scripts never reached: explain/lrp.py); Grad and Grad-CAM as ``paper``;
- ``standard``: the textbook definitions (per-sample Grad-CAM with ReLU and bilinear upsampling;
  single-class LRP through Zennit's EpsilonPlusFlat composite).

Beyond them, Captum's attribution methods (``ig``, ``smoothgrad``, ``gxi``, ``deeplift``,
``gradshap``, ``guidedbp``: explain/captum_methods.py), one definition each whatever the variant,
with their settings taken from the preset (``explainer_settings``).

The model is put in eval mode for the call and restored afterwards; no parameter gradient is
accumulated.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from .. import GnimeRayError
from ..cellspec import CAPTUM_EXPLAINERS, EXPLAINER_VARIANTS, PAPER_EXPLAINERS
from ..cellspec import EXPLAINERS as EXPLAINER_NAMES
from .captum_methods import SETTINGS, captum_explainer
from .grad import grad_map
from .gradcam import gradcam_paper, gradcam_standard
from .lrp import lrp_paper, lrp_paper_flat, lrp_paper_relevance, lrp_standard

Explainer = Callable[[nn.Module, torch.Tensor], torch.Tensor]

EXPLAINER_FUNCTIONS: dict[tuple[str, str], Explainer] = {
    ("grad", "paper"): grad_map,
    ("grad", "standard"): grad_map,
    ("gradcam", "paper"): gradcam_paper,
    ("gradcam", "standard"): gradcam_standard,
    ("lrp", "paper"): lrp_paper,
    ("lrp", "standard"): lrp_standard,
    ("grad", "paper-flat"): grad_map,
    ("gradcam", "paper-flat"): gradcam_paper,
    ("lrp", "paper-flat"): lrp_paper_flat,
}


def _pure(fn: Explainer) -> Explainer:
    def explain(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            return fn(model, x).detach()
        finally:
            model.train(was_training)
    explain.__name__ = fn.__name__
    explain.__doc__ = fn.__doc__
    return explain


def explainer_settings(name: str, preset: Any) -> dict[str, Any]:
    """The preset's fields that explainer ``name`` takes (none for the paper's three): what its
    maps' cache key and every row's config record."""
    return {f: getattr(preset, f) for f in SETTINGS.get(name, ())}


def get_explainer(name: str, variant: str = "paper", settings: Optional[Mapping[str, Any]] = None) -> Explainer:
    """The explainer ``name`` (EXPLAINER_NAMES) in ``variant`` ('paper', 'paper-flat', 'standard';
    one definition for Captum's methods); ``settings``: a Captum method's (``explainer_settings``;
    default: the paper preset's)."""
    if name not in EXPLAINER_NAMES:
        raise GnimeRayError(f"unknown explainer {name!r}; expected one of {', '.join(EXPLAINER_NAMES)}")
    if variant not in EXPLAINER_VARIANTS:
        raise GnimeRayError(f"unknown explainer variant {variant!r}; expected one of {', '.join(EXPLAINER_VARIANTS)}")
    if name in CAPTUM_EXPLAINERS:
        if settings is None:
            from ..config import get_preset

            settings = explainer_settings(name, get_preset("paper"))
        return _pure(captum_explainer(name, settings))
    return _pure(EXPLAINER_FUNCTIONS[(name, variant)])


def map_shape(name: str, variant: str, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (C', H', W') of the maps an explainer gives for images of ``image_shape`` (C, H, W)
    on the paper's classifiers: Grad and LRP keep the image's shape; the paper Grad-CAM is one
    channel at the last conv's resolution (H/2 for the 32x32 nets, H/4 for CelebA); the standard
    Grad-CAM is one channel at the input size."""
    c, h, w = image_shape
    if name != "gradcam":  # Grad, LRP and every Captum method: the image's shape
        return (c, h, w)
    if variant == "standard":
        return (1, h, w)
    n_pool_before_last_conv = {32: 1, 128: 2, 256: 3}.get(h, 1)
    return (1, h >> n_pool_before_last_conv, w >> n_pool_before_last_conv)


__all__ = ["CAPTUM_EXPLAINERS", "EXPLAINER_FUNCTIONS", "EXPLAINER_NAMES", "EXPLAINER_VARIANTS", "PAPER_EXPLAINERS",
           "explainer_settings", "get_explainer", "map_shape", "lrp_paper_relevance"]
