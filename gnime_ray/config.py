"""Run presets: the budgets of every training, validated, and their overrides (``--set``).

Every knob that changes a number lives here, as a frozen dataclass that validates itself
in ``__post_init__`` and raises ``ValueError`` naming the field. Four presets:

- ``paper``: the release's budgets (the release's code, docs/fidelity.md): classifiers at most 100 epochs,
  batch 256, early-stopping patience 10.
- ``quick``: the CPU budget measured to land real MNIST (mnist5k) at lambda 100 near the paper's
  operating point (docs/results.md): classifiers at half width, NG, INV and attackers at 1/8,
  GNIME 3,000 steps of 256 at lr 3e-4 (about 8 minutes per GNIME on 2 cores).
- ``demo``: ``make demo``'s budget, the quickstart (two search trials) in about five and a half
  minutes on 2 cores: classifiers at 1/4 width for 3 epochs (f about 0.85 accurate on mnist5k, not
  the paper's 0.99), NG, INV and attackers at 1/16, GNIME 150 steps of 128 at lr 1e-3, attackers 3
  epochs. Far from the paper's operating point: it shows the method and the study's statistics, not
  the paper's numbers.
- ``smoke``: tests; tiny data and narrow networks, seconds.

Deviation from the release: the classifiers early-stop on a validation slice held out of the
target half (the release's choice of validation data is not documented), never on the
evaluation split.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

from . import GnimeRayError


# preset fields added after studies were recorded, which cannot have changed a number of a study recorded
# without them (study/record.py check_identity accepts such a record): Captum's settings (no study before
# them computed a Captum map), and compile (a study recorded before it trained eager, which a resume keeps:
# study/opening.py recall_study)
LATER_PRESET_FIELDS = ("ig_steps", "attribution_baseline", "smoothgrad_samples", "smoothgrad_noise", "gradshap_samples",
                       "gradshap_noise", "compile")


def check_field(cond: bool, field: str, expected: str, value: Any) -> None:
    if not cond:
        raise ValueError(f"{field} must be {expected}, got {value!r}")


def _compile_setting(value: Any) -> bool:
    return isinstance(value, str) and (value in ("auto", "never", "always")
                                       or (value.startswith("images>=") and value[8:].isdigit()))


def is_number(value: Any) -> bool:
    """A finite real number (int or float, not bool): inf and nan are refused everywhere a knob is a number."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_finite(value: Any) -> bool:
    return is_number(value) and value > 0


