"""The cache's file primitives (gnime_ray/cachedir.py): a file is written whole or not at all, and a
shared file is computed by one process (or thread) of the node while the others wait and read it."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from gnime_ray.cachedir import atomic_path, file_lock
from gnime_ray.data.host_rows import HostRows
from gnime_ray.pipeline.defend import release_rows


def test_atomic_path_moves_a_finished_file_into_place_and_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"first")
        assert not target.exists() and tmp.parent == target.parent
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]  # no temporary left behind


def test_file_lock_excludes_threads_of_one_process(tmp_path):
    inside, overlaps = [], []

    def work() -> None:
        with file_lock(tmp_path / "shared.npy"):
            inside.append(1)
            overlaps.append(len(inside))
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1, 1, 1, 1]


class _CountingDefense:
    """A deterministic defence that counts its batches and takes its time, so that concurrent
    callers would overlap without the lock."""
    name = "counting"

    def __init__(self) -> None:
        self.batches = 0
        self.guard = threading.Lock()

    def release(self, e, y, x, seed):
        with self.guard:
            self.batches += 1
        time.sleep(0.02)
        return (e * 0.5 + 0.25).float()


def test_a_shared_released_file_is_computed_once_while_the_other_attackers_wait(tmp_path):
    gen = np.random.default_rng(0)
    clean = HostRows(torch.from_numpy(gen.random((40, 1, 4, 4), dtype=np.float32)))
    logits = HostRows(torch.zeros(40, 3))
    images = HostRows(torch.zeros(40, 1, 4, 4))
    defense, path, results = _CountingDefense(), tmp_path / "released" / "gnime-x.npy", []

    def attacker() -> None:
        rows = release_rows(defense, clean, logits, images, seed=0, path=path, batch_size=8)
        results.append(rows.take(torch.arange(40)))

    threads = [threading.Thread(target=attacker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert defense.batches == 5  # 40 rows in batches of 8, computed by one thread only
    expected = clean.take(torch.arange(40)) * 0.5 + 0.25
    assert len(results) == 3 and all(torch.equal(r, expected) for r in results)
