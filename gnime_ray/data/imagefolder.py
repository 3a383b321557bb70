"""ImageFolder-style datasets: ImageNet-100 (the target of the paper's fourth row) and FaceScrub
(the auxiliary attacker data of Table 2). Files are listed with torchvision's ImageFolder rules
(``torchvision.datasets.folder.make_dataset``: class folders, image extensions), decoded in
parallel into the preprocessing cache (imagecache.py).

imagenet100: ``imagenet100/[train/, val/]<wnid>/*.JPEG``. ``imagenet100/classes.txt`` (one wnid
per line) pins which classes and their label order; without it, every class folder in sorted
order is used (and the count is reported). Images from train/ then val/ (or the class folders
directly under imagenet100/) are concatenated. Each image is centre-cropped to a square and
resized to 256x256 (the paper: "resized to 256x256"; the square crop, rather than stretching,
is our choice).

facescrub: ``facescrub/<identity>/*.jpg`` face crops, label = the identity's index in sorted
folder order, resized to 128x128 like CelebA. Optional, in the same folder:
- ``facescrub_actors.txt`` / ``facescrub_actresses.txt`` (the official lists, tab-separated with
  a header naming ``name``, ``face_id`` and ``bbox`` = ``x1,y1,x2,y2``): images are then raw photos
  named ``<face_id>.<ext>`` or ``<anything>_<face_id>.<ext>`` in their identity's folder, and each
  is cropped to its bounding box first (images without a listed box are rejected);
- ``exclude.txt``: identity names (one per line; spaces and underscores are the same) removed
  before use, e.g. the identities that also appear in the target dataset (paper Sec. 5.1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .. import GnimeRayError
from .imagecache import build_entry, cache_entry, centre_square, load_entry, read_image, source_fingerprint, to_chw
from .registry import DataRequest, ImageDataset, register_dataset, resolve_root

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_SIZE = 256
FACESCRUB_SIZE = 128
CLASS_LIST = "classes.txt"
EXCLUDE_LIST = "exclude.txt"
BBOX_FILES = ("facescrub_actors.txt", "facescrub_actresses.txt")


def list_images(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """(path, label) of every image of ``classes`` (label = position in the list), torchvision's
    ImageFolder rules, ordered by label then path; a class folder without images is an error."""
    from torchvision.datasets.folder import make_dataset

    missing = [c for c in classes if not (folder / c).is_dir()]
    if missing:
        raise GnimeRayError(f"{folder}: no folder for {len(missing)} listed classes, e.g. {missing[0]}")
    try:
        items = make_dataset(str(folder), {c: i for i, c in enumerate(classes)}, extensions=EXTENSIONS)
    except FileNotFoundError as exc:
        raise GnimeRayError(f"{folder}: {exc}") from None
    return sorted(((Path(p), int(y)) for p, y in items), key=lambda t: t[1])


def _build(request: DataRequest, name: str, folder: Path, items: list, boxes: Optional[dict], size: int,
           classes: list[str], extra_key: dict, desc: str) -> ImageDataset:
    paths = [p for p, _ in items]
    key = {"size": size, "classes": classes, "files": source_fingerprint(paths, folder), **extra_key}
    entry = cache_entry(request, name, key)
    if not entry.exists():
        def decode(path: Path) -> np.ndarray:
            if boxes is not None:
                return to_chw(read_image(path, boxes[path]), size)
            img = read_image(path)
            return to_chw(img.crop(centre_square(*img.size)), size)

        meta = {"layout": extra_key.get("layout", "imagefolder"), "folder": str(folder), "classes": classes,
                "files": [str(p.relative_to(folder)) for p in paths], "key": key}
        entry = build_entry(entry, paths, decode, (3, size, size), meta,
                            {"labels": np.array([y for _, y in items], dtype=np.int64)}, request, desc,
                            texts={"classes.txt": "".join(f"{c}\n" for c in classes)})
    images, meta, arrays = load_entry(entry)
    return ImageDataset(name, images, torch.from_numpy(arrays["labels"]), num_classes=len(meta["classes"]),
                        info={"layout": meta["layout"], "folder": meta["folder"], "cache": str(entry),
                              "classes": len(meta["classes"])})


IMAGENET_EXPECTED = "imagenet100/[train/, val/]<wnid>/*.JPEG, with imagenet100/classes.txt listing the classes in order"


def _imagenet_folder(root: Optional[str]) -> Path:
    return resolve_root("imagenet100", root, ("imagenet100", "ImageNet-100"),
                        lambda p: (p / CLASS_LIST).is_file() or (p / "train").is_dir(), IMAGENET_EXPECTED)


@register_dataset("imagenet100", locate=_imagenet_folder, shape=(3, 256, 256))
def load_imagenet100(request: DataRequest) -> ImageDataset:
    expected = IMAGENET_EXPECTED
    folder = _imagenet_folder(request.root)
    parts = [folder / s for s in ("train", "val") if (folder / s).is_dir()] or [folder]
    list_file = folder / CLASS_LIST
    if list_file.is_file():
        classes = [c.strip() for c in list_file.read_text().splitlines() if c.strip()]
        if len(set(classes)) != len(classes) or not classes:
            raise GnimeRayError(f"{list_file}: expected distinct class folder names, one per line")
    else:
        classes = sorted(p.name for p in parts[0].iterdir() if p.is_dir())
        request.log(f"imagenet100: no {list_file}; using all {len(classes)} class folders of {parts[0]} in sorted order")
    items = [it for part in parts for it in list_images(part, classes)]
    if not items:
        raise GnimeRayError(f"{folder}: no images found; expected {expected}")
    return _build(request, "imagenet100", folder, items, None, IMAGENET_SIZE, classes,
                  {"layout": "imagefolder", "parts": [p.name for p in parts]}, "imagenet100")


def _norm(name: str) -> str:
    return name.strip().replace(" ", "_").lower()


def read_bboxes(folder: Path) -> Optional[dict[tuple[str, str], tuple[float, float, float, float]]]:
    """{(normalised identity, face_id): (x1, y1, x2, y2)} from the official lists, or None."""
    files = [folder / f for f in BBOX_FILES if (folder / f).is_file()]
    if not files:
        return None
    out = {}
    for path in files:
        lines = path.read_text().splitlines()
        header = lines[0].split("\t") if lines else []
        if not {"name", "face_id", "bbox"} <= set(header):
            raise GnimeRayError(f"{path}: expected a tab-separated header with name, face_id and bbox columns")
        col = {h: i for i, h in enumerate(header)}
        for n, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            parts = line.split("\t")
            try:
                box = tuple(float(v) for v in parts[col["bbox"]].split(","))
                if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
                    raise ValueError
            except (ValueError, IndexError):
                raise GnimeRayError(f"{path}:{n}: expected bbox as x1,y1,x2,y2 with x2 > x1 and y2 > y1") from None
            out[(_norm(parts[col["name"]]), parts[col["face_id"]].strip())] = box
    return out


FACESCRUB_EXPECTED = "facescrub/<identity>/*.jpg (face crops, or raw photos with facescrub_actors.txt/actresses.txt)"


def _facescrub_folder(root: Optional[str]) -> Path:
    return resolve_root("facescrub", root, ("facescrub", "FaceScrub"),
                        lambda p: p.name.lower() == "facescrub" and any(c.is_dir() for c in p.iterdir()),
                        FACESCRUB_EXPECTED)


@register_dataset("facescrub", locate=_facescrub_folder, shape=(3, 128, 128))
def load_facescrub(request: DataRequest) -> ImageDataset:
    expected = FACESCRUB_EXPECTED
    folder = _facescrub_folder(request.root)
    exclude_file = folder / EXCLUDE_LIST
    excluded = {_norm(n) for n in exclude_file.read_text().splitlines() if n.strip()} if exclude_file.is_file() else set()
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and _norm(p.name) not in excluded)
    if not classes:
        raise GnimeRayError(f"{folder}: no identity folders left (after {len(excluded)} exclusions); "
                            f"expected {expected}")
    items = list_images(folder, classes)
    boxes = read_bboxes(folder)
    by_path = None
    if boxes is not None:
        by_path = {}
        for path, y in items:
            face_id = path.stem.rsplit("_", 1)[-1]
            box = boxes.get((_norm(classes[y]), face_id))
            if box is None:
                raise GnimeRayError(f"{path}: no bounding box for identity {classes[y]!r}, face_id {face_id!r} in "
                                    f"{', '.join(f for f in BBOX_FILES if (folder / f).is_file())}")
            by_path[path] = box
    key = {"layout": "bbox" if boxes is not None else "crops", "excluded": sorted(excluded),
           "boxes": None if boxes is None else source_fingerprint([folder / f for f in BBOX_FILES
                                                                   if (folder / f).is_file()], folder)}
    return _build(request, "facescrub", folder, items, by_path, FACESCRUB_SIZE, classes, key, "facescrub")
