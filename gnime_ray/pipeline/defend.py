"""Fit a cell's defence: train GNIME (or load it from the cache) and build the defence that
releases maps. A trained GNIME is cached under a hash of its whole training configuration
(prepare's key, explainer, variant, lambda, widths, budget, seed), so the gnime, rnd and ond
cells of one configuration, and every gamma, share one training; gamma never retrains the NG.
With a results root, the weights are also an artifact there (store/artifacts.py): a node or a
laptop with a fresh cache fetches them instead of training again.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from .. import echo
from ..cachedir import file_lock
from ..cellspec import CellSpec, content_hash, derive_seed
from ..config import Preset
from ..data.host_rows import HostRows
from ..defenses import (
    Defense,
    GnimeConfig,
    GnimeDefense,
    GnimeModel,
    NoDefense,
    OndDefense,
    RndDefense,
    train_gnime,
)
from ..metrics import perturbation_mse
from ..models.training_format import Speed, choose
from .cache import (
    ArrayCorrupt,
    array_ready,
    load_array,
    load_tensors,
    remove_array,
    save_tensors,
    write_array,
)
from .match import UtilityMatch, match_utility
from .prepare import Prepared

Log = Callable[[str], None]


def gnime_config(spec: CellSpec, preset: Preset) -> GnimeConfig:
    return GnimeConfig(lam=float(spec.lam), ng_width=spec.width * preset.net_width, inv_width=preset.net_width,
                       epochs=preset.gnime_epochs, batch_size=preset.gnime_batch_size, lr=preset.gnime_lr,
                       seed=derive_seed(spec.study_seed, "gnime", spec.explainer, spec.variant,
                                        *([spec.gnime_seed] if spec.gnime_seed else [])), bf16=preset.bf16,
                       steps_per_epoch=preset.gnime_steps_per_epoch, variant=preset.gnime_variant)


def gnime_path(prep: Prepared, spec: CellSpec, preset: Preset) -> Path:
    key = content_hash({"prepare": prep.key, "explainer": spec.explainer, "variant": spec.variant,
                        "explain_batch_size": preset.explain_batch_size, "gnime": asdict(gnime_config(spec, preset))})
    return prep.cache_path.parent.parent / "gnime" / f"{spec.dataset}-{spec.explainer}-{key}.pt"


def gnime_ref(prep: Prepared, spec: CellSpec, preset: Preset) -> str:
    """The artifact path of the cell's GNIME under the results root ('' without one)."""
    return prep.artifacts.ref(gnime_path(prep, spec, preset)) if prep.artifacts is not None else ""


def load_trained_gnime(prep: Prepared, spec: CellSpec, preset: Preset) -> Optional[dict[str, Any]]:
    """The cached state of the cell's GNIME (fetched from the artifact store when only it has
    it; published there when only the cache has it), or None when it was never trained."""
    path = gnime_path(prep, spec, preset)
    if prep.artifacts is not None:
        prep.artifacts.fetch(path)
    if not path.exists():
        return None
    if prep.artifacts is not None:
        prep.artifacts.publish(path)
    return load_tensors(path)


def save_trained_gnime(prep: Prepared, spec: CellSpec, preset: Preset, state: dict[str, Any]) -> None:
    path = gnime_path(prep, spec, preset)
    save_tensors(path, state)
    if prep.artifacts is not None:
        prep.artifacts.publish(path)


