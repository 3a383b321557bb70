"""Attribution methods beyond the paper's three, from Captum (captum.ai): each a batched
``(model, x) -> maps`` like grad.py, for the model's predicted class.

| name | Captum method | settings (preset fields) |
|---|---|---|
| ``ig`` | IntegratedGradients (Gauss-Legendre, Captum's default rule) | ``ig_steps``, ``attribution_baseline`` |
| ``smoothgrad`` | NoiseTunnel('smoothgrad') over Saliency(abs=False) | ``smoothgrad_samples``, ``smoothgrad_noise`` |
| ``gxi`` | InputXGradient (gradient x input) | none |
| ``deeplift`` | DeepLift (rescale rule) | ``attribution_baseline`` |
| ``gradshap`` | GradientShap | ``gradshap_samples``, ``gradshap_noise`` |
| ``guidedbp`` | GuidedBackprop | none |

What each releases, so that every defence and attacker takes it as it takes Grad's maps: the
attribution's magnitude ``|a|`` (the sign discarded; for SmoothGrad the magnitude of the MEAN
gradient over the noisy copies, Smilkov et al.'s definition, not the mean magnitude), min-max
normalised per image and per channel to [0, 1] (explain/normalize.py, as the release does for
Grad), channels kept: a map has the image's shape (C, H, W).

Baselines (``attribution_baseline``): ``black`` (all zeros, the images' minimum) or ``white`` (all
ones); GradientSHAP draws its baselines from {black, white} (Captum samples one per noisy copy).
Noise levels are standard deviations in the images' units ([0, 1]): Smilkov et al. suggest 10 to
20% of the input range. SmoothGrad and GradientSHAP draw their noise, baselines and interpolation
points from torch's and numpy's global generators (Captum's own draws); each call runs them from a
fixed seed (``NOISE_SEED``, ``seeded``) and puts both generators back after, so a batch's maps are
the same whenever it is explained (for a given batch size: the draws follow the batch) and nothing
else's randomness moves. Integrated Gradients' inner batches are bounded by the call's batch
(``internal_batch_size``), so memory grows with the batch, not with ``ig_steps``.

Deviation from Captum's defaults (the settings are recorded in every row's ``config`` and in the
maps' cache key): IG's 50 steps become ``ig_steps`` (32 by default: its attributions sum to within
5% of f(x) - f(baseline) on the paper's MNIST classifier, tests/test_captum.py), SmoothGrad and
GradientSHAP take 16 samples (Captum: 5).
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

from .. import GnimeRayError
from ..cellspec import CAPTUM_EXPLAINERS
from .normalize import minmax_per_channel

# the seed of SmoothGrad's and GradientSHAP's draws, for every batch (module docstring)
NOISE_SEED = 20221128
BASELINES = ("black", "white")
# the settings each method takes, by name (the preset's fields, config.py)
SETTINGS: dict[str, tuple[str, ...]] = {
    "ig": ("ig_steps", "attribution_baseline"),
    "smoothgrad": ("smoothgrad_samples", "smoothgrad_noise"),
    "gxi": (),
    "deeplift": ("attribution_baseline",),
    "gradshap": ("gradshap_samples", "gradshap_noise"),
    "guidedbp": (),
}
assert tuple(SETTINGS) == CAPTUM_EXPLAINERS, "cellspec.py names the same methods"

Baseline = Union[str, torch.Tensor]


def check_settings(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of method ``name`` checked: exactly its fields (SETTINGS), counts integers
    >= 1, noise levels finite and >= 0, the baseline a name of BASELINES; a bad one raises
    GnimeRayError naming the field."""
    if name not in SETTINGS:
        raise GnimeRayError(f"unknown Captum explainer {name!r}; expected one of {', '.join(SETTINGS)}")
    missing = [f for f in SETTINGS[name] if f not in settings]
    if missing:
        raise GnimeRayError(f"explainer {name} needs the settings {', '.join(missing)}")
    out = {f: settings[f] for f in SETTINGS[name]}
    for f, v in out.items():
        if f.endswith(("_steps", "_samples")):
            ok, expected = isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"
        elif f.endswith("_noise"):
            ok, expected = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0, \
                "a finite number >= 0"
        else:
            ok, expected = v in BASELINES, f"one of {', '.join(BASELINES)}"
        if not ok:
            raise GnimeRayError(f"{f} must be {expected}, got {v!r}")
    return out


