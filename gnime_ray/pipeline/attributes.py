"""Attribute leakage (paper Sec. 5.3.3, Fig. 6): binary attribute classifiers trained on CelebA
images disjoint from the inversion experiments, then asked whether the attributes of the
evaluation images can still be read off their reconstructions (F1 per attribute).

The paper trains eight classifiers but does not name the attributes in its text; Fig. 1 points at
sunglasses, a cap and gender. We use ``paper.PAPER_ATTRIBUTES``: Eyeglasses, Wearing_Hat, Male,
Smiling, Young, Bangs, Mustache, Blond_Hair (a named choice). Each classifier (models/attribute_classifier.py) is
trained with binary cross-entropy and Adam on the attribute set (data/celeba.py
``load_attribute_set``), early-stopped on its last ``val_fraction`` by F1, and cached under a hash
of the subset's cache key, the attribute set, the budget and the weights file, so that every cell
of the same CelebA subset finds them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .. import GnimeRayError, echo
from ..cachedir import resolve_cache_dir
from ..cellspec import content_hash, derive_seed
from ..config import Preset
from ..data import ImageDataset
from ..data.celeba import load_attribute_set
from ..data.registry import DataRequest, to_float
from ..early_stopping import EarlyStopping
from ..metrics import batched, f1_score
from ..models.attribute_classifier import AttributeClassifier
from ..paper import PAPER_ATTRIBUTES
from .cache import load_json, load_tensors, save_json, save_tensors
from .device import pick_device
from .fit import adam

Log = Callable[[str], None]


def f1_column(name: str) -> str:
    """The Parquet column of an attribute's F1 on reconstructions, e.g. f1_eyeglasses."""
    return f"f1_{name.lower()}"


F1_COLUMNS = tuple(f1_column(a) for a in PAPER_ATTRIBUTES)


