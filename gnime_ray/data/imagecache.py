"""The preprocessing cache of the large image datasets (CelebA, ImageNet-100, FaceScrub).

Decoding and resizing tens of thousands of JPEGs takes minutes, so it is done once: the decoded,
resized images are written as one uint8 ``.npy`` array (N, C, H, W), memory-mapped when read
back, beside a ``meta.json`` (the selection: files, labels, key fields) and optional extra arrays
(attributes). An entry is keyed by a content hash of the dataset, its layout, the selection
options, the output size and the source files' names and sizes, so editing the data on disk or
asking for another selection builds a new entry.

Building: images decode in parallel threads (PIL releases the GIL while decoding), in chunks of
256 that are appended to the ``.npy`` file as soon as they are decoded, so the builder holds one
chunk (25 MB at 3x128x128) plus a decoded image per thread, whatever the dataset's size (CelebA's
30,000 x 3 x 128 x 128 = 1.47 GB array is never in memory). A progress bar (tqdm, on stderr)
shows the count. Everything is written under a
temporary folder that is renamed into place at the end: an unreadable or truncated image, a
missing file or an interruption leaves no partial entry behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .. import GnimeRayError
from ..cachedir import resolve_cache_dir
from ..cellspec import content_hash
from .registry import DataRequest

CACHE_SCHEMA = 1
IMAGES_FILE = "images.npy"
META_FILE = "meta.json"

# A decoder maps one source (a path, or a (path, crop box) pair) to a (C, H, W) uint8 array.
Decoder = Callable[[object], np.ndarray]


def source_fingerprint(paths: Sequence[Path], root: Path) -> str:
    """A hash of the files' paths relative to ``root`` and their sizes (stat only, no reads)."""
    items = []
    for p in paths:
        try:
            items.append((str(p.relative_to(root)), p.stat().st_size))
        except FileNotFoundError:
            raise GnimeRayError(f"{p}: file listed for the dataset does not exist") from None
    return content_hash(items)


def cache_entry(request: DataRequest, dataset: str, key_fields: dict) -> Path:
    """The entry folder for these key fields under the request's cache directory (None: the
    default, ``$GNIME_RAY_CACHE`` or ``~/.cache/gnime_ray``)."""
    key = content_hash({"schema": CACHE_SCHEMA, "dataset": dataset, **key_fields})
    root = resolve_cache_dir(None if request.cache_dir is None else str(request.cache_dir))
    return root / "data" / f"{dataset}-{key}"


def load_entry(entry: Path) -> tuple[torch.Tensor, dict, dict[str, np.ndarray]]:
    """(images memory-mapped copy-on-write as a uint8 tensor, meta, extra arrays) of a built entry."""
    images = np.load(entry / IMAGES_FILE, mmap_mode="c")
    meta = json.loads((entry / META_FILE).read_text())
    extras = {p.stem: np.load(p) for p in sorted(entry.glob("*.npy")) if p.name != IMAGES_FILE}
    return torch.from_numpy(images), meta, extras


def build_entry(entry: Path, sources: Sequence[object], decode: Decoder, shape: tuple[int, int, int],
                meta: dict, extras: dict[str, np.ndarray], request: DataRequest, desc: str,
                texts: Optional[dict[str, str]] = None) -> Path:
    """Decode ``sources`` in parallel into ``entry`` (see the module docstring) and return it."""
    from tqdm import tqdm

    n = len(sources)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=entry.parent))
    try:
        header = np.lib.format.open_memmap(tmp / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=(n, *shape))
        offset = header.offset
        del header
        workers = max(1, min(8, os.cpu_count() or 1))
        chunk = 256
        with open(tmp / IMAGES_FILE, "r+b") as fh, ThreadPoolExecutor(workers) as pool, \
                tqdm(total=n, desc=desc, unit="img", mininterval=2.0, disable=not request.progress) as bar:
            fh.seek(offset)
            for start in range(0, n, chunk):
                batch = sources[start:start + chunk]
                arrays = list(pool.map(decode, batch))
                for src, arr in zip(batch, arrays):
                    if arr.shape != shape or arr.dtype != np.uint8:
                        raise GnimeRayError(f"{src}: decoded to {arr.dtype} {arr.shape}, expected uint8 {shape}")
                fh.write(np.stack(arrays).tobytes())
                bar.update(len(batch))
        for name, arr in extras.items():
            np.save(tmp / f"{name}.npy", arr)
        for name, text in (texts or {}).items():
            (tmp / name).write_text(text)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str) + "\n")
        if entry.exists():  # a concurrent builder finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    request.log(f"{desc}: {n} images {shape} cached at {entry}")
    return entry


def read_image(path: Path, box: Optional[tuple[float, float, float, float]] = None):
    """Open an image file fully (so truncation shows here) as RGB, optionally cropped to
    ``box`` = (left, upper, right, lower) in pixels. Raises GnimeRayError naming the path."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            img = im.convert("RGB")
    except FileNotFoundError:
        raise GnimeRayError(f"{path}: image file does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise GnimeRayError(f"{path}: unreadable or truncated image ({exc}); expected a complete JPEG or PNG "
                            f"file") from None
    if box is not None:
        img = img.crop(tuple(int(round(v)) for v in box))
    return img


def centre_square(width: int, height: int, fraction: float = 1.0) -> tuple[float, float, float, float]:
    """The centred square box of side ``fraction * min(width, height)``."""
    side = fraction * min(width, height)
    left, upper = (width - side) / 2, (height - side) / 2
    return left, upper, left + side, upper + side


def to_chw(img, size: int, channels: int = 3) -> np.ndarray:
    """A PIL image resized to size x size (bilinear, PIL's antialiasing filter when shrinking)
    -> (C, H, W) uint8."""
    from PIL import Image

    img = img.resize((size, size), Image.BILINEAR)
    if channels == 1:
        img = img.convert("L")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy()