def baseline_images(baseline: Baseline, x: torch.Tensor) -> torch.Tensor:
    """The baseline of every image of x: a name of BASELINES, or one image (C, H, W) or a batch
    like x; anything else raises GnimeRayError naming 'baseline'."""
    if isinstance(baseline, str):
        if baseline not in BASELINES:
            raise GnimeRayError(f"baseline must be one of {', '.join(BASELINES)} or an image tensor, got {baseline!r}")
        return torch.zeros_like(x) if baseline == "black" else torch.ones_like(x)
    if not isinstance(baseline, torch.Tensor) or baseline.shape not in (x.shape[1:], x.shape):
        shape = tuple(baseline.shape) if isinstance(baseline, torch.Tensor) else type(baseline).__name__
        raise GnimeRayError(f"baseline must have the images' shape {tuple(x.shape[1:])} (or the batch's "
                            f"{tuple(x.shape)}), got {shape}")
    return baseline.to(x.device, x.dtype).expand_as(x).contiguous()


@contextmanager
def seeded(device: torch.device) -> Iterator[None]:
    """Torch's (and the device's) and numpy's global generators at NOISE_SEED inside, as they were
    after: Captum draws SmoothGrad's noise with torch, GradientSHAP's baselines and interpolation
    coefficients with numpy."""
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(NOISE_SEED)
            np.random.seed(NOISE_SEED)
            yield
    finally:
        np.random.set_state(state)


def predicted(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def attribute(model: nn.Module, x: torch.Tensor, name: str, settings: Mapping[str, Any],
              baseline: Optional[Baseline] = None, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Captum's raw attribution (N, C, H, W), signed, for ``target`` (default: the predicted
    classes); ``baseline`` (IG, DeepLIFT) overrides the settings' named one."""
    s = check_settings(name, settings)
    x = x.detach().clone().requires_grad_(True)  # Captum differentiates with respect to it
    target = predicted(model, x) if target is None else target
    with warnings.catch_warnings():  # DeepLIFT's and Guided Backprop's notices that they hook the ReLUs, every call
        warnings.filterwarnings("ignore", message="Setting .*hooks")
        return _attribute(model, x, name, s, baseline, target)


def _attribute(model: nn.Module, x: torch.Tensor, name: str, s: dict[str, Any], baseline: Optional[Baseline],
               target: torch.Tensor) -> torch.Tensor:
    from captum.attr import (
        DeepLift,
        GradientShap,
        GuidedBackprop,
        InputXGradient,
        IntegratedGradients,
        NoiseTunnel,
        Saliency,
    )

    if name == "ig":
        base = baseline_images(s["attribution_baseline"] if baseline is None else baseline, x)
        return IntegratedGradients(model).attribute(x, baselines=base, target=target, n_steps=s["ig_steps"],
                                                    internal_batch_size=max(1, x.shape[0]))
    if name == "deeplift":
        base = baseline_images(s["attribution_baseline"] if baseline is None else baseline, x)
        return DeepLift(model).attribute(x, baselines=base, target=target)
    if name == "gxi":
        return InputXGradient(model).attribute(x, target=target)
    if name == "guidedbp":
        return GuidedBackprop(model).attribute(x, target=target)
    with seeded(x.device):
        if name == "smoothgrad":
            return NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=s["smoothgrad_samples"],
                                                          nt_samples_batch_size=max(1, x.shape[0]),
                                                          stdevs=float(s["smoothgrad_noise"]), target=target, abs=False)
        base = torch.stack([baseline_images(b, x[:1])[0] for b in BASELINES])
        return GradientShap(model).attribute(x, baselines=base, n_samples=s["gradshap_samples"],
                                             stdevs=float(s["gradshap_noise"]), target=target)


def captum_explainer(name: str, settings: Mapping[str, Any]) -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """The explainer ``name`` with its settings (checked now): x (N, C, H, W) in [0, 1] ->
    (N, C, H, W) float32 in [0, 1], |attribution| min-max per image and channel."""
    s = check_settings(name, settings)

    def explain(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            a = attribute(model, x, name, s)
        return minmax_per_channel(a.detach().float().abs())

    explain.__name__ = f"captum_{name}"
    return explain
