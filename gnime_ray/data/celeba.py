"""CelebA (Liu et al., 2015), the paper's balanced subset of 1,000 identities x 30 images, 128x128 RGB.

Two on-disk layouts are read as they are (never downloaded):

(a) the official release, torchvision's layout: ``celeba/img_align_celeba/*.jpg``,
    ``celeba/identity_CelebA.txt`` (``<file> <identity id>`` per line) and, optionally,
    ``celeba/list_attr_celeba.txt`` (the 40 binary attributes). Selection rule (seeded by
    ``celeba_selection_seed``, default 0): the identities with at least
    ``celeba_images_per_identity`` (30) listed images, sorted by id; ``celeba_identities`` (1,000)
    of them drawn without replacement by ``numpy.random.default_rng(seed)``; for each chosen
    identity, its files sorted by name and ``celeba_images_per_identity`` of them drawn by the
    same generator. Label = the identity's index in increasing id order. Each image is centre-
    cropped to a square of 108/178 of its shorter side (108x108 on the 178x218 aligned images,
    the face crop of the model-inversion literature; the paper only says "crop the center") and
    resized to 128x128. The chosen identities and files are written to ``identities.txt`` and
    ``meta.json`` in the cache entry, so a study can be reproduced exactly.
(b) the authors' pre-cropped folders ``celeba_cropped_1000/<identity>/*.jpg`` (the release's
    subset): every image of every folder, label = the folder's index in sorted folder-name
    order (the release's rule), resized to 128x128 without cropping.

When both exist under the data root, (b) is used (it is the release's exact subset); pass the
layout's own folder as --data-root to pick (a). Images are stored in the preprocessing cache
(imagecache.py); attributes, when list_attr_celeba.txt is present, become ``attributes`` (N, 40)
in {0, 1}.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import GnimeRayError
from .imagecache import build_entry, cache_entry, centre_square, load_entry, read_image, source_fingerprint, to_chw
from .registry import DataRequest, ImageDataset, register_dataset, resolve_root

SIZE = 128
CROP_FRACTION = 108 / 178
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IDENTITY_FILE = "identity_CelebA.txt"
ATTR_FILE = "list_attr_celeba.txt"
OFFICIAL_IMAGES = "img_align_celeba"
CROPPED = "celeba_cropped_1000"
EXPECTED = (f"celeba/{OFFICIAL_IMAGES}/*.jpg with celeba/{IDENTITY_FILE} (the official release), or "
            f"{CROPPED}/<identity>/*.jpg (the authors' cropped layout)")


def find_layout(root: str | None) -> tuple[str, Path]:
    """('cropped', folder) or ('official', folder) under the data root (see the module docstring)."""
    def marker(p: Path) -> bool:
        return p.name == CROPPED or (p / OFFICIAL_IMAGES).is_dir() or (p / IDENTITY_FILE).exists()

    folder = resolve_root("celeba", root, (CROPPED, "celeba"), marker, EXPECTED)
    return ("cropped" if folder.name == CROPPED else "official"), folder


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_identities(folder: Path) -> dict[str, int]:
    """identity_CelebA.txt -> {file name: identity id}; a malformed line is an error naming it."""
    path = folder / IDENTITY_FILE
    if not path.is_file():
        raise GnimeRayError(f"{path}: missing; expected the identity annotation file of the official CelebA "
                            f"release ('<file> <identity id>' per line)")
    out: dict[str, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise GnimeRayError(f"{path}:{n}: expected '<file> <identity id>', got {line.strip()!r}")
        out[parts[0]] = int(parts[1])
    if not out:
        raise GnimeRayError(f"{path}: no identities listed")
    return out


def read_attributes(folder: Path) -> tuple[tuple[str, ...], dict[str, np.ndarray]] | None:
    """list_attr_celeba.txt -> (names, {file: (40,) int8 in {0, 1}}), or None when absent."""
    path = folder / ATTR_FILE
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise GnimeRayError(f"{path}: expected a count line, a header of attribute names and one line per image")
    names = tuple(lines[1].split())
    table: dict[str, np.ndarray] = {}
    for n, line in enumerate(lines[2:], 3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1 or any(v not in ("1", "-1") for v in parts[1:]):
            raise GnimeRayError(f"{path}:{n}: expected a file name and {len(names)} values of 1 or -1")
        table[parts[0]] = (np.array(parts[1:], dtype=np.int8) > 0).astype(np.int8)
    return names, table


def select_official(identities: dict[str, int], n_ids: int, per_id: int, seed: int, folder: Path) -> list[tuple[str, int]]:
    """The selection rule of the module docstring: [(file, identity id)] in label order."""
    by_id: dict[int, list[str]] = {}
    for f, i in identities.items():
        by_id.setdefault(i, []).append(f)
    eligible = sorted(i for i, files in by_id.items() if len(files) >= per_id)
    if len(eligible) < n_ids:
        raise GnimeRayError(f"{folder / IDENTITY_FILE}: only {len(eligible)} identities have at least {per_id} "
                            f"images; the subset needs {n_ids} (set celeba_identities or "
                            f"celeba_images_per_identity lower)")
    rng = np.random.default_rng(seed)
    chosen = sorted(int(i) for i in rng.choice(eligible, size=n_ids, replace=False))
    out = []
    for i in chosen:
        files = sorted(by_id[i])
        pick = sorted(int(k) for k in rng.choice(len(files), size=per_id, replace=False))
        out += [(files[k], i) for k in pick]
    return out


def _selection_options(request: DataRequest) -> tuple[int, int, int]:
    return (int(request.option("celeba_identities", 1000)), int(request.option("celeba_images_per_identity", 30)),
            int(request.option("celeba_selection_seed", 0)))


def _official(request: DataRequest, folder: Path) -> ImageDataset:
    n_ids, per_id, seed = _selection_options(request)
    selection = select_official(read_identities(folder), n_ids, per_id, seed, folder)
    key = {"layout": "official", "identities": n_ids, "per_identity": per_id, "seed": seed}
    return _official_entry(request, folder, selection, key, "celeba (official)")


def _official_entry(request: DataRequest, folder: Path, selection: list[tuple[str, int]], key: dict,
                    desc: str, require_attributes: bool = False) -> ImageDataset:
    """The cached dataset of the selected (file, identity id) pairs of the official layout."""
    images_dir = folder / OFFICIAL_IMAGES
    if not images_dir.is_dir():
        raise GnimeRayError(f"{images_dir}: missing; expected the folder of the aligned CelebA images "
                            f"(img_align_celeba/*.jpg)")
    paths = [images_dir / f for f, _ in selection]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise GnimeRayError(f"{folder / IDENTITY_FILE} names {len(missing)} selected images absent from "
                            f"{images_dir}, e.g. {missing[0].name}")
    attrs = read_attributes(folder)
    if attrs is None and require_attributes:
        raise GnimeRayError(f"{folder / ATTR_FILE}: missing; expected the attribute annotations of the official "
                            f"CelebA release")
    key = {**key, "size": SIZE, "crop": CROP_FRACTION, "files": source_fingerprint(paths, folder),
           "attributes": None if attrs is None else source_fingerprint([folder / ATTR_FILE], folder)}
    ids = sorted({i for _, i in selection})
    label_of = {i: k for k, i in enumerate(ids)}
    labels = np.array([label_of[i] for _, i in selection], dtype=np.int64)
    extras = {"labels": labels}
    names: tuple[str, ...] = ()
    if attrs is not None:
        names, table = attrs
        absent = [f for f, _ in selection if f not in table]
        if absent:
            raise GnimeRayError(f"{folder / ATTR_FILE}: no attributes for {len(absent)} selected images, "
                                f"e.g. {absent[0]}")
        extras["attributes"] = np.stack([table[f] for f, _ in selection])
    meta = {"layout": "official", "folder": str(folder), "files": [f for f, _ in selection],
            "identities": ids, "attribute_names": list(names), "key": key}

    def decode(path: Path) -> np.ndarray:
        img = read_image(path)
        return to_chw(img.crop(centre_square(*img.size, CROP_FRACTION)), SIZE)

    return _load_or_build(request, key, paths, decode, meta, extras, ids, desc)


def load_attribute_set(request: DataRequest, n_images: int) -> ImageDataset:
    """CelebA images for the attribute classifiers, disjoint from the inversion experiments: up to
    ``n_images`` files of identities OUTSIDE the selected subset (so no image and no person is
    shared), drawn by ``numpy.random.default_rng([selection seed, 1])``, cropped and resized like the
    subset, with their 40 attributes. Official layout with list_attr_celeba.txt only."""
    layout, folder = find_layout(request.root)
    if layout != "official":
        raise GnimeRayError(f"{folder}: the attribute classifiers need the official CelebA layout "
                            f"(img_align_celeba/, {IDENTITY_FILE}, {ATTR_FILE}); the cropped folders carry no "
                            f"attributes")
    n_ids, per_id, seed = _selection_options(request)
    identities = read_identities(folder)
    chosen = {i for _, i in select_official(identities, n_ids, per_id, seed, folder)}
    pool = sorted(f for f, i in identities.items() if i not in chosen)
    if len(pool) < 2:
        raise GnimeRayError(f"{folder / IDENTITY_FILE}: only {len(pool)} images outside the selected identities; "
                            f"the attribute classifiers need images disjoint from the inversion subset")
    rng = np.random.default_rng([seed, 1])
    files = sorted(rng.choice(pool, size=min(n_images, len(pool)), replace=False).tolist())
    if len(files) < n_images:
        request.log(f"celeba attributes: {len(files)} disjoint images available (asked for {n_images})")
    key = {"layout": "official", "purpose": "attributes", "identities": n_ids, "per_identity": per_id,
           "seed": seed, "n_images": n_images}
    return _official_entry(request, folder, [(f, identities[f]) for f in files], key, "celeba (attribute set)",
                           require_attributes=True)


def _cropped(request: DataRequest, folder: Path) -> ImageDataset:
    identities = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not identities:
        raise GnimeRayError(f"{folder}: no identity folders; expected {CROPPED}/<identity>/*.jpg")
    paths, labels = [], []
    for k, name in enumerate(identities):
        files = image_files(folder / name)
        if not files:
            raise GnimeRayError(f"{folder / name}: identity folder without images (expected *.jpg)")
        paths += files
        labels += [k] * len(files)
    key = {"layout": "cropped", "size": SIZE, "files": source_fingerprint(paths, folder)}
    meta = {"layout": "cropped", "folder": str(folder), "files": [str(p.relative_to(folder)) for p in paths],
            "identities": identities, "attribute_names": [], "key": key}
    return _load_or_build(request, key, paths, lambda p: to_chw(read_image(p), SIZE), meta,
                          {"labels": np.array(labels, dtype=np.int64)}, identities, "celeba (cropped)")


def _load_or_build(request: DataRequest, key: dict, paths: list, decode, meta: dict, extras: dict,
                   identities: list, desc: str) -> ImageDataset:
    entry = cache_entry(request, "celeba", key)
    if not entry.exists():
        entry = build_entry(entry, paths, decode, (3, SIZE, SIZE), meta, extras, request, desc,
                            texts={"identities.txt": "".join(f"{i}\n" for i in identities)})
    images, meta, arrays = load_entry(entry)
    attrs = arrays.get("attributes")
    return ImageDataset("celeba", images, torch.from_numpy(arrays["labels"]), num_classes=len(meta["identities"]),
                        attributes=None if attrs is None else torch.from_numpy(attrs),
                        attribute_names=tuple(meta["attribute_names"]) if attrs is not None else (),
                        info={"layout": meta["layout"], "folder": meta["folder"], "cache": str(entry),
                              "identities": len(meta["identities"])})


@register_dataset("celeba", locate=lambda root: find_layout(root)[1], shape=(3, 128, 128))
def load_celeba(request: DataRequest) -> ImageDataset:
    layout, folder = find_layout(request.root)
    return _cropped(request, folder) if layout == "cropped" else _official(request, folder)
