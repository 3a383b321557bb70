"""Prepare: the shared inputs of every cell of a (dataset, seed, preset).

Trains the target f and the evaluation classifier f_E (same architecture and data, independent
initialisation) on the target half, early-stopping each on the target-half validation slice;
computes each requested explainer's maps for the WHOLE dataset with f (the release computes
them once, with the target model, for the predicted class); caches everything under a content
hash of the data, the split, the classifier budget and the seed. A second call with the same
inputs loads from the cache. Maps are cached per (explainer, variant, explain batch size) inside
the entry, so asking for another explainer later trains nothing again.

With a results root (``out``), every file of the entry is also an artifact there
(store/artifacts.py): a node whose cache lacks the entry fetches it instead of training or
computing it again, and whatever a node computes is published for the others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from .. import GnimeRayError, __version__, echo
from ..cachedir import resolve_cache_dir
from ..config import Preset, content_hash, derive_seed
from ..data import DATASETS, DataSplit, ImageDataset, load_dataset, make_split
from ..data.registry import to_float
from ..explain import EXPLAINER_NAMES, get_explainer
from ..metrics import accuracy
from ..models import ARCH_BY_DATASET, Classifier, build_classifier
from ..store.artifacts import ArtifactStore
from .cache import load_json, load_tensors, save_json, save_tensors
from .device import pick_device
from .fit import train_classifier

Log = Callable[[str], None]
CACHE_SCHEMA = 1


@dataclass
class Prepared:
    """Everything a cell needs: data, split, the two classifiers and the clean maps.

    maps[(explainer, variant)]: (N, C', H', W') float32 in [0, 1] for every image of ``dataset``;
    logits: (N, K) float32, the target's raw logits (the y_hat every network takes).
    """

    dataset: ImageDataset
    split: DataSplit
    target: Classifier
    eval_model: Classifier
    maps: dict[tuple[str, str], torch.Tensor]
    logits: torch.Tensor
    accuracies: dict[str, float]
    cache_path: Path
    key: str
    from_cache: bool
    seconds: dict[str, float] = field(default_factory=dict)
    artifacts: Optional[ArtifactStore] = None

    @property
    def cache_root(self) -> Path:
        """The cache directory holding this entry (``CACHE/prepare/<dataset>-<key>``)."""
        return self.cache_path.parent.parent

    def classifiers_ref(self) -> str:
        """The artifact path of f and f_E under the results root ('' without one)."""
        return self.artifacts.ref(self.cache_path / "classifiers.pt") if self.artifacts is not None else ""

    def images(self, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """float32 images in [0, 1], all or at the given indices."""
        return to_float(self.dataset.images if idx is None else self.dataset.images[idx])


def _classifier_key(dataset: ImageDataset, preset: Preset, seed: int, arch: str) -> str:
    fields = {k: v for k, v in preset.to_dict().items() if k.startswith("classifier_") or k in ("val_fraction", "max_images")}
    return content_hash({"schema": CACHE_SCHEMA, "dataset": dataset.name, "data": dataset.fingerprint(),
                         "arch": arch, "seed": seed, "preset": fields})


def compute_maps(model: torch.nn.Module, images: torch.Tensor, explainer: str, variant: str,
                 batch_size: int, device: torch.device) -> torch.Tensor:
    """Maps of uint8 images (N, C, H, W) -> float32 (N, C', H', W') in [0, 1], on the CPU,
    computed in consecutive chunks of ``batch_size`` (the paper Grad-CAM depends on them)."""
    fn = get_explainer(explainer, variant)
    model.to(device)
    out = [fn(model, to_float(images[i:i + batch_size]).to(device)).cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out)


def artifact_store(out: Optional[str], cache_root: Path, log: Log = echo) -> Optional[ArtifactStore]:
    """The artifact store of results root ``out`` for this node's cache (None without a root)."""
    return ArtifactStore(out, cache_root, log) if out else None


def cached_tensors(path: Path, compute: Callable[[], object], artifacts: Optional[ArtifactStore]) -> tuple[object, bool]:
    """(value, computed): the tensors cached at ``path`` (fetched from the artifact store when only
    it has them), else ``compute()``, cached. Either way the store ends up holding them."""
    if artifacts is not None:
        artifacts.fetch(path)
    computed = not path.exists()
    if computed:
        value = compute()
        save_tensors(path, value)
    else:
        value = load_tensors(path)
    if artifacts is not None:
        artifacts.publish(path)
    return value, computed


def release_outputs(entry: Path, model: torch.nn.Module, images: torch.Tensor, explainers: Sequence[str],
                    variant: str, batch_size: int, device: torch.device, log: Log = echo,
                    artifacts: Optional[ArtifactStore] = None
                    ) -> tuple[torch.Tensor, dict[tuple[str, str], torch.Tensor], dict[str, float]]:
    """What the target ``model`` releases for uint8 ``images``: its logits and each explainer's maps,
    loaded from ``entry`` (or the artifact store) or computed and cached there; also the seconds
    each computation took."""
    model.to(device).eval()

    @torch.no_grad()
    def all_logits() -> torch.Tensor:
        return torch.cat([model(to_float(images[i:i + 512]).to(device)).cpu() for i in range(0, images.shape[0], 512)])

    logits, _ = cached_tensors(entry / "logits.pt", all_logits, artifacts)
    maps: dict[tuple[str, str], torch.Tensor] = {}
    seconds: dict[str, float] = {}
    for name in explainers:
        t0 = time.perf_counter()
        maps[(name, variant)], computed = cached_tensors(
            entry / f"maps-{name}-{variant}-b{batch_size}.pt",
            lambda: compute_maps(model, images, name, variant, batch_size, device), artifacts)
        if computed:
            seconds[f"maps_{name}"] = time.perf_counter() - t0
            log(f"prepare: computed {name} ({variant}) maps {tuple(maps[(name, variant)].shape)} "
                f"in {seconds[f'maps_{name}']:.1f}s")
    return logits, maps, seconds


def prepare(dataset: str, preset: Preset, seed: int = 0, *, explainers: Sequence[str] = EXPLAINER_NAMES,
            variant: str = "paper", cache_dir: Optional[str] = None, data_root: Optional[str] = None,
            device: Optional[str] = None, log: Log = echo, out: Optional[str] = None) -> Prepared:
    """Train (or load) f and f_E and compute (or load) the maps; ``out``: the results root whose
    artifact store is searched before anything is trained or computed, and published to after."""
    if dataset not in DATASETS:  # validate every name before touching the disk
        raise GnimeRayError(f"unknown dataset {dataset!r}; expected one of {', '.join(sorted(DATASETS))}")
    for name in explainers:
        get_explainer(name, variant)
    if not isinstance(seed, int) or seed < 0:
        raise GnimeRayError(f"seed must be an integer >= 0, got {seed!r}")
    cache_root = resolve_cache_dir(cache_dir)
    dev = pick_device(device)
    data = load_dataset(dataset, data_root, preset.max_images, cache_dir=cache_root, options=preset.data_options(),
                        log=log)
    arch = ARCH_BY_DATASET.get(dataset)
    if arch is None:
        raise GnimeRayError(f"no classifier architecture is registered for dataset {dataset!r}")
    split = make_split(len(data), seed, preset.val_fraction)
    key = _classifier_key(data, preset, seed, arch)
    entry = cache_root / "prepare" / f"{dataset}-{key}"
    models_file, meta_file = entry / "classifiers.pt", entry / "meta.json"
    artifacts = artifact_store(out, cache_root, log)
    if artifacts is not None and not (models_file.exists() and meta_file.exists()):
        artifacts.fetch(models_file) and artifacts.fetch(meta_file)

    def build(role: str) -> Classifier:
        torch.manual_seed(derive_seed(seed, "init", role))
        return build_classifier(arch, data.image_shape, data.num_classes, width=preset.classifier_width)

    target, eval_model = build("target"), build("eval")
    seconds: dict[str, float] = {}
    from_cache = models_file.exists() and meta_file.exists()
    if from_cache:
        state = load_tensors(models_file)
        target.load_state_dict(state["target"])
        eval_model.load_state_dict(state["eval"])
        meta = load_json(meta_file)
        accuracies = meta["accuracies"]
        log(f"prepare: loaded f and f_E from cache {entry}")
    else:
        log(f"prepare: {dataset} ({len(data)} images {data.image_shape}, split {split.sizes()}), "
            f"training f and f_E ({arch}, preset {preset.name}, seed {seed}) on {dev}")
        x_tr, y_tr = data.images[split.target_train], data.labels[split.target_train]
        x_va, y_va = data.images[split.target_val], data.labels[split.target_val]
        x_ev, y_ev = to_float(data.images[split.eval]).to(dev), data.labels[split.eval]
        accuracies = {}
        meta = {"dataset": dataset, "arch": arch, "seed": seed, "preset": preset.to_dict(),
                "fingerprint": data.fingerprint(), "code_version": __version__, "history": {}}
        for role, model in (("target", target), ("eval", eval_model)):
            t0 = time.perf_counter()
            hist = train_classifier(model, x_tr, y_tr, x_va, y_va, epochs=preset.classifier_epochs,
                                    batch_size=preset.classifier_batch_size, patience=preset.classifier_patience,
                                    lr=preset.classifier_lr, seed=derive_seed(seed, "fit", role), device=dev,
                                    log=log, name="f" if role == "target" else "f_E")
            seconds[f"train_{role}"] = time.perf_counter() - t0
            accuracies[role] = accuracy(model, x_ev, y_ev)
            meta["history"][role] = {"train_loss": hist.train_loss, "val_acc": hist.val_score,
                                     "best_epoch": hist.best_epoch, "seconds": hist.seconds}
        meta["accuracies"] = accuracies
        save_tensors(models_file, {"target": {k: v.cpu() for k, v in target.state_dict().items()},
                                   "eval": {k: v.cpu() for k, v in eval_model.state_dict().items()}})
        save_json(meta_file, meta)
    if artifacts is not None:  # also when loaded: a cache filled before this results root existed
        artifacts.publish(models_file)
        artifacts.publish(meta_file)
    target.to(dev).eval()
    eval_model.to(dev).eval()
    logits, maps, map_seconds = release_outputs(entry, target, data.images, explainers, variant,
                                                preset.explain_batch_size, dev, log, artifacts)
    seconds.update(map_seconds)
    log(f"prepare: f accuracy {accuracies['target']:.4f}, f_E accuracy {accuracies['eval']:.4f} on the eval split")
    return Prepared(data, split, target, eval_model, maps, logits, accuracies, entry, key, from_cache, seconds,
                    artifacts)


@dataclass
class AuxData:
    """An auxiliary attacker dataset as the TARGET model releases it (paper Sec. 5.3.2, Table 2):
    the adversary queries f with its own images and trains on the maps and logits it gets back.

    dataset: the auxiliary images; logits: (N, K) float32, f's logits; maps: {(explainer, variant):
    (N, C', H', W') float32 in [0, 1]} computed with f; train/val: index tensors of the attacker's
    training images and of its early-stopping slice (a seeded permutation, last ``val_fraction``).
    """

    dataset: ImageDataset
    logits: torch.Tensor
    maps: dict[tuple[str, str], torch.Tensor]
    train: torch.Tensor
    val: torch.Tensor


def prepare_aux(prep: Prepared, aux: str, preset: Preset, seed: int = 0, *, explainers: Sequence[str] = (),
                variant: str = "paper", cache_dir: Optional[str] = None, data_root: Optional[str] = None,
                device: Optional[str] = None, log: Log = echo) -> AuxData:
    """Query the prepared target f with the auxiliary dataset ``aux``; cached inside prepare's entry."""
    if aux not in DATASETS:
        raise GnimeRayError(f"unknown auxiliary dataset {aux!r}; expected one of {', '.join(sorted(DATASETS))}")
    data = load_dataset(aux, data_root, None, cache_dir=resolve_cache_dir(cache_dir), options=preset.data_options(),
                        log=log)
    if data.image_shape != prep.dataset.image_shape:
        raise GnimeRayError(f"auxiliary dataset {aux} has images {data.image_shape}, but the target "
                            f"{prep.dataset.name} takes {prep.dataset.image_shape}")
    dev = pick_device(device)
    entry = prep.cache_path / f"aux-{aux}-{data.fingerprint()}"
    logits, maps, _ = release_outputs(entry, prep.target, data.images, explainers, variant,
                                      preset.explain_batch_size, dev, log, prep.artifacts)
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(derive_seed(seed, "aux-split", aux)))
    n_val = max(1, int(round(preset.val_fraction * len(data))))
    log(f"prepare: auxiliary {aux}: {len(data)} images queried through f ({len(data) - n_val} attacker training, "
        f"{n_val} early stopping)")
    return AuxData(data, logits, maps, perm[:-n_val], perm[-n_val:])
