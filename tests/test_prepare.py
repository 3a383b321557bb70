"""Prepare: classifier training, maps, the content-hash cache and its reuse."""

import torch

from gnime_ray.config import get_preset
from gnime_ray.data import load_dataset, make_split
from gnime_ray.models import build_classifier
from gnime_ray.pipeline import prepare
from gnime_ray.pipeline.fit import train_classifier


def test_classifier_learns_digits_quickly():
    ds = load_dataset("digits").head(600)
    s = make_split(len(ds), seed=0)
    torch.manual_seed(0)
    m = build_classifier("small", ds.image_shape, 10, width=0.25)
    hist = train_classifier(m, ds.images[s.target_train], ds.labels[s.target_train], ds.images[s.target_val],
                            ds.labels[s.target_val], epochs=4, batch_size=16, patience=3, lr=1e-3, seed=0,
                            device=torch.device("cpu"), log=lambda _: None)
    assert max(hist.val_score) >= 0.6  # chance is 0.1
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert not m.training


def test_prepare_caches_and_reuses(cache_dir):
    preset = get_preset("smoke")
    lines = []
    first = prepare("digits", preset, seed=1, log=lines.append)
    assert not first.from_cache and first.cache_path.parent.parent == cache_dir.absolute()
    assert set(first.maps) == {("grad", "paper"), ("gradcam", "paper"), ("lrp", "paper")}
    n = len(first.dataset)
    assert first.maps[("gradcam", "paper")].shape == (n, 1, 16, 16)
    assert first.maps[("lrp", "paper")].shape == (n, 1, 32, 32)
    assert 0 <= first.accuracies["target"] <= 1 and 0 <= first.accuracies["eval"] <= 1
    assert not any(p.name.endswith(".tmp") for p in first.cache_path.iterdir())
    # f and f_E are independent initialisations
    assert not torch.equal(first.target.layers[0].weight, first.eval_model.layers[0].weight)

    second = prepare("digits", preset, seed=1, log=lines.append)
    assert second.from_cache and second.cache_path == first.cache_path
    assert second.accuracies == first.accuracies
    for k in first.maps:
        assert torch.equal(first.maps[k], second.maps[k])
    for a, b in zip(first.target.parameters(), second.target.parameters()):
        assert torch.equal(a.cpu(), b.cpu())
    x = second.images(second.split.eval)
    assert torch.allclose(first.target(x), second.target(x))

    # another seed, another entry; another explainer variant, same classifiers
    assert prepare("digits", preset, seed=2, explainers=["grad"], log=lines.append).cache_path != first.cache_path
    std = prepare("digits", preset, seed=1, explainers=["gradcam"], variant="standard", log=lines.append)
    assert std.from_cache and std.maps[("gradcam", "standard")].shape == (n, 1, 32, 32)