def is_count(value: Any, low: int) -> bool:
    """An int (not bool) of at least ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


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
    # share of the evaluation split kept as the test images (data/splits.py): every reported number is
    # measured on them; the rest, the selection images, is all a search or a choice may read
    test_fraction: float = 0.5
    # images per explainer call; the paper Grad-CAM variant depends on it (release quirk)
    explain_batch_size: int = 256
    # images per batch where nothing is trained (releasing maps, validating and evaluating the
    # attackers): bounds the memory of those passes; the numbers do not depend on it beyond float
    # rounding (a split smaller than it is one batch)
    eval_batch_size: int = 512
    # use only the first max_images images of the dataset (None = all); for tests
    max_images: Optional[int] = None
    # width multiplier of INV, the attackers and PredMI (1 = the release); the NG's width is a
    # cell's ``width`` knob times this
    net_width: float = 1.0
    # GNIME (release: 500 epochs of N // 1024 batches of 1024 each, Adam 1e-4, eps 1e-7; defenses/gnime.py)
    gnime_epochs: int = 500
    gnime_batch_size: int = 1024
    gnime_lr: float = 1e-4
    # steps per GNIME epoch: None = N // batch size (the release's training scripts), or a count (1: one
    # batch per epoch, a reading of the paper's Algorithm 1)
    gnime_steps_per_epoch: Optional[int] = None
    # how INV is fed: 'paper' (as the release: the noisy map in [0, 1], the clean one standardised) or
    # 'one-scale' (both standardised)
    gnime_variant: str = "paper"
    # attackers (release: MSE, Adam 1e-4, <= 300 epochs, patience 10)
    attack_epochs: int = 300
    attack_batch_size: int = 128
    attack_patience: int = 10
    attack_lr: float = 1e-4
    # 'uniform': every attacker trains alike (Adam's default betas, attack_batch_size); 'release': as the
    # release's eval scripts ran them, ExpMI against GNIME with default betas and batch 128, ExpMI without
    # defence, against RND (and OND, not in the release) and PredMI with beta1 0.5 and batch 256 (attacks/)
    attack_optimiser: str = "uniform"
    # OND: PGD steps (not given by the paper)
    ond_steps: int = 20
    # bf16 autocast in the GNIME step (CPU and GPU)
    bf16: bool = False
    # Captum's attribution methods (explain/captum_methods.py): Integrated Gradients' steps, the baseline
    # of IG and DeepLIFT (black: zeros, white: ones), SmoothGrad's and GradientSHAP's samples and noise
    # (standard deviations in the images' [0, 1] units)
    ig_steps: int = 32
    attribution_baseline: str = "black"
    smoothgrad_samples: int = 16
    smoothgrad_noise: float = 0.15
    gradshap_samples: int = 16
    gradshap_noise: float = 0.1
    # memory format of the networks and batches in training: auto (the fastest, measured per machine in
    # gnime_ray/models/training_format.py), channels_last or contiguous; it changes float rounding only
    memory_format: str = "auto"
    # torch.compile for the U-Nets a study trains (GNIME's NG and INV, the attackers): auto (decided once
    # per study by measurement, gnime_ray/models/training_format.py), never, always, or images>=N (the decision:
    # compiled where a network's training budget reaches N images); it changes float rounding only
    compile: str = "auto"
    # CelebA's balanced subset (official layout): identities with at least this many images, this
    # many identities, the seed of the selection rule (gnime_ray/data/celeba.py)
    celeba_identities: int = 1000
    celeba_images_per_identity: int = 30
    celeba_selection_seed: int = 0
    # attribute classifiers (paper Fig. 6; ResNet-50, Adam; the paper gives no budget): CelebA
    # images disjoint from the subset, epochs, batch size, learning rate
    attribute_images: int = 20000
    attribute_epochs: int = 10
    attribute_batch_size: int = 64
    attribute_lr: float = 1e-4

    def __post_init__(self) -> None:
        check_field(isinstance(self.name, str) and bool(self.name), "name", "a non-empty string", self.name)
        for f in ("classifier_epochs", "classifier_batch_size", "classifier_patience", "explain_batch_size", "eval_batch_size",
                  "gnime_epochs", "gnime_batch_size", "attack_epochs", "attack_batch_size", "attack_patience",
                  "ond_steps", "celeba_identities", "celeba_images_per_identity", "attribute_images",
                  "attribute_epochs", "attribute_batch_size", "ig_steps", "smoothgrad_samples", "gradshap_samples"):
            v = getattr(self, f)
            check_field(isinstance(v, int) and not isinstance(v, bool) and v >= 1, f, "an integer >= 1", v)
        for f in ("classifier_lr", "classifier_width", "net_width", "gnime_lr", "attack_lr", "attribute_lr"):
            check_field(positive_finite(getattr(self, f)), f, "a finite number > 0", getattr(self, f))
        check_field(isinstance(self.bf16, bool), "bf16", "true or false", self.bf16)
        for f in ("smoothgrad_noise", "gradshap_noise"):
            v = getattr(self, f)
            check_field(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0, f,
                        "a finite number >= 0", v)
        check_field(self.attribution_baseline in ("black", "white"), "attribution_baseline", "black or white",
                    self.attribution_baseline)
        check_field(self.gnime_variant in ("paper", "one-scale"), "gnime_variant", "paper or one-scale", self.gnime_variant)
        check_field(self.attack_optimiser in ("uniform", "release"), "attack_optimiser", "uniform or release",
               self.attack_optimiser)
        check_field(self.gnime_steps_per_epoch is None or (isinstance(self.gnime_steps_per_epoch, int)
                                                      and not isinstance(self.gnime_steps_per_epoch, bool)
                                                      and self.gnime_steps_per_epoch >= 1),
               "gnime_steps_per_epoch", "none (N // batch, the release) or an integer >= 1", self.gnime_steps_per_epoch)
        check_field(self.memory_format in ("auto", "channels_last", "contiguous"), "memory_format",
               "auto, channels_last or contiguous", self.memory_format)
        check_field(_compile_setting(self.compile), "compile", "auto, never, always or images>=N (N an integer)",
                    self.compile)
        check_field(isinstance(self.celeba_selection_seed, int) and self.celeba_selection_seed >= 0,
               "celeba_selection_seed", "an integer >= 0", self.celeba_selection_seed)
        check_field(is_number(self.val_fraction) and 0 < self.val_fraction < 0.5, "val_fraction", "in (0, 0.5)", self.val_fraction)
        check_field(is_number(self.test_fraction) and 0 < self.test_fraction < 1, "test_fraction",
               "in (0, 1) (the share of the evaluation split kept as test images)", self.test_fraction)
        if self.max_images is not None:
            check_field(isinstance(self.max_images, int) and self.max_images >= 40, "max_images",
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

    def data_options(self) -> dict:
        """The fields that select data (passed to the dataset loaders)."""
        return {k: v for k, v in self.to_dict().items() if k.startswith("celeba_")}


PRESETS: dict[str, Preset] = {
    "paper": Preset(name="paper"),
    # quick: GNIME's budget measured on real MNIST (mnist5k) at lambda 100 with benchmarks/operating_point.py
    # (docs/results.md): 3,000 steps of 256 at lr 3e-4 reach 1.8x the paper's LRP
    # perturbation with utility 0.92 (the paper's 0.93), declining steadily; lr 1e-3 oscillates, lr 1e-4 with
    # the release's batch of 1024 is still at 2.2x after 2,100 steps (0.9 s a step here)
    "quick": Preset(name="quick", classifier_epochs=30, classifier_batch_size=32, classifier_patience=8,
                    classifier_width=0.5, net_width=0.125, gnime_epochs=3000, gnime_batch_size=256, gnime_lr=3e-4,
                    gnime_steps_per_epoch=1,
                    attack_epochs=20, attack_batch_size=32, attack_patience=4, attack_lr=1e-3, ond_steps=10,
                    attribute_images=2000, attribute_epochs=3),
    # demo: `make demo`'s budget (module docstring), measured with studies/quickstart.py --preset demo
    # --num-samples 2 --front-points 1 to finish within ten minutes on two CPU cores with the set-up (README)
    "demo": Preset(name="demo", classifier_epochs=3, classifier_batch_size=64, classifier_patience=3,
                   classifier_width=0.25, net_width=0.0625, explain_batch_size=512, gnime_epochs=150,
                   gnime_batch_size=128, gnime_lr=1e-3, gnime_steps_per_epoch=1, attack_epochs=3,
                   attack_batch_size=64, attack_patience=2, attack_lr=1e-3, ond_steps=5, attribute_images=2000,
                   attribute_epochs=1),
    "smoke": Preset(name="smoke", classifier_epochs=2, classifier_batch_size=32, classifier_patience=1,
                    classifier_width=0.125, max_images=120, explain_batch_size=64, net_width=0.0625,
                    gnime_epochs=3, gnime_batch_size=32, gnime_steps_per_epoch=1, attack_epochs=2, attack_batch_size=32,
                    attack_patience=1, ond_steps=2, celeba_identities=6, celeba_images_per_identity=8,
                    attribute_images=16, attribute_epochs=1, attribute_batch_size=8),
}

# The release's per-dataset budgets of the paper preset: batch 128 for the CelebA classifier and
# GNIME (the release's code, docs/fidelity.md), and for ImageNet-100 (same network family; the paper is silent).
# Evaluation batches of 64 keep a pass of CelebA's full-width networks (a 128-filter conv at 128x128
# is 0.5 GB of activations per 64 images) inside a 0.25 GPU fraction.
PAPER_DATASET_BUDGETS: dict[str, dict[str, Any]] = {
    "celeba": {"classifier_batch_size": 128, "gnime_batch_size": 128, "eval_batch_size": 64},
    "imagenet100": {"classifier_batch_size": 128, "gnime_batch_size": 128, "eval_batch_size": 64},
}


def get_preset(name: str, dataset: Optional[str] = None, **overrides: Any) -> Preset:
    """The named preset, with the paper's budgets for ``dataset`` (paper preset only) and then
    ``overrides`` applied; a bad name raises GnimeRayError."""
    if name not in PRESETS:
        raise GnimeRayError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    if name == "paper" and dataset in PAPER_DATASET_BUDGETS:
        overrides = {**PAPER_DATASET_BUDGETS[dataset], **overrides}
    try:
        return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
    except ValueError as exc:
        raise GnimeRayError(f"preset {name!r}: {exc}") from None


def preset_overrides(preset: Preset, dataset: Optional[str] = None) -> dict[str, Any]:
    """The fields in which ``preset`` differs from its named preset (with the paper's budgets for
    ``dataset``): what ``--set`` changed."""
    base = get_preset(preset.name, dataset).to_dict()
    return {k: v for k, v in preset.to_dict().items() if base.get(k) != v}


def preset_from_dict(fields: dict[str, Any]) -> Preset:
    """A Preset from ``Preset.to_dict()`` (as a row's config records it), validated; unknown fields
    (a newer version's) raise GnimeRayError."""
    known = {f.name for f in dataclasses.fields(Preset)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise GnimeRayError(f"preset fields {', '.join(unknown)} are unknown to this version of gnime_ray")
    return Preset(**fields)


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
            elif "bool" in kind:
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                out[key] = raw.lower() in ("true", "1")
            elif "int" in kind:
                out[key] = int(raw)
            elif "float" in kind:
                out[key] = float(raw)
            else:
                out[key] = raw
        except ValueError:
            raise GnimeRayError(f"--set {key}: expected a {kind.replace('Optional[', '').rstrip(']')}, got {raw!r}") from None
    return out
