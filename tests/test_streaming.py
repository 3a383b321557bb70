"""Data reaches the device one batch at a time, and nothing changes numerically: GNIME and the
attackers trained from host rows (uint8 images, float16 maps) equal the previous in-memory loops
(everything as float32 on the device, indexed per batch) exactly, with the same seeds and batches
(the attackers' validation MSE, accumulated in float64 batch by batch, up to float64 rounding);
RND released batch by batch draws the same noise as one call; cached arrays are verified, rebuilt
when damaged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gnime_ray.attacks import build_attacker, reconstruct, train_attacker
from gnime_ray.data.host_rows import HostRows
from gnime_ray.data.registry import to_float
from gnime_ray.defenses import NoDefense, RndDefense
from gnime_ray.defenses.gnime import (
    GnimeConfig,
    GnimeModel,
    build_networks,
    gnime_step,
    make_optimisers,
    map_stats,
    train_gnime,
)
from gnime_ray.early_stopping import EarlyStopping
from gnime_ray.optim import KerasAdam
from gnime_ray.pipeline.cache import ArrayCorrupt, load_array, write_array
from gnime_ray.pipeline.defend import release_rows


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand((n, 1, 32, 32), generator=g).half()  # as stored
    images = (torch.rand((n, 1, 32, 32), generator=g) * 255).to(torch.uint8)
    logits = torch.randn((n, 10), generator=g)
    index = torch.randperm(n, generator=g)[: n * 3 // 4]  # a split of the full arrays
    return maps, images, logits, index


def _reference_gnime(maps32, logits, x, cfg, mu, sigma):
    """The previous in-memory loop: every array standardised/converted whole and on the device."""
    torch.manual_seed(cfg.seed)
    ng, inv = build_networks(tuple(maps32.shape[1:]), tuple(x.shape[1:]), logits.shape[1], cfg)
    model = GnimeModel(ng.train(), inv.train(), mu, sigma, cfg, {k: [] for k in ("l_adv", "l_clean", "l_dist",
                                                                                  "l_inv", "l_ng")})
    opt_ng, opt_inv = make_optimisers(model)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    e_std = model.standardise(maps32)
    n = maps32.shape[0]
    b = min(cfg.batch_size, n)
    steps = n // b  # the release's steps per epoch
    for _ in range(cfg.epochs):
        losses = [gnime_step(model, opt_ng, opt_inv, e_std[idx], logits[idx], x[idx])
                  for idx in (torch.randperm(n, generator=gen)[:b] for _ in range(steps))]
        for k in model.history:
            model.history[k].append(sum(step[k] / steps for step in losses))  # the epoch's mean, as the release
    return model


def test_streamed_gnime_equals_the_in_memory_loop():
    maps, images, logits, index = _data()
    cfg = GnimeConfig(lam=50.0, ng_width=0.0625, inv_width=0.0625, epochs=3, batch_size=16, lr=1e-3, seed=3)
    streamed = train_gnime(HostRows(maps, index), HostRows(logits, index), HostRows(images, index), cfg,
                           log=lambda _: None)
    maps32, x = maps[index].float(), to_float(images[index])
    mu, sigma = map_stats(HostRows(maps32))
    assert (mu, sigma) == (streamed.mu, streamed.sigma)
    assert mu == pytest.approx(maps32.double().mean().item(), rel=1e-12)
    assert sigma == pytest.approx(maps32.double().std().item(), rel=1e-12)  # ddof 1
    reference = _reference_gnime(maps32, logits[index], x, cfg, mu, sigma)
    assert streamed.history == reference.history
    for a, b in zip(streamed.ng.state_dict().values(), reference.ng.state_dict().values()):
        assert torch.equal(a, b)


def _reference_attacker(model, maps, logits, x, vmaps, vlogits, vx, epochs, batch_size, patience, lr, seed):
    opt = KerasAdam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    stopper = EarlyStopping(patience, mode="min")
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, perm.numel(), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.mse_loss(model(maps[idx], logits[idx]), x[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = ((model(vmaps, vlogits).clamp(0, 1) - vx).double() ** 2).mean().item()
        history.append(val)
        if stopper.step(val, epoch, model) and epoch < epochs:
            break
    stopper.restore(model)
    return history


def test_streamed_attacker_equals_the_in_memory_loop():
    maps, images, logits, index = _data(n=64, seed=1)
    train, val = index[:30], index[30:]
    kw = dict(epochs=4, batch_size=8, patience=2, lr=1e-3, seed=5)
    torch.manual_seed(0)
    a = build_attacker("expmi", (1, 32, 32), (1, 32, 32), 10, width=0.0625)
    torch.manual_seed(0)
    b = build_attacker("expmi", (1, 32, 32), (1, 32, 32), 10, width=0.0625)
    hist = train_attacker("expmi", a, HostRows(maps, train), HostRows(logits, train), HostRows(images, train),
                          HostRows(maps, val), HostRows(logits, val), HostRows(images, val),
                          device=torch.device("cpu"), log=lambda _: None, **kw)
    ref = _reference_attacker(b, maps[train].float(), logits[train], to_float(images[train]), maps[val].float(),
                              logits[val], to_float(images[val]), **kw)
    assert hist["val_mse"] == pytest.approx(ref, rel=1e-12)  # float64 sums of the same values, other order
    assert torch.equal(reconstruct(a, [HostRows(maps, val), HostRows(logits, val)]),
                       b(maps[val].float(), logits[val]).clamp(0, 1).detach())


def test_release_rows_without_defence_copies_nothing_and_rnd_batches_equal_one_draw():
    maps, images, logits, index = _data(n=1100)
    clean = HostRows(maps, index)
    assert release_rows(NoDefense(), clean, HostRows(logits, index), HostRows(images, index), seed=1) is clean
    rnd = RndDefense(0.004)
    batched = release_rows(rnd, clean, HostRows(logits, index), HostRows(images, index), seed=7, batch_size=512)
    whole = rnd.release(maps[index], logits[index], to_float(images[index]), 7)
    assert len(index) > 512 and torch.equal(batched.take(torch.arange(len(batched))), whole)


def test_cached_arrays_are_verified_and_damage_is_detected(tmp_path):
    path = tmp_path / "maps.f16.npy"
    data = np.random.default_rng(0).random((10, 1, 4, 4)).astype(np.float16)
    write_array(path, data.shape, np.float16, lambda arr: arr.__setitem__(slice(None), data))
    loaded = load_array(path)
    assert loaded.dtype == torch.float16 and torch.equal(loaded, torch.from_numpy(data))
    # a flipped byte in a file verified before: the marker no longer matches (mtime), the checksum fails
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ArrayCorrupt, match="SHA-256"):
        load_array(path)
    path.write_bytes(bytes(raw[:-8]))  # truncated
    with pytest.raises(ArrayCorrupt, match="truncated"):
        load_array(path)


def test_prepare_rebuilds_a_damaged_map_file(cache_dir):
    from gnime_ray.config import get_preset
    from gnime_ray.pipeline.prepare import prepare

    preset = get_preset("smoke")
    lines: list[str] = []
    first = prepare("digits", preset, explainers=["grad"], log=lambda _: None)
    key = ("grad", "paper")
    maps_file = first.cache_path / f"maps-grad-paper-b{preset.explain_batch_size}.f16.npy"
    assert maps_file.exists() and first.maps[key].dtype == torch.float16
    expected = first.maps[key].clone()
    raw = bytearray(maps_file.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    maps_file.write_bytes(bytes(raw))
    again = prepare("digits", preset, explainers=["grad"], log=lines.append)
    assert any("does not match the SHA-256" in l and "rebuilding it" in l for l in lines)
    assert torch.equal(again.maps[key], expected)  # recomputed, identical


def test_an_earlier_versions_entry_of_a_cached_dataset_is_named_then_rebuilt(cache_dir, tmp_path):
    """CelebA's prepare entries are keyed by the image cache's key now (no hash of every image byte):
    an entry an earlier version keyed by the bytes is not reused, and a line says so."""
    import json

    from fixtures import write_celeba_official

    from gnime_ray.config import get_preset
    from gnime_ray.pipeline.prepare import prepare

    data = tmp_path / "data"
    write_celeba_official(data, {i: 8 for i in range(1, 7)}, attrs=False)
    preset = get_preset("smoke", max_images=None)
    first = prepare("celeba", preset, explainers=["grad"], data_root=str(data), log=lambda _: None)
    old = first.cache_path.with_name("celeba-0123456789abcdef")  # as an earlier version would have named it
    first.cache_path.rename(old)
    meta = json.loads((old / "meta.json").read_text())
    meta.pop("key_version")
    (old / "meta.json").write_text(json.dumps(meta))
    lines: list[str] = []
    again = prepare("celeba", preset, explainers=["grad"], data_root=str(data), log=lines.append)
    assert sum("written by an earlier version (keyed by the images' bytes)" in l for l in lines) == 1
    assert not again.from_cache and again.cache_path == first.cache_path


def test_an_entry_made_before_the_lrp_and_adam_fixes_is_named_then_rebuilt(cache_dir):
    """Entries of cache schema 1 hold the flat-first-layer LRP and classifiers trained with
    PyTorch's Adam: other numbers under the same names, so they are never reused, and a line says so."""
    import json

    from gnime_ray.config import get_preset
    from gnime_ray.pipeline.prepare import prepare

    preset = get_preset("smoke")
    first = prepare("digits", preset, explainers=["grad"], log=lambda _: None)
    old = first.cache_path.with_name("digits-0123456789abcdef")  # schema 1's key for the same data
    first.cache_path.rename(old)
    meta = json.loads((old / "meta.json").read_text())
    meta.pop("schema")
    (old / "meta.json").write_text(json.dumps(meta))
    lines: list[str] = []
    again = prepare("digits", preset, explainers=["grad"], log=lines.append)
    assert sum("earlier version (LRP's flat first layer, PyTorch's Adam); rebuilding" in l for l in lines) == 1
    assert not again.from_cache and again.cache_path == first.cache_path