def _gnime_batches(cfg: GnimeConfig, n: int) -> tuple[int, int]:
    """(batch size, steps per epoch) of a GNIME training on ``n`` target-half images."""
    b = min(cfg.batch_size, n)
    return b, cfg.steps_per_epoch or max(1, n // b)


def gnime_speed(prep: Prepared, spec: CellSpec, preset: Preset, device: torch.device) -> Speed:
    """The settings ``spec``'s GNIME trains with: the study's memory format and precision, compiled
    when its training budget (epochs x steps x batch) reaches the study's compile threshold."""
    cfg = gnime_config(spec, preset)
    b, steps = _gnime_batches(cfg, prep.split.target.numel())
    return choose(device, preset.memory_format, cfg.bf16, shape=prep.map_shape(spec.explainer, spec.variant),
                  width=preset.net_width, cache_dir=str(prep.cache_root), compile=preset.compile,
                  images=cfg.epochs * steps * b)


def train_or_load_gnime(prep: Prepared, spec: CellSpec, preset: Preset, device: torch.device | str,
                        log: Log = echo, *, on_epoch: Optional[Callable[[int, dict, Callable[[], dict]], None]] = None,
                        resume: Optional[dict[str, Any]] = None, speed: Optional[Speed] = None) -> GnimeModel:
    """The GNIME of ``spec``'s training configuration (lambda, NG width, explainer, GNIME seed, the
    preset's budget): loaded when it was trained before (cache or artifact store), else trained on
    the target half and saved (published to the artifact store). The one training path of both
    engines: the matrix calls it as it is; a Ray Tune trial (tune/trial.py) passes ``on_epoch``
    (its per-epoch report and checkpoint), ``resume`` (the training state of the checkpoint Tune
    restored, used only when a training runs) and ``speed`` (the study's decided settings; else
    chosen here). Raises TrainingDiverged when the losses turn non-finite (nothing is saved)."""
    state = load_trained_gnime(prep, spec, preset)
    if state is not None:
        log(f"gnime: loaded {gnime_path(prep, spec, preset).name} (lambda {spec.lam!r}, NG width {spec.width!r})")
        return GnimeModel.from_state(state, device)
    cfg = gnime_config(spec, preset)
    t = prep.split.target
    b, steps = _gnime_batches(cfg, t.numel())
    log(f"gnime: no trained GNIME for exactly lambda {cfg.lam!r}, NG width {spec.width!r} (cache or artifacts): "
        f"training on {t.numel()} target-half images ({spec.explainer}, variant {cfg.variant}, {cfg.epochs} epochs of "
        f"{steps} steps of {b})")
    speed = speed or gnime_speed(prep, spec, preset, device)
    log(f"gnime: speed settings {speed.describe()}")
    model = train_gnime(prep.map_rows((spec.explainer, spec.variant), t), prep.logit_rows(t), prep.image_rows(t), cfg,
                        device=device, log=log, log_every=max(1, cfg.epochs // 10), on_epoch=on_epoch, resume=resume,
                        speed=speed)
    save_trained_gnime(prep, spec, preset, model.state())
    return model


def released_file(prep: Prepared, spec: CellSpec, preset: Preset, split: str, rows: int) -> Path:
    """Where the node keeps what a deterministic defence (GNIME, OND: neither depends on the attack
    seed) releases for one split: ``CACHE/released/``, named by the trained GNIME, the defence, gamma,
    OND's steps, the split and the attacker's data. Shared by every attacker of the node (one copy in
    the page cache, OND's PGD run once instead of once per attack seed). A cache: safe to delete."""
    gnime = gnime_path(prep, spec, preset).name
    fields = {"gnime": gnime, "defense": spec.defense, "gamma": spec.gamma, "split": split, "rows": rows,
              "aux": spec.aux_dataset if split != "eval" else "same",  # eval: always the target's
              "ond_steps": preset.ond_steps if spec.defense == "ond" else None}
    if spec.match != "perturbation":  # OND at GNIME's utility (pipeline/match.py); older names unchanged
        fields["match"] = spec.match
    key = content_hash(fields)
    return prep.cache_root / "released" / f"{spec.defense}-{key}.npy"


def release_rows(defense: Defense, clean: HostRows, logits: HostRows, images: HostRows, seed: int,
                 path: Optional[Path] = None, batch_size: int = 512, shared: bool = True) -> HostRows:
    """What ``defense`` releases for the rows of a split, as rows to read batch by batch: the clean
    rows themselves without a defence (nothing copied), else float32 maps computed batch by batch
    (RND's noise from one generator seeded by ``seed``: the batches draw exactly what one call
    would) into the array file ``path`` (memory-mapped back; reused when it is there already; a
    ``shared`` file is computed by one process of the node while the others wait, a cell's own
    scratch file takes no lock), or into memory without a path."""
    if isinstance(defense, NoDefense):
        return clean
    gen = torch.Generator().manual_seed(seed)
    shape = (len(clean), *clean.row_shape)

    def fill(out) -> None:
        for pos in clean.chunks(batch_size):
            out[pos.numpy()] = defense.release(clean.take(pos), logits.take(pos), images.take(pos), gen).numpy()

    if path is None:
        out = np.empty(shape, dtype=np.float32)
        fill(out)
        return HostRows(torch.from_numpy(out))
    with file_lock(path) if shared else nullcontext():  # one attacker of the node computes a shared file
        if array_ready(path):
            try:
                return HostRows(load_array(path))
            except ArrayCorrupt:
                remove_array(path)
        write_array(path, shape, np.float32, fill)
        return HostRows(load_array(path))


def fit_defense(prep: Prepared, spec: CellSpec, preset: Preset, device: torch.device, log: Log = echo,
                gnime: GnimeModel | None = None) -> tuple[Defense, float, Optional[UtilityMatch]]:
    """The cell's defence, the noise size it releases at (GNIME's measured perturbation MSE on the
    evaluation split; for an rnd or ond cell matched on utility, the size found on the selection
    images: pipeline/match.py; 0 for none) and that utility match (None otherwise). ``gnime``: an
    already trained GNIME of this cell's configuration (else cached/trained)."""
    if not spec.uses_gnime:
        return NoDefense(), 0.0, None
    model = gnime if gnime is not None else train_or_load_gnime(prep, spec, preset, device, log)
    gnime = GnimeDefense(model, spec.gamma)
    ev = prep.split.eval
    clean = prep.map_rows((spec.explainer, spec.variant), ev)
    as_gnime = replace(spec, defense="gnime", aux_dataset="same")  # the same file as the gnime cell's eval release
    released = release_rows(gnime, clean, prep.logit_rows(ev), prep.image_rows(ev), seed=0,
                            path=released_file(prep, as_gnime, preset, "eval", len(clean)),
                            batch_size=preset.eval_batch_size)
    per_map = [perturbation_mse(clean.take(pos), released.take(pos)) for pos in clean.chunks(preset.eval_batch_size)]
    matched = torch.cat(per_map).mean().item()
    if spec.defense == "gnime":
        return gnime, matched, None
    match = None
    if spec.match != "perturbation":
        key = {"gnime_release": released_file(prep, as_gnime, preset, "eval", len(clean)).name, "defense": spec.defense,
               "match": spec.match, "ond_steps": preset.ond_steps, "select": prep.split.select.tolist(),
               "seed": derive_seed(spec.study_seed, "match", spec.key())}
        match = match_utility(prep, spec, preset, model, released, matched, key)
        log(f"{spec.defense} at GNIME's {spec.match} {match.target_utility:.4f} (selection images): noise MSE "
            f"{match.size:.5g} (GNIME's perturbation {matched:.5g}), utility {match.achieved_utility:.4f}"
            f"{'' if match.converged else ', NOT matched within the range'}")
        matched = match.size
    if spec.defense == "rnd":
        return RndDefense(matched), matched, match
    return OndDefense(model, matched, steps=preset.ond_steps), matched, match
