"""Run presets and validated run specifications.

Every knob that changes a number lives here, as a frozen dataclass that validates itself
in ``__post_init__`` and raises ``ValueError`` naming the field. Three presets:

- ``paper``: the release's budgets (official-code-notes.md): classifiers at most 100 epochs,
  batch 256, early-stopping patience 10.
- ``quick``: a CPU demo on digits, minutes on a laptop.
- ``smoke``: tests; tiny data and narrow networks, seconds.

Deviation from the release: the classifiers early-stop on a validation slice held out of the
target half (the release's choice of validation data is not documented), never on the
evaluation split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Optional

from . import GnimeRayError


def _check(cond: bool, field: str, expected: str, value: Any) -> None:
    if not cond:
        raise ValueError(f"{field} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class Preset:
    """Training budgets. Field names are accepted as ``--set FIELD=VALUE`` on the CLI."""

    name: str
    # target f and evaluation f_E (release: Adam 1e-4, betas 0.5/0.999, batch 256, <=100 epochs, patience 10)
    classifier_epochs: int = 100
    classifier_batch_size: int = 256
    classifier_patience: int = 10
    classifier_lr: float = 1e-4
    classifier_width: float = 1.0
    # fraction of the target half held out to early-stop the classifiers, and of the
    # attack-train split held out to early-stop the attackers
    val_fraction: float = 0.1
    # images per explainer call; the paper Grad-CAM variant depends on it (release quirk)
    explain_batch_size: int = 256
    # use only the first max_images images of the dataset (None = all); for tests
    max_images: Optional[int] = None

    def __post_init__(self) -> None:
        _check(isinstance(self.name, str) and bool(self.name), "name", "a non-empty string", self.name)
        for f in ("classifier_epochs", "classifier_batch_size", "classifier_patience", "explain_batch_size"):
            v = getattr(self, f)
            _check(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f, "an integer >= 1", v)
        _check(self.classifier_lr > 0, "classifier_lr", "> 0", self.classifier_lr)
        _check(self.classifier_width > 0, "classifier_width", "> 0", self.classifier_width)
        _check(0 < self.val_fraction < 0.5, "val_fraction", "in (0, 0.5)", self.val_fraction)
        if self.max_images is not None:
            _check(isinstance(self.max_images, int) and self.max_images >= 40, "max_images",
                   "None or an integer >= 40", self.max_images)

    def replace(self, **overrides: Any) -> "Preset":
        """A copy with some fields changed (validated); unknown fields raise ValueError."""
        known = {f.name: f for f in dataclasses.fields(self)}
        for key in overrides:
            if key not in known or key == "name":
                raise ValueError(f"unknown preset field {key!r}; expected one of "
                                 f"{', '.join(sorted(k for k in known if k != 'name'))}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, Preset] = {
    "paper": Preset(name="paper"),
    "quick": Preset(name="quick", classifier_epochs=40, classifier_batch_size=64, classifier_patience=6),
    "smoke": Preset(name="smoke", classifier_epochs=2, classifier_batch_size=32, classifier_patience=1,
                    classifier_width=0.125, max_images=120, explain_batch_size=64),
}


def get_preset(name: str, **overrides: Any) -> Preset:
    """The named preset, with ``overrides`` applied; a bad name raises GnimeRayError."""
    if name not in PRESETS:
        raise GnimeRayError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    try:
        return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
    except ValueError as exc:
        raise GnimeRayError(f"preset {name!r}: {exc}") from None


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Parse ``FIELD=VALUE`` strings into typed overrides for :class:`Preset`."""
    types = {f.name: f.type for f in dataclasses.fields(Preset)}
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise GnimeRayError(f"--set expects FIELD=VALUE, got {pair!r}")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if key not in types or key == "name":
            raise GnimeRayError(f"--set: unknown preset field {key!r}; expected one of "
                                f"{', '.join(sorted(k for k in types if k != 'name'))}")
        kind = str(types[key])
        try:
            if raw.lower() == "none" and "Optional" in kind:
                out[key] = None
            elif "int" in kind:
                out[key] = int(raw)
            elif "float" in kind:
                out[key] = float(raw)
            else:
                out[key] = raw
        except ValueError:
            raise GnimeRayError(f"--set {key}: expected a number, got {raw!r}") from None
    return out


def content_hash(obj: Any, length: int = 16) -> str:
    """A stable hex digest of a JSON-serialisable object (keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def derive_seed(seed: int, *key: Any) -> int:
    """A per-purpose seed derived from a study seed and a key, stable across runs and machines."""
    return int(content_hash([seed, *key], length=8), 16) & 0x7FFFFFFF
