"""One cell of the Table 1 matrix, end to end, without Ray: prepare (cached), the defence
(GNIME cached), released maps of the attack-train and evaluation splits, one attacker, metrics.

The attacker is evaluated once on the whole evaluation split, and every metric is then taken
twice, over two disjoint sets of its images (data/splits.py): the test images (the row's plain
metric columns, what tables and figures report; the per-image lists and the figure sample are
of the test images too) and the selection images (the ``select_*`` columns, what a search chooses
on). DeePSiM and utility DeePSiM (exp(-||A - B||_F / N), the release's definition) are computed
on each set with its own N. The returned row holds the cell's configuration, every metric, the
artifacts it used and provenance; see results/_README.md for the columns. A cell whose metrics
are not finite (a diverged attacker) raises TrainingDiverged instead of returning a row.
"""

from __future__ import annotations

import json
import math
import platform
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .. import TrainingDiverged, __version__, echo
from ..attacks import attack_settings, build_attacker, train_attacker
from ..cellspec import CellSpec, derive_seed
from ..config import Preset, preset_overrides
from ..data.host_rows import HostRows
from ..defenses import GnimeModel
from ..metrics import (
    deepsim,
    deepsim_at,
    feature_distance,
    features,
    masked,
    mse,
    perturbation_mse,
    psnr,
    ssim,
    topk_agreement,
)
from ..paper import paper_eval_images
from ..provenance import code_commit
from ..models.training_format import Speed, choose
from ..store.rows import FIGURE_SAMPLE, SPLIT_METRICS
from .attributes import attribute_models_for, reconstruction_f1
from .cache import remove_array
from .defend import fit_defense, gnime_ref, gnime_speed, release_rows, released_file
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
    splits = ("attack_train", "attack_val", "eval")
    # rows of the memory-mapped arrays: nothing is copied here; batches are read as they are needed
    x = {k: prep.image_rows(getattr(split, k)) for k in splits}
    y = {k: prep.logit_rows(getattr(split, k)) for k in splits}
    clean = {k: prep.map_rows(key, getattr(split, k)) for k in splits} if spec.attack == "expmi" else None
    if spec.aux_dataset != "same":  # the attacker trains on what f releases for its own images
        aux = prepare_aux(prep, spec.aux_dataset, preset, spec.study_seed, explainers=explainers,
                          variant=spec.variant, cache_dir=cache_dir, data_root=data_root, device=device, log=log)
        for k, idx in (("attack_train", aux.train), ("attack_val", aux.val)):
            x[k], y[k] = HostRows(aux.dataset.images, idx), HostRows(aux.logits, idx)
            if clean is not None:
                clean[k] = HostRows(aux.maps[key], idx)
    scratch: list[Path] = []  # this cell's own released-map files (RND), removed when it ends
    try:
        if spec.attack == "expmi":
            defense, matched, match = fit_defense(prep, spec, preset, dev, log, gnime=gnime)
            released = {}
            for k in splits:
                if spec.defense in ("gnime", "ond"):  # deterministic: one file per node for every attack seed
                    path: Optional[Path] = released_file(prep, spec, preset, k, len(clean[k]))
                elif spec.defense == "rnd":
                    path = prep.cache_root / "released" / f"tmp-{uuid.uuid4().hex}.npy"
                    scratch.append(path)
                else:
                    path = None
                released[k] = release_rows(defense, clean[k], y[k], x[k], derive_seed(spec.study_seed, "release",
                                                                                     spec.key(), spec.seed, k), path,
                                           preset.eval_batch_size, shared=spec.defense != "rnd")
            map_shape = clean["eval"].row_shape
        else:
            matched, match, released, map_shape = 0.0, None, {k: None for k in splits}, None
        row = _attack_and_measure(spec, preset, prep, x, y, clean, released, map_shape, matched, dev, t0, study, trial,
                                  cache_dir, log)
        row["matching"] = match.to_json() if match is not None else ""
        return row
    finally:
        for path in scratch:
            remove_array(path)


