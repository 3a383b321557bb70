"""Tiny datasets written in the real on-disk formats (no real data exists on the test machines).

Every image of class/identity k is one flat colour, ``colour(k)``, so a test can tell from the
decoded pixels which file an image came from and check the label mapping.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

ATTR_NAMES = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
              "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair "
              "Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face "
              "Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair "
              "Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()


def colour(k: int) -> tuple[int, int, int]:
    return (20 + 7 * k) % 256, (200 - 11 * k) % 256, (60 + 29 * k) % 256


def write_image(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (36, 44),
                centre: int = 0) -> None:
    """A JPEG (or PNG by suffix) of size (width, height) in colour ``rgb``; with ``centre`` > 0,
    black except for a centred centre x centre square of ``rgb``."""
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, (0, 0, 0) if centre else rgb)
    if centre:
        left, top = (size[0] - centre) // 2, (size[1] - centre) // 2
        ImageDraw.Draw(img).rectangle([left, top, left + centre - 1, top + centre - 1], fill=rgb)
    img.save(path, quality=95)


def write_mnist(root: Path, n_train: int = 30, n_test: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """root/MNIST/raw/* IDX files; returns (images (N, 28, 28), labels) in train+test order."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out_x, out_y = [], []
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = (labels[:, None, None] * 25).astype(np.uint8) * np.ones((1, 28, 28), np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
        out_x.append(images)
        out_y.append(labels)
    return np.concatenate(out_x), np.concatenate(out_y)


def write_cifar10(root: Path, per_batch: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """root/cifar-10-batches-py/ python pickles; returns (data (N, 3072), labels) in train+test order."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, fh)
        xs.append(data)
        ys.append(labels)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch}, fh)
    return np.concatenate(xs), np.concatenate(ys)


def write_celeba_official(root: Path, images_per_identity: dict[int, int], attrs: bool = True) -> Path:
    """root/celeba/{img_align_celeba/*.jpg, identity_CelebA.txt, list_attr_celeba.txt}: identity id
    -> number of images; image files numbered in id order; images 36x44, black with a centred
    24x24 square of colour(id) (the centre crop keeps only the square). Returns the celeba folder."""
    folder = root / "celeba"
    n, lines, attr_lines = 0, [], []
    for ident, count in images_per_identity.items():
        for _ in range(count):
            n += 1
            name = f"{n:06d}.jpg"
            write_image(folder / "img_align_celeba" / name, colour(ident), centre=24)
            lines.append(f"{name} {ident}")
            values = [1 if (n + j) % 3 == 0 else -1 for j in range(len(ATTR_NAMES))]
            attr_lines.append(name + " " + " ".join(f"{v:2d}" for v in values))
    (folder / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    if attrs:
        (folder / "list_attr_celeba.txt").write_text(f"{n}\n{' '.join(ATTR_NAMES)}\n" + "\n".join(attr_lines) + "\n")
    return folder


def write_celeba_cropped(root: Path, identities: list[str], per_identity: int) -> Path:
    folder = root / "celeba_cropped_1000"
    for k, name in enumerate(identities):
        for i in range(per_identity):
            write_image(folder / name / f"{i:03d}.jpg", colour(int(name)), size=(40, 40))
    return folder


def write_imagefolder(folder: Path, classes: list[str], per_class: int, size: tuple[int, int] = (50, 40)) -> None:
    for k, name in enumerate(classes):
        for i in range(per_class):
            write_image(folder / name / f"{name}_{i}.JPEG", colour(k), size=size)
