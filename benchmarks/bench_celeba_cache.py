#!/usr/bin/env python
"""Preprocessing-cache benchmark (numbers, no pass/fail): writes a synthetic CelebA in the official
layout (N identities x 30 aligned 178x218 JPEGs of noise, identity_CelebA.txt) to a temporary
folder, then builds the 128x128 cache of the paper's subset with the real loader and prints the
decode rate and the process's peak resident memory while building, then while memory-mapping it
back and reading every image once (split into anonymous memory and the mapped file's pages).

    python benchmarks/bench_celeba_cache.py                 # 1,000 identities x 30 = 30,000 images
    python benchmarks/bench_celeba_cache.py --identities 100
"""

import argparse
import resource
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def rss_split() -> str:
    """Current anonymous (process) and file-backed (page cache of mapped files, reclaimable) RSS."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith(("RssAnon", "RssFile")))
    return ", ".join(f"{k} {int(v.split()[0]) / 1024:.0f} MB" for k, v in fields.items())


def write_fake_celeba(root: Path, identities: int, per_identity: int) -> None:
    from PIL import Image

    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (218, 178, 3), dtype=np.uint8) for _ in range(16)]
    names = [f"{i + 1:06d}.jpg" for i in range(identities * per_identity)]

    def write(k: int) -> None:
        Image.fromarray(tiles[k % 16]).save(folder / names[k], quality=90)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(len(names))))
    lines = [f"{name} {k // per_identity + 1}" for k, name in enumerate(names)]
    (root / "celeba" / "identity_CelebA.txt").write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--identities", type=int, default=1000)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args()
    from gnime_ray.data import load_dataset

    tmp = Path(tempfile.mkdtemp(prefix="celeba-bench-"))
    try:
        t0 = time.perf_counter()
        write_fake_celeba(tmp / "data", args.identities, 30)
        print(f"wrote {args.identities * 30} JPEGs in {time.perf_counter() - t0:.0f}s "
              f"(peak RSS so far {peak_rss_mb():.0f} MB)", flush=True)
        opts = {"celeba_identities": args.identities, "celeba_images_per_identity": 30}
        t0 = time.perf_counter()
        ds = load_dataset("celeba", str(tmp / "data"), cache_dir=tmp / "cache", options=opts)
        build = time.perf_counter() - t0
        n = len(ds)
        print(f"built the cache of {n} images {ds.image_shape} ({n * ds.images[0].numel() / 1e9:.2f} GB uint8) in "
              f"{build:.0f}s: {n / build:.0f} images/s; peak RSS {peak_rss_mb():.0f} MB (now {rss_split()})", flush=True)
        t0 = time.perf_counter()
        again = load_dataset("celeba", str(tmp / "data"), cache_dir=tmp / "cache", options=opts)
        total = sum(int(again.images[i:i + 1024].sum()) % 7 for i in range(0, n, 1024))
        print(f"memory-mapped it back and read every image in {time.perf_counter() - t0:.1f}s (checksum {total}); "
              f"peak RSS {peak_rss_mb():.0f} MB (now {rss_split()}: the mapped file's pages are page cache, "
              f"dropped under memory pressure)")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