@dataclass
class AttributeModels:
    names: tuple[str, ...]
    models: list[AttributeClassifier]
    val_f1: dict[str, float]
    path: Path

    @torch.no_grad()
    def predict(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """(N, len(names)) bool: each classifier's decision on images (N, 3, H, W) float in [0, 1]
        (in batches of 64 on ``device``; host result)."""
        cols = []
        for model in self.models:
            model.to(device).eval()
            cols.append(batched(lambda b: (model(b.to(device)) > 0).cpu(), images, 64))
        return torch.stack(cols, dim=1)

    def f1(self, pred: torch.Tensor, attributes: torch.Tensor, attribute_names: tuple[str, ...]) -> dict[str, float]:
        """{f1 column: F1} of the predictions (N, len(names)) against the true attributes (N, A) in
        {0, 1} (columns named by ``attribute_names``)."""
        return {f1_column(name): f1_score(pred[:, i], attributes[:, attribute_names.index(name)])
                for i, name in enumerate(self.names)}


def _key(subset: ImageDataset, preset: Preset, weights: Optional[str]) -> str:
    if "cache" not in subset.info:
        raise GnimeRayError("attribute classifiers need CelebA loaded through the preprocessing cache")
    digest = None
    if weights:
        digest = hashlib.sha256(Path(weights).expanduser().read_bytes()).hexdigest()[:16]
    fields = {k: v for k, v in preset.to_dict().items() if k.startswith(("attribute_", "celeba_"))}
    return content_hash({"subset": Path(subset.info["cache"]).name, "preset": fields, "weights": digest,
                         "val_fraction": preset.val_fraction, "attributes": PAPER_ATTRIBUTES,
                         "optimiser": "keras-adam",  # trained with PyTorch's Adam before
                         "init": "generator"})  # initialised from torch's global generator before


def attribute_dir(cache_root: Path, subset: ImageDataset, preset: Preset, weights: Optional[str] = None) -> Path:
    return cache_root / "attributes" / f"celeba-{_key(subset, preset, weights)}"


def load_attribute_models(path: Path) -> Optional[AttributeModels]:
    """The cached classifiers at ``path``, or None when they were not trained yet."""
    if not ((path / "classifiers.pt").exists() and (path / "meta.json").exists()):  # meta.json is written last
        return None
    state, meta = load_tensors(path / "classifiers.pt"), load_json(path / "meta.json")
    models = []
    for name in meta["names"]:
        m = AttributeClassifier()  # weights replaced below
        m.load_state_dict(state[name])
        models.append(m.eval())
    return AttributeModels(tuple(meta["names"]), models, meta["val_f1"], path)


def train_attribute_classifiers(subset: ImageDataset, preset: Preset, *, data_root: Optional[str] = None,
                                cache_dir: Optional[str] = None, weights: Optional[str] = None,
                                device: Optional[str] = None, seed: int = 0, log: Log = echo) -> AttributeModels:
    """Train (or load from the cache) the eight classifiers for the CelebA ``subset``."""
    cache_root = resolve_cache_dir(cache_dir)
    path = attribute_dir(cache_root, subset, preset, weights)
    cached = load_attribute_models(path)
    if cached is not None:
        log(f"attributes: loaded from cache {path}")
        return cached
    request = DataRequest(root=data_root, cache_dir=cache_root, options=preset.data_options(), log=log)
    data = load_attribute_set(request, preset.attribute_images)
    missing = [a for a in PAPER_ATTRIBUTES if a not in data.attribute_names]
    if missing:
        raise GnimeRayError(f"list_attr_celeba.txt has no column {missing[0]!r}; expected CelebA's 40 attributes")
    dev = pick_device(device)
    n_val = max(1, int(round(preset.val_fraction * len(data))))
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(derive_seed(seed, "attributes")))
    tr, va = perm[:-n_val], perm[-n_val:]
    x_val = to_float(data.images[va])
    log(f"attributes: training {len(PAPER_ATTRIBUTES)} ResNet-50 classifiers on {tr.numel()} CelebA images "
        f"disjoint from the subset ({n_val} for early stopping), {preset.attribute_epochs} epochs, on {dev}")
    states, val_f1, models = {}, {}, []
    for name in PAPER_ATTRIBUTES:
        col = data.attribute_names.index(name)
        y = data.attributes[:, col].float()
        init = torch.Generator().manual_seed(derive_seed(seed, "attribute-init", name))
        model = AttributeClassifier(weights, generator=init).to(dev)
        opt = adam(model.parameters(), preset.attribute_lr)
        gen = torch.Generator().manual_seed(derive_seed(seed, "attribute-batches", name))
        stopper = EarlyStopping(patience=max(1, preset.attribute_epochs), mode="max")
        t0 = time.perf_counter()
        for epoch in range(1, preset.attribute_epochs + 1):
            model.train()
            order = tr[torch.randperm(tr.numel(), generator=gen)]
            for i in range(0, order.numel(), preset.attribute_batch_size):
                idx = order[i:i + preset.attribute_batch_size]
                if idx.numel() < 2:  # batch norm needs two samples
                    continue
                loss = F.binary_cross_entropy_with_logits(model(to_float(data.images[idx]).to(dev)), y[idx].to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                pred = batched(lambda b: model(b.to(dev)) > 0, x_val, 64).cpu()
            score = f1_score(pred, y[va])
            stopper.step(score, epoch, model)
            log(f"  {name} epoch {epoch}/{preset.attribute_epochs}: val F1 {score:.4f}")
        stopper.restore(model)
        val_f1[name] = float(stopper.best)
        states[name] = {k: v.cpu() for k, v in model.state_dict().items()}
        models.append(model.cpu().eval())
        log(f"attributes: {name}: best val F1 {val_f1[name]:.4f} ({time.perf_counter() - t0:.0f}s)")
    save_tensors(path / "classifiers.pt", states)
    save_json(path / "meta.json", {"names": list(PAPER_ATTRIBUTES), "val_f1": val_f1, "images": len(data),
                                   "attribute_set": data.info.get("cache"), "weights": weights})
    return AttributeModels(PAPER_ATTRIBUTES, models, val_f1, path)


def attribute_models_for(prep_dataset: ImageDataset, preset: Preset, cache_dir: Optional[str],
                         log: Log = echo) -> Optional[AttributeModels]:
    """The attribute classifiers of a CelebA subset, or None when the dataset has no attributes or
    they were not trained yet (``gnime-ray attributes``); a cell's f1_* columns are then NaN."""
    if prep_dataset.attributes is None or "cache" not in prep_dataset.info:
        return None
    models = load_attribute_models(attribute_dir(resolve_cache_dir(cache_dir), prep_dataset, preset))
    if models is None:
        log("attributes: no trained attribute classifiers for this subset (run `gnime-ray attributes`); "
            "the f1_* columns stay NaN")
    return models


def reconstruction_f1(models: Optional[AttributeModels], pred: Optional[torch.Tensor], prep_dataset: ImageDataset,
                      eval_idx: torch.Tensor) -> dict[str, float]:
    """The F1 columns of a cell: each attribute classifier's predictions ``pred`` on the
    reconstructions of the evaluation images ``eval_idx`` against their true attributes; NaN
    without classifiers."""
    out = {c: float("nan") for c in F1_COLUMNS}
    if models is not None:
        out.update(models.f1(pred, prep_dataset.attributes[eval_idx], prep_dataset.attribute_names))
    return out
