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

import numpy as np
import torch

from .. import GnimeRayError, __version__, echo, time_left
from ..cachedir import file_lock, resolve_cache_dir
from ..cellspec import content_hash, derive_seed
from ..config import Preset, get_preset
from ..data import DATASETS, DataSplit, ImageDataset, load_dataset, make_split
from ..data.host_rows import HostRows, to_device
from ..data.registry import to_float
from ..explain import PAPER_EXPLAINERS, explainer_settings, get_explainer
from ..metrics import accuracy
from ..models import ARCH_BY_DATASET, CLASSIFIER_ARCHS, Classifier, build_classifier
from ..models.training_format import choose
from ..store.artifacts import ArtifactStore
from .cache import (
    ArrayCorrupt,
    array_meta_path,
    array_ready,
    load_array,
    load_json,
    load_tensors,
    remove_array,
    save_json,
    save_tensors,
    write_array,
)
from .device import pick_device
from .fit import train_classifier

Log = Callable[[str], None]
# 2: the paper LRP uses z+ on the input at the first conv (explain/lrp.py) and everything trains with
# Keras' Adam (optim.py): classifiers and maps of schema 1 are different numbers, never reused
CACHE_SCHEMA = 2
# 2: datasets read through the image cache are identified by their cache entry (ImageDataset.fingerprint)
KEY_VERSION = 2
# Maps are stored in float16: a map in [0, 1] rounded to float16 is off by at most 2^-12 (2.4e-4,
# near 1; less below), 1e-8 in mean square, far below any perturbation studied (the paper's
# smallest GNIME perturbation MSE is 0.0039), and half the bytes of float32. Every computation
# widens them to float32 first.
MAP_DTYPE = np.float16