def test_deterministic_releases_are_computed_once_per_node_and_rnd_scratch_is_removed(cache_dir):
    from gnime_ray.cellspec import CellSpec
    from gnime_ray.config import get_preset
    from gnime_ray.pipeline.cell import run_cell
    from gnime_ray.pipeline.prepare import prepare

    preset = get_preset("smoke")
    prep = prepare("digits", preset, explainers=["lrp"], log=lambda _: None)
    released = prep.cache_root / "released"

    def files(pattern):
        return {p.name: p.stat().st_mtime_ns for p in released.glob(pattern)}

    run = lambda defense, seed: run_cell(CellSpec("digits", explainer="lrp", defense=defense, seed=seed), preset,
                                         prep=prep, log=lambda _: None)
    run("gnime", 0)
    assert len(files("gnime-*.npy")) == 3  # attack-train, attack-val, eval (the eval file also gave the matched MSE)
    first = run("ond", 0)
    ond = files("ond-*.npy")
    second = run("ond", 1)  # another attack seed: the same released maps, read from the node's files
    assert len(ond) == 3 and files("ond-*.npy") == ond and files("gnime-*.npy") != {}
    assert first["perturbation_mse"] == second["perturbation_mse"] and first["ssim"] != second["ssim"]
    run("rnd", 0)
    assert not files("tmp-*")  # RND's per-seed releases are scratch, removed with the cell


def test_batches_into_writes_every_batch_and_reports_its_progress(tmp_path):
    from gnime_ray.pipeline.prepare import batches_into

    lines = []
    rows = torch.arange(10.0)[:, None].repeat(1, 3)
    batches_into(tmp_path / "a.npy", 10, 4, np.float32, lambda i, j: rows[i:j] * 2, log=lines.append, what="f's logits",
                 every=0.0)
    assert np.array_equal(load_array(tmp_path / "a.npy"), (rows * 2).numpy())
    # a line after each batch but the last (its end is the caller's line), with the images done
    assert [line.split(" (")[0] for line in lines] == ["prepare: f's logits: 8/10 images"]
