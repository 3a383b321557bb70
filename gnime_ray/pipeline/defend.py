"""Fit a cell's defence: train GNIME (or load it from the cache) and build the defence that
releases maps. A trained GNIME is cached under a hash of its whole training configuration
(prepare's key, explainer, variant, lambda, widths, budget, seed), so the gnime, rnd and ond
cells of one configuration, and every gamma, share one training; gamma never retrains the NG.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from .. import echo
from ..config import CellSpec, Preset, content_hash, derive_seed
from ..defenses import Defense, GnimeConfig, GnimeDefense, GnimeModel, NoDefense, OndDefense, RndDefense, train_gnime
from ..metrics import perturbation_mse
from .cache import load_tensors, save_tensors
from .prepare import Prepared

Log = Callable[[str], None]


def gnime_config(spec: CellSpec, preset: Preset) -> GnimeConfig:
    return GnimeConfig(lam=float(spec.lam), ng_width=spec.width * preset.net_width, inv_width=preset.net_width,
                       epochs=preset.gnime_epochs, batch_size=preset.gnime_batch_size, lr=preset.gnime_lr,
                       seed=derive_seed(spec.study_seed, "gnime", spec.explainer, spec.variant), bf16=preset.bf16)


def gnime_path(prep: Prepared, spec: CellSpec, preset: Preset) -> Path:
    key = content_hash({"prepare": prep.key, "explainer": spec.explainer, "variant": spec.variant,
                        "explain_batch_size": preset.explain_batch_size, "gnime": asdict(gnime_config(spec, preset))})
    return prep.cache_path.parent.parent / "gnime" / f"{spec.dataset}-{spec.explainer}-{key}.pt"


def train_or_load_gnime(prep: Prepared, spec: CellSpec, preset: Preset, device: torch.device,
                        log: Log = echo) -> GnimeModel:
    path = gnime_path(prep, spec, preset)
    if path.exists():
        log(f"gnime: loaded from cache {path}")
        return GnimeModel.from_state(load_tensors(path), device)
    cfg = gnime_config(spec, preset)
    t = prep.split.target
    log(f"gnime: training on {t.numel()} target-half images ({spec.explainer}, lambda {cfg.lam:g}, NG width "
        f"{cfg.ng_width:g}, {cfg.epochs} epochs of {min(cfg.batch_size, t.numel())})")
    model = train_gnime(prep.maps[(spec.explainer, spec.variant)][t], prep.logits[t], prep.images(t), cfg,
                        device=device, log=log, log_every=max(1, cfg.epochs // 10))
    save_tensors(path, model.state())
    return model


def fit_defense(prep: Prepared, spec: CellSpec, preset: Preset, device: torch.device, log: Log = echo,
                gnime: GnimeModel | None = None) -> tuple[Defense, float]:
    """The cell's defence and GNIME's measured perturbation MSE on the evaluation split (0 for
    none). ``gnime``: an already trained GNIME of this cell's configuration (else cached/trained)."""
    if not spec.uses_gnime:
        return NoDefense(), 0.0
    model = gnime if gnime is not None else train_or_load_gnime(prep, spec, preset, device, log)
    gnime = GnimeDefense(model, spec.gamma)
    ev = prep.split.eval
    e = prep.maps[(spec.explainer, spec.variant)][ev]
    matched = perturbation_mse(e, gnime.release(e, prep.logits[ev], prep.images(ev), seed=0)).mean().item()
    if spec.defense == "gnime":
        return gnime, matched
    if spec.defense == "rnd":
        return RndDefense(matched), matched
    return OndDefense(model, matched, steps=preset.ond_steps), matched