@dataclass
class Prepared:
    """Everything a cell needs: data, split, the two classifiers and the clean maps.

    maps[(explainer, variant)]: (N, C', H', W') float16 in [0, 1] for every image of ``dataset``,
    memory-mapped from the cache (shared by every process of the node; ``rows`` reads them batch
    by batch as float32); logits: (N, K) float32, the target's raw logits (the y_hat every network
    takes), memory-mapped likewise. ``dataset.images`` is uint8 (memory-mapped for the large
    datasets).
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
    # what cells of this process compute once from the entry alone and share (pipeline/cell.py's
    # reference features of the evaluation split); never part of the cache or of equality
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def cache_root(self) -> Path:
        """The cache directory holding this entry (``CACHE/prepare/<dataset>-<key>``)."""
        return self.cache_path.parent.parent

    def classifiers_ref(self) -> str:
        """The artifact path of f and f_E under the results root ('' without one)."""
        return self.artifacts.ref(self.cache_path / "classifiers.pt") if self.artifacts is not None else ""

    def images(self, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """float32 images in [0, 1], all or at the given indices (a copy: for small sets only)."""
        return to_float(self.dataset.images if idx is None else self.dataset.images[idx])

    def image_rows(self, idx: Optional[torch.Tensor] = None) -> HostRows:
        return HostRows(self.dataset.images, idx)

    def map_shape(self, explainer: str, variant: str) -> tuple[int, ...]:
        """One map's shape (C', H', W') for an explainer and variant this entry holds."""
        return tuple(self.maps[(explainer, variant)].shape[1:])

    def map_rows(self, key: tuple[str, str], idx: Optional[torch.Tensor] = None) -> HostRows:
        return HostRows(self.maps[key], idx)

    def logit_rows(self, idx: Optional[torch.Tensor] = None) -> HostRows:
        return HostRows(self.logits, idx)


def _classifier_fields(preset: Preset) -> dict:
    return {k: v for k, v in preset.to_dict().items() if k.startswith("classifier_") or k in ("val_fraction", "max_images")}


def _classifier_key(dataset: ImageDataset, preset: Preset, seed: int, arch: str) -> str:
    fields = {"schema": CACHE_SCHEMA, "dataset": dataset.name, "data": dataset.fingerprint(),
              "arch": arch, "seed": seed, "preset": _classifier_fields(preset)}
    if CLASSIFIER_ARCHS[arch]["dropout"]:  # its masks drew from torch's global generator before (models/initialisation.py)
        fields["dropout"] = "fit-generator"
    return content_hash(fields)


def _notice_earlier_entry(cache_root: Path, dataset: str, data: ImageDataset, seed: int, preset: Preset,
                          log: Log) -> None:
    """One line when an entry of an earlier version for the same data, seed and budget exists under
    another key: entries of CACHE_SCHEMA 1 hold the flat-first-layer LRP and classifiers trained with
    PyTorch's Adam; datasets read through the image cache were keyed by a hash of every image byte
    before KEY_VERSION 2 and by their cache entry since. Such entries are not reused."""
    fields = _classifier_fields(preset)
    for meta_file in sorted((cache_root / "prepare").glob(f"{dataset}-*/meta.json")):
        meta = load_json(meta_file)
        old = {k: v for k, v in meta.get("preset", {}).items() if k in fields}
        if meta.get("seed") != seed or old != fields:
            continue
        if meta.get("schema", 1) < CACHE_SCHEMA and meta.get("fingerprint") == data.fingerprint():
            log(f"prepare: {meta_file.parent} was written by an earlier version (LRP's flat first layer, PyTorch's "
                f"Adam); rebuilding")
            return
        if "cache" in data.info and meta.get("key_version", 1) < KEY_VERSION:
            log(f"prepare: {meta_file.parent} was written by an earlier version (keyed by the images' bytes); "
                f"rebuilding under the image cache's key")
            return


def batches_into(path: Path, n: int, batch_size: int, dtype: np.dtype,
                 batch: Callable[[int, int], torch.Tensor], log: Optional[Log] = None, what: str = "",
                 every: float = 10.0) -> None:
    """Write ``batch(i, j)`` (rows i..j, any float tensor) for consecutive ranges into the cached
    array ``path`` of ``n`` rows in ``dtype``; the row shape is that of the first batch. Only one
    batch is ever in memory. With ``log``: a line ``prepare: WHAT: i/n images (time; time left)``
    at most every ``every`` seconds while it runs."""
    t0 = last = time.perf_counter()
    first = batch(0, min(batch_size, n)).cpu()

    def fill(arr: np.ndarray) -> None:
        nonlocal last
        arr[:first.shape[0]] = first.numpy()
        for i in range(first.shape[0], n, batch_size):
            j = min(i + batch_size, n)
            arr[i:j] = batch(i, j).cpu().numpy()
            now = time.perf_counter()
            if log is not None and now - last >= every and j < n:
                last = now
                log(f"prepare: {what}: {j}/{n} images ({now - t0:.0f}s{time_left(now - t0, j, n)})")

    write_array(path, (n, *first.shape[1:]), dtype, fill)


def compute_maps(model: torch.nn.Module, images: torch.Tensor, explainer: str, variant: str,
                 batch_size: int, device: torch.device, path: Path, log: Optional[Log] = None,
                 settings: Optional[dict] = None) -> None:
    """Maps of uint8 images (N, C, H, W), float32 (N, C', H', W') in [0, 1] computed in
    consecutive chunks of ``batch_size`` (the paper Grad-CAM depends on them), stored as the
    float16 array ``path`` (module docstring of ``MAP_DTYPE``); progress lines to ``log``;
    ``settings``: a Captum method's (explain/captum_methods.py)."""
    fn = get_explainer(explainer, variant, settings)
    model.to(device)
    batches_into(path, images.shape[0], batch_size, MAP_DTYPE,
                 lambda i, j: fn(model, to_device(to_float(images[i:j]), device)), log, f"{explainer} maps")


def artifact_store(out: Optional[str], cache_root: Path, log: Log = echo,
                   read_only: bool = False) -> Optional[ArtifactStore]:
    """The artifact store of results root ``out`` for this node's cache (None without a root)."""
    return ArtifactStore(out, cache_root, log, read_only) if out else None


def cached_array(path: Path, compute: Callable[[Path], None], artifacts: Optional[ArtifactStore],
                 log: Log) -> tuple[torch.Tensor, bool]:
    """(array memory-mapped, computed): the cached array ``path``, fetched from the artifact store
    when only it has it, else ``compute(path)``, by one process of the node while the others wait.
    A truncated or corrupted file (size or SHA-256 against its metadata) is reported in one line and
    rebuilt, never used. The store ends up holding it."""
    computed = False
    with file_lock(path):  # one process of the node computes it, the others wait and read it
        for attempt in (0, 1):
            if artifacts is not None and attempt == 0 and not array_ready(path):
                artifacts.fetch(path)
                artifacts.fetch(array_meta_path(path))
            if not array_ready(path):
                compute(path)
                computed = True
            try:
                value = load_array(path)
                break
            except ArrayCorrupt as exc:
                log(f"prepare: {exc}; rebuilding it")
                remove_array(path)
                if attempt == 1:
                    raise
    if artifacts is not None:
        artifacts.publish(path)
        artifacts.publish(array_meta_path(path))
    return value, computed


def release_outputs(entry: Path, model: torch.nn.Module, images: torch.Tensor, explainers: Sequence[str],
                    variant: str, batch_size: int, device: torch.device, log: Log = echo,
                    artifacts: Optional[ArtifactStore] = None, preset: Optional[Preset] = None
                    ) -> tuple[torch.Tensor, dict[tuple[str, str], torch.Tensor], dict[str, float]]:
    """What the target ``model`` releases for uint8 ``images``: its logits (N, K) float32 and each
    explainer's maps (N, C', H', W') float16, memory-mapped from ``entry`` (fetched from the
    artifact store, or computed batch by batch and cached there); also the seconds each
    computation took. A Captum method's settings come from ``preset`` (the paper preset's without
    one) and are part of its maps' file name; the paper's three keep their names."""
    preset = preset or get_preset("paper")
    model.to(device).eval()

    @torch.no_grad()
    def logits_into(path: Path) -> None:
        batches_into(path, images.shape[0], 512, np.float32, lambda i, j: model(to_device(to_float(images[i:j]), device)),
                     log, "f's logits")

    logits, _ = cached_array(entry / "logits.npy", logits_into, artifacts, log)
    maps: dict[tuple[str, str], torch.Tensor] = {}
    seconds: dict[str, float] = {}
    for name in explainers:
        t0 = time.perf_counter()
        settings = explainer_settings(name, preset)
        stem = f"maps-{name}-{variant}-b{batch_size}" + (f"-{content_hash(settings)}" if settings else "")
        maps[(name, variant)], computed = cached_array(
            entry / f"{stem}.f16.npy",
            lambda p: compute_maps(model, images, name, variant, batch_size, device, p, log, settings), artifacts, log)
        if computed:
            seconds[f"maps_{name}"] = time.perf_counter() - t0
            log(f"prepare: computed {name} ({variant}) maps {tuple(maps[(name, variant)].shape)} "
                f"in {seconds[f'maps_{name}']:.1f}s ({1000 * seconds[f'maps_{name}'] / max(1, len(images)):.2f} ms "
                f"per image{', ' + ', '.join(f'{k} {v}' for k, v in settings.items()) if settings else ''})")
    return logits, maps, seconds


def prepare(dataset: str, preset: Preset, seed: int = 0, *, explainers: Sequence[str] = PAPER_EXPLAINERS,
            variant: str = "paper", cache_dir: Optional[str] = None, data_root: Optional[str] = None,
            device: Optional[str] = None, log: Log = echo, out: Optional[str] = None,
            read_only: bool = False) -> Prepared:
    """Train (or load) f and f_E and compute (or load) the maps; ``out``: the results root whose
    artifact store is searched before anything is trained or computed, and published to after
    (unless ``read_only``)."""
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
    split = make_split(len(data), seed, preset.val_fraction, test_fraction=preset.test_fraction)
    key = _classifier_key(data, preset, seed, arch)
    entry = cache_root / "prepare" / f"{dataset}-{key}"
    models_file, meta_file = entry / "classifiers.pt", entry / "meta.json"
    artifacts = artifact_store(out, cache_root, log, read_only)
    if artifacts is not None and not (models_file.exists() and meta_file.exists()):
        artifacts.fetch(models_file) and artifacts.fetch(meta_file)

    def build(role: str) -> Classifier:
        return build_classifier(arch, data.image_shape, data.num_classes, width=preset.classifier_width,
                                generator=torch.Generator().manual_seed(derive_seed(seed, "init", role)))

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
        x_ev, y_ev = to_float(data.images[split.eval]), data.labels[split.eval]  # accuracy() moves batches
        accuracies = {}
        _notice_earlier_entry(cache_root, dataset, data, seed, preset, log)
        meta = {"dataset": dataset, "arch": arch, "seed": seed, "preset": preset.to_dict(), "key_version": KEY_VERSION,
                "schema": CACHE_SCHEMA,
                "fingerprint": data.fingerprint(), "code_version": __version__, "history": {}}
        speed = choose(dev, preset.memory_format, False, shape=data.image_shape, width=preset.classifier_width,
                       cache_dir=str(cache_root))
        log(f"prepare: speed settings {speed.describe()}")
        for role, model in (("target", target), ("eval", eval_model)):
            t0 = time.perf_counter()
            hist = train_classifier(model, x_tr, y_tr, x_va, y_va, epochs=preset.classifier_epochs, speed=speed,
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
                                                preset.explain_batch_size, dev, log, artifacts, preset)
    seconds.update(map_seconds)
    log(f"prepare: f accuracy {accuracies['target']:.4f}, f_E accuracy {accuracies['eval']:.4f} on the eval split")
    return Prepared(data, split, target, eval_model, maps, logits, accuracies, entry, key, from_cache, seconds,
                    artifacts)


@dataclass
class AuxData:
    """An auxiliary attacker dataset as the TARGET model releases it (paper Sec. 5.3.2, Table 2):
    the adversary queries f with its own images and trains on the maps and logits it gets back.

    dataset: the auxiliary images; logits: (N, K) float32, f's logits; maps: {(explainer, variant):
    (N, C', H', W') float16 in [0, 1]} computed with f (both memory-mapped, as in Prepared);
    train/val: index tensors of the attacker's training images and of its early-stopping slice (a
    seeded permutation, last ``val_fraction``).
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
                                      preset.explain_batch_size, dev, log, prep.artifacts, preset)
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(derive_seed(seed, "aux-split", aux)))
    n_val = max(1, int(round(preset.val_fraction * len(data))))
    log(f"prepare: auxiliary {aux}: {len(data)} images queried through f ({len(data) - n_val} attacker training, "
        f"{n_val} early stopping)")
    return AuxData(data, logits, maps, perm[:-n_val], perm[-n_val:])