def _attack_and_measure(spec: CellSpec, preset: Preset, prep: Prepared, x: dict, y: dict, clean: Optional[dict],
                        released: dict, map_shape, matched: float, dev: torch.device, t0: float, study: str,
                        trial: str, cache_dir: Optional[str], log: Log) -> dict:
    """Train the attacker on the released maps, evaluate it, and return the cell's row."""
    split = prep.split
    attack_seed = derive_seed(spec.study_seed, "attack", spec.key(), spec.seed)
    attacker = build_attacker(spec.attack, map_shape, prep.dataset.image_shape, prep.dataset.num_classes,
                              width=preset.net_width, generator=torch.Generator().manual_seed(attack_seed))
    speed = choose(dev, preset.memory_format, False, shape=map_shape or prep.dataset.image_shape,
                   width=preset.net_width, cache_dir=cache_dir, compile=preset.compile,
                   images=preset.attack_epochs * len(x["attack_train"]))
    log(f"cell {spec.key()} seed {spec.seed}: training {spec.attack} on {len(x['attack_train'])} released maps "
        f"({speed.describe()})")
    betas, batch_size = attack_settings(preset.attack_optimiser, spec.defense, preset.attack_batch_size)
    hist = train_attacker(spec.attack, attacker, released["attack_train"], y["attack_train"], x["attack_train"],
                          released["attack_val"], y["attack_val"], x["attack_val"], epochs=preset.attack_epochs,
                          batch_size=batch_size, patience=preset.attack_patience, lr=preset.attack_lr,
                          seed=attack_seed, device=dev, log=log, eval_batch_size=preset.eval_batch_size, speed=speed,
                          betas=betas)
    inputs = [released["eval"], y["eval"]] if spec.attack == "expmi" else [y["eval"]]
    attributes = attribute_models_for(prep.dataset, preset, cache_dir, log)
    sample = split.test[figure_positions(len(split.test), spec.study_seed)]  # positions in eval
    ev = evaluate(attacker, inputs, x["eval"], prep, clean["eval"] if clean is not None else None,
                  released["eval"], attributes, dev, preset.eval_batch_size, sample=sample,
                  key=(spec.explainer, spec.variant))
    ev["sample_positions"] = torch.searchsorted(split.test, ev["sample_positions"])  # positions in test
    labels = prep.dataset.labels[split.eval]
    n_ref = paper_eval_images(spec.dataset)
    test, select = split_metrics(ev, split.test, labels, n_ref), split_metrics(ev, split.select, labels, n_ref)
    test_ev = {k: ev[k][split.test] for k in ("ssim", "perturbation") if k in ev}
    row = {
        "study": study, "trial": trial, "cell": spec.key(),
        "dataset": spec.dataset, "aux_dataset": spec.aux_dataset, "explainer": spec.explainer,
        "variant": spec.variant, "defense": spec.defense, "attack": spec.attack,
        "gnime_variant": preset.gnime_variant if spec.attack == "expmi" and spec.uses_gnime else "",
        "lambda": float(spec.lam), "ng_width": float(spec.width),
        "gamma": float("nan") if spec.gamma is None else float(spec.gamma),
        "study_seed": spec.study_seed, "attack_seed": spec.seed, "gnime_seed": spec.gnime_seed,
        "preset": preset.name, "calibration": "",  # the matrix's lambda calibration fills it (pipeline/calibrate.py)
        "split": "test",  # the plain metric columns are the test images'; select_* the selection images'
        **{m: test[m] for m in SPLIT_METRICS}, **{f"select_{m}": select[m] for m in SPLIT_METRICS},
        "matched_mse": matched,
        "matched_on": spec.match if spec.defense in ("rnd", "ond") else "",
        "matching": "",  # a utility match's search (pipeline/match.py), set by run_cell
        "n_eval": int(split.test.numel()), "n_select": int(split.select.numel()), "paper_n": n_ref,
        "attack_epochs_run": len(hist["val_mse"]),
        "classifiers_artifact": prep.classifiers_ref(),
        "gnime_artifact": gnime_ref(prep, spec, preset) if spec.attack == "expmi" and spec.uses_gnime else "",
        "config": cell_config(spec, preset, prep, dev, speed),
        "ssim_per_image": test_ev["ssim"].tolist(),
        "perturbation_per_map": test_ev["perturbation"].tolist() if clean is not None else [],
        "figure_sample": "",  # set where the row is written (store/rows.py), from FIGURE_SAMPLE below
        FIGURE_SAMPLE: {k[len("sample_"):]: v.numpy() for k, v in ev.items() if k.startswith("sample_")},
        "code_version": __version__, "code_commit": code_commit(), "torch_version": torch.__version__,
        "device": str(dev),
        "host": platform.node(), "wall_seconds": time.perf_counter() - t0,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    bad = [m for m in ("mse", "ssim", "tca", "deepsim", "psnr") for p in ("", "select_") if not math.isfinite(row[p + m])]
    if bad:
        raise TrainingDiverged(f"cell {spec.key()} seed {spec.seed}: non-finite {', '.join(sorted(set(bad)))} "
                               f"(the attacker diverged); no row written")
    pred = ev.get("attributes")
    row.update(reconstruction_f1(attributes, None if pred is None else pred[split.test], prep.dataset,
                                 split.eval[split.test]))
    return row


def split_metrics(ev: dict[str, torch.Tensor], positions: torch.Tensor, labels: torch.Tensor,
                  n_ref: Optional[int] = None) -> dict[str, float]:
    """The row's metrics over the evaluation images at ``positions`` (within the evaluation split)
    from ``evaluate``'s per-image values: means of the per-image MSE, SSIM and PSNR; f_E's (TCA)
    and f's (recl_acc) accuracy; DeePSiM and feature distance of those images' features (N = their
    number); with maps, the mean perturbation MSE and utility DeePSiM of Table 3 over them, and the
    mean top-k agreement of the released maps with the clean ones (metrics.py); both
    DeePSiMs also as the release's formula gives them on ``n_ref`` images (metrics.py ``deepsim_at``;
    NaN without ``n_ref``)."""
    nan = float("nan")
    at = {k: v[positions] for k, v in ev.items() if not k.startswith("sample_")}
    y = labels[positions]
    maps = "perturbation" in at
    out = {"mse": at["mse"].mean().item(), "ssim": at["ssim"].mean().item(), "psnr": at["psnr"].mean().item(),
           "tca": (at["pred_eval"] == y).float().mean().item(), "recl_acc": (at["pred_target"] == y).float().mean().item(),
           "deepsim": deepsim(at["f_rec"], at["f_true"]), "feature_distance": feature_distance(at["f_rec"], at["f_true"]),
           "perturbation_mse": at["perturbation"].mean().item() if maps else nan,
           "utility_deepsim": deepsim(at["u_clean"], at["u_released"]) if maps else nan,
           "utility_topk": at["u_topk"].mean().item() if "u_topk" in at else nan}
    out["deepsim_paper_n"] = deepsim_at(at["f_rec"], at["f_true"], n_ref) if n_ref else nan
    out["utility_deepsim_paper_n"] = deepsim_at(at["u_clean"], at["u_released"], n_ref) if n_ref and maps else nan
    return out


FIGURE_SAMPLE_SIZE = 8


def figure_positions(n_test: int, study_seed: int, k: int = FIGURE_SAMPLE_SIZE) -> torch.Tensor:
    """The test images every cell of a study keeps for figures: ``k`` positions among the
    ``n_test`` test images drawn by a generator seeded from the study seed (sorted), the same in
    every cell, so a figure shows one image under every defence."""
    gen = torch.Generator().manual_seed(derive_seed(study_seed, "figure-sample"))
    return torch.randperm(n_test, generator=gen)[:min(k, n_test)].sort().values


def cell_config(spec: CellSpec, preset: Preset, prep: Prepared, device: torch.device, speed: Speed) -> str:
    """The row's ``config`` column: everything needed to run the cell again (``gnime-ray
    reproduce``) as JSON: the cell, every preset field and which of them ``--set`` changed, the
    data's identity, prepare's key, the device, the torch thread count, the memory format and
    precision the attacker trained in and whether compiled (gnime_ray/models/training_format.py), the precision
    GNIME trained in (its preset's ``bf16``) and whether compiled (``gnime_speed``: the study's rule at its budget), the versions and the code's commit (provenance.py)."""
    return json.dumps({
        "cell": spec.to_dict(), "preset": preset.to_dict(), "overrides": preset_overrides(preset, spec.dataset),
        "data": {"dataset": spec.dataset, "images": len(prep.dataset), "fingerprint": prep.dataset.fingerprint(),
                 "prepare_key": prep.key, "eval_images": {"select": int(prep.split.select.numel()),
                                                          "test": int(prep.split.test.numel())}},
        "runtime": {"device": str(device), "threads": torch.get_num_threads(), "memory_format": speed.name,
                    "precision": "bf16 autocast" if speed.bf16 else "fp32", "compiled": speed.compiled,
                    "gnime_precision": ("bf16 autocast" if preset.bf16 else "fp32") if spec.defense == "gnime" else None,
                    "gnime_compiled": gnime_speed(prep, spec, preset, device).compiled if spec.defense == "gnime" else None,
                    "code_version": __version__, "code_commit": code_commit(),
                    "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
    }, sort_keys=True)


@torch.no_grad()
def reference_features(prep: Prepared, truth: HostRows, clean: Optional[HostRows], key: Optional[tuple[str, str]],
                       batch_size: int) -> dict[str, torch.Tensor]:
    """f's penultimate features of the evaluation images (``f_true``) and of x*e for their clean
    maps (``u_clean``, with ``clean``): what every cell of the split compares its reconstructions
    and released maps with. They depend on the prepared entry alone, so they are computed once
    per process and explainer and kept in ``prep.memo``, batch by batch as ``evaluate`` went
    before (the same chunks, so the same numbers)."""
    memo_key = ("eval-reference", key if clean is not None else None, batch_size)
    if memo_key not in prep.memo:
        target = prep.target.eval()
        parts: dict[str, list[torch.Tensor]] = {"f_true": [], "u_clean": []}
        for pos in truth.chunks(batch_size):
            x = truth.take(pos)
            parts["f_true"].append(features(target, x, batch_size))
            if clean is not None:
                parts["u_clean"].append(features(target, masked(x, clean.take(pos)), batch_size))
        prep.memo[memo_key] = {k: torch.cat(v) for k, v in parts.items() if v}
    return prep.memo[memo_key]


@torch.no_grad()
def evaluate(attacker: torch.nn.Module, inputs: list[HostRows], truth: HostRows, prep: Prepared,
             clean: Optional[HostRows], released: Optional[HostRows], attributes, device: torch.device,
             batch_size: int = 512, sample: Optional[torch.Tensor] = None,
             key: Optional[tuple[str, str]] = None) -> dict[str, torch.Tensor]:
    """Everything a row measures on the evaluation split, one batch of ``batch_size`` at a time
    (memory bounded by a batch, whatever the split's size): per image, the reconstruction's MSE,
    SSIM and PSNR against the truth, f_E's and f's predictions, f's penultimate features of the
    reconstruction and of the truth; per map, the perturbation MSE, f's features of x*e and
    x*e_hat (utility) and the top-k agreement of e_hat with e; the attribute classifiers'
    predictions. Networks run on ``device``, the metrics on the host (as the whole-split computation did: the same numbers whenever the split
    fits in one batch). At the positions ``sample`` it also keeps (``sample_*``) the image (uint8),
    the reconstruction (uint8), the clean and the released map (float16)."""
    attacker.eval()
    parts: dict[str, list[torch.Tensor]] = {}

    def add(name: str, value: torch.Tensor) -> None:
        parts.setdefault(name, []).append(value)

    target, eval_model = prep.target.eval(), prep.eval_model.eval()
    reference = reference_features(prep, truth, clean, key, batch_size)
    for pos in truth.chunks(batch_size):
        rec = attacker(*(r.to(device, pos) for r in inputs)).cpu().clamp_(0.0, 1.0)
        x = truth.take(pos)
        add("mse", mse(rec, x))
        add("ssim", ssim(rec, x))
        add("psnr", psnr(rec, x))
        add("pred_eval", eval_model(rec.to(device)).argmax(1).cpu())
        f_rec, logits = target.features_and_logits(rec.to(device))
        add("pred_target", logits.argmax(1).cpu())
        add("f_rec", f_rec.cpu())
        add("f_true", reference["f_true"][pos])
        if attributes is not None:
            add("attributes", attributes.predict(rec, device))
        if clean is not None:
            e, e_hat = clean.take(pos), released.take(pos)
            add("perturbation", perturbation_mse(e, e_hat))
            add("u_topk", topk_agreement(e, e_hat))
            add("u_clean", reference["u_clean"][pos])
            add("u_released", features(target, masked(x, e_hat), batch_size))
        if sample is not None:
            keep = torch.isin(pos, sample)
            add("sample_positions", pos[keep])
            add("sample_image", (x[keep] * 255).round().to(torch.uint8))
            add("sample_reconstruction", (rec[keep] * 255).round().to(torch.uint8))
            if clean is not None:
                add("sample_clean_map", e[keep].half())
                add("sample_released_map", e_hat[keep].half())
    return {k: torch.cat(v) for k, v in parts.items()}
