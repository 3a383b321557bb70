"""One cell of the Table 1 matrix, end to end, without Ray: prepare (cached), the defence
(GNIME cached), released maps of the attack-train and evaluation splits, one attacker, metrics.

The returned row holds the cell's configuration, every metric, the artifacts it used and
provenance; see results/_README.md for the columns. A cell whose metrics are not finite (a
diverged attacker) raises TrainingDiverged instead of returning a row.
"""

from __future__ import annotations

import math
import platform
import time
from datetime import datetime, timezone
from typing import Callable, Optional

import torch

from .. import TrainingDiverged, __version__, echo
from ..attacks import build_attacker, reconstruct, train_attacker
from ..config import CellSpec, Preset, derive_seed
from ..defenses import GnimeModel
from ..data.registry import to_float
from ..metrics import deepsim, feature_distance, mse, perturbation_mse, psnr, ssim, tca, utility_deepsim
from .attributes import reconstruction_f1
from .defend import fit_defense, gnime_ref
from .device import pick_device
from .prepare import Prepared, prepare, prepare_aux

Log = Callable[[str], None]


def run_cell(spec: CellSpec, preset: Preset, *, cache_dir: Optional[str] = None, data_root: Optional[str] = None,
             device: Optional[str] = None, study: str = "cells", trial: str = "", log: Log = echo,
             prep: Optional[Prepared] = None, gnime: Optional[GnimeModel] = None, out: Optional[str] = None) -> dict:
    """Run one cell and return its row. ``prep`` and ``gnime`` pass in already prepared inputs
    (the matrix and the Ray engine share them between cells); ``out``: the results root whose
    artifacts are used and filled (when ``prep`` is not given)."""
    t0 = time.perf_counter()
    dev = pick_device(device)
    explainers = [] if spec.attack == "predmi" else [spec.explainer]
    if prep is None:
        prep = prepare(spec.dataset, preset, spec.study_seed, explainers=explainers, variant=spec.variant,
                       cache_dir=cache_dir, data_root=data_root, device=device, log=log, out=out)
    split = prep.split
    key = (spec.explainer, spec.variant)
    x = {k: prep.images(getattr(split, k)) for k in ("attack_train", "attack_val", "eval")}
    y = {k: prep.logits[getattr(split, k)] for k in x}
    clean = {k: prep.maps[key][getattr(split, k)] for k in x} if spec.attack == "expmi" else None
    if spec.aux_dataset != "same":  # the attacker trains on what f releases for its own images
        aux = prepare_aux(prep, spec.aux_dataset, preset, spec.study_seed, explainers=explainers,
                          variant=spec.variant, cache_dir=cache_dir, data_root=data_root, device=device, log=log)
        for k, idx in (("attack_train", aux.train), ("attack_val", aux.val)):
            x[k], y[k] = to_float(aux.dataset.images[idx]), aux.logits[idx]
            if clean is not None:
                clean[k] = aux.maps[key][idx]
    if spec.attack == "expmi":
        defense, matched = fit_defense(prep, spec, preset, dev, log, gnime=gnime)
        released = {k: defense.release(clean[k], y[k], x[k], seed=derive_seed(spec.study_seed, "release", spec.key(),
                                                                              spec.seed, k)) for k in x}
        map_shape = tuple(clean["eval"].shape[1:])
    else:
        matched, released, map_shape = 0.0, {k: None for k in x}, None
    attack_seed = derive_seed(spec.study_seed, "attack", spec.key(), spec.seed)
    torch.manual_seed(attack_seed)
    attacker = build_attacker(spec.attack, map_shape, prep.dataset.image_shape, prep.dataset.num_classes,
                              width=preset.net_width)
    log(f"cell {spec.key()} seed {spec.seed}: training {spec.attack} on {x['attack_train'].shape[0]} released maps")
    hist = train_attacker(spec.attack, attacker, released["attack_train"], y["attack_train"], x["attack_train"],
                          released["attack_val"], y["attack_val"], x["attack_val"], epochs=preset.attack_epochs,
                          batch_size=preset.attack_batch_size, patience=preset.attack_patience, lr=preset.attack_lr,
                          seed=attack_seed, device=dev, log=log)
    inputs = [released["eval"], y["eval"]] if spec.attack == "expmi" else [y["eval"]]
    rec = reconstruct(attacker, [t.to(dev) for t in inputs]).cpu()
    truth = x["eval"]
    target, eval_model = prep.target, prep.eval_model
    with torch.no_grad():
        f_rec = target.features(rec.to(dev)).cpu()
        f_true = target.features(truth.to(dev)).cpu()
    if clean is not None:
        pert = perturbation_mse(clean["eval"], released["eval"]).mean().item()
        util = utility_deepsim(target, truth.to(dev), clean["eval"].to(dev), released["eval"].to(dev))
    else:
        pert, util = float("nan"), float("nan")
    row = {
        "study": study, "trial": trial, "cell": spec.key(),
        "dataset": spec.dataset, "aux_dataset": spec.aux_dataset, "explainer": spec.explainer,
        "variant": spec.variant, "defense": spec.defense, "attack": spec.attack,
        "lambda": float(spec.lam), "ng_width": float(spec.width),
        "gamma": float("nan") if spec.gamma is None else float(spec.gamma),
        "study_seed": spec.study_seed, "attack_seed": spec.seed, "preset": preset.name,
        "mse": mse(rec, truth).mean().item(), "ssim": ssim(rec, truth).mean().item(),
        "tca": tca(eval_model, rec.to(dev), prep.dataset.labels[split.eval]),
        "deepsim": deepsim(f_rec, f_true), "feature_distance": feature_distance(f_rec, f_true),
        "psnr": psnr(rec, truth).mean().item(),
        "recl_acc": tca(target, rec.to(dev), prep.dataset.labels[split.eval]),
        "perturbation_mse": pert, "matched_mse": matched, "utility_deepsim": util,
        "n_eval": int(truth.shape[0]), "attack_epochs_run": len(hist["val_mse"]),
        "classifiers_artifact": prep.classifiers_ref(),
        "gnime_artifact": gnime_ref(prep, spec, preset) if spec.attack == "expmi" and spec.uses_gnime else "",
        "code_version": __version__, "torch_version": torch.__version__, "device": str(dev),
        "host": platform.node(), "wall_seconds": time.perf_counter() - t0,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    bad = [m for m in ("mse", "ssim", "tca", "deepsim", "psnr") if not math.isfinite(row[m])]
    if bad:
        raise TrainingDiverged(f"cell {spec.key()} seed {spec.seed}: non-finite {', '.join(bad)} "
                               f"(the attacker diverged); no row written")
    row.update(reconstruction_f1(prep.dataset, split.eval, rec, preset, cache_dir, dev, log))
    return row
