"""The digits dataset and the paper's split."""

import pytest
import torch

from gnime_ray import GnimeRayError
from gnime_ray.data import IMAGE_SHAPES, load_dataset, make_split


def test_digits_geometry_and_range():
    ds = load_dataset("digits")
    assert ds.image_shape == IMAGE_SHAPES["digits"]
    assert len(ds) == 1797 and ds.num_classes == 10
    assert ds.images.shape == (1797, 1, 32, 32) and ds.images.dtype == torch.uint8
    assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0
    assert sorted(ds.labels.unique().tolist()) == list(range(10))


def test_digits_resize_matches_bilinear_reference():
    """Pixel values equal a direct bilinear resize of scikit-learn's 8x8 images (align_corners=False)."""
    from sklearn.datasets import load_digits
    import numpy as np

    img = load_digits().images[5] / 16.0  # (8, 8)
    # bilinear, half-pixel centres: output pixel i samples input coordinate (i + 0.5) / 4 - 0.5
    coords = np.clip((np.arange(32) + 0.5) / 4 - 0.5, 0, 7)
    lo = np.floor(coords).astype(int)
    hi = np.minimum(lo + 1, 7)
    t = coords - lo
    rows = img[lo] * (1 - t)[:, None] + img[hi] * t[:, None]
    ref = rows[:, lo] * (1 - t)[None, :] + rows[:, hi] * t[None, :]
    got = load_dataset("digits").images[5, 0].float().numpy() / 255
    assert np.abs(got - ref).max() <= 0.5 / 255 + 1e-6


def test_split_sizes_disjoint_and_seeded():
    s = make_split(1797, seed=3, val_fraction=0.1)
    assert s.target.numel() == 898 and s.attack_train_full.numel() + s.eval.numel() == 899
    assert s.eval.numel() == 899 - round(0.8 * 899)
    parts = [s.target_train, s.target_val, s.attack_train, s.attack_val, s.eval]
    allidx = torch.cat(parts)
    assert allidx.numel() == 1797 and allidx.unique().numel() == 1797
    assert torch.equal(torch.cat([s.target_train, s.target_val]), s.target)
    assert torch.equal(torch.cat([s.attack_train, s.attack_val]), s.attack_train_full)
    assert torch.equal(make_split(1797, 3).eval, s.eval)
    assert not torch.equal(make_split(1797, 4).eval, s.eval)


def test_evaluation_split_divides_into_disjoint_seeded_select_and_test_images():
    s = make_split(1797, seed=3)
    n_eval = s.eval.numel()  # 180
    assert s.test.numel() == 90 and s.select.numel() == 90  # half for test by default
    both = torch.cat([s.select, s.test])
    assert torch.equal(both.sort().values, torch.arange(n_eval))  # disjoint, together the whole split
    assert torch.equal(s.select, s.select.sort().values) and torch.equal(s.test, s.test.sort().values)
    assert torch.equal(make_split(1797, 3).test, s.test) and not torch.equal(make_split(1797, 4).test, s.test)
    assert torch.equal(make_split(1797, 3, test_fraction=0.7).eval, s.eval)  # the division leaves eval alone
    assert make_split(1797, 3, test_fraction=0.7).test.numel() == 126
    assert make_split(40, 0, test_fraction=0.99).select.numel() == 1  # never an empty set
    for bad in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="test_fraction must be in"):
            make_split(1797, 3, test_fraction=bad)


def test_unknown_dataset_names_choices():
    with pytest.raises(GnimeRayError, match="unknown dataset 'nope'.*digits"):
        load_dataset("nope")
