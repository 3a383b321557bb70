#!/usr/bin/env python
"""CelebA at full size: one copy of the maps per node, whatever the number of attackers (numbers,
no pass/fail; the goals are printed beside them).

1. Builds once (kept under --work) a synthetic CelebA in the official layout: 1,000 identities x 30
   aligned 178x218 JPEGs (benchmarks/bench_celeba_cache.py's generator), and its 3x128x128 image cache.
2. Prepares Grad maps of all 30,000 images at full size (the classifier narrowed and trained for one
   epoch with --set so that this takes minutes on a CPU; the data sizes stay full): a float16 array
   of 30,000 x 3 x 128 x 128 in the node cache.
3. For K = 1, 2, 4: starts a private local Ray and runs K concurrent attackers (ExpMI without
   defence, the smoke preset's attacker budget: 2 epochs of batches of 32, a 1/16-width network) as
   the study runs a trial's attackers: in one attack pool, a process whose K threads attack at once
   (tune/attack_pool.py; ``--one-process-each``: K processes of one attacker each, the layout before attack
   pools, for comparison), sampling every half second the memory of the node: every Ray worker's anonymous
   memory (private: heaps and any copy of data; what it cannot share), the cached arrays the
   workers memory-map counted once per file (page cache: one copy per node, however many workers
   read it; the largest resident size any worker maps), and the object store's used bytes. RSS
   would count the shared arrays once per process and PSS splits them only among the workers that
   happened to touch a page; both are printed for comparison. Prints per K the peak, and the
   growth of the workers' private memory per extra attacker, beside the private memory of one idle
   worker that has only imported torch and gnime_ray (the fixed cost of any extra process).

The attackers' processes allocate with jemalloc as a study's attack pools do (``--allocator system``:
the C library's malloc; tune/resources.py says why).

Its last line is one JSON object: maps_bytes, images_bytes, tasks (the K: attackers at once),
layout, allocator, peak_node_bytes (per K), growth_per_extra_task_bytes (per extra attacker, of the workers'
private memory), idle_worker_bytes, growth_beyond_idle_worker_bytes (in the process layout),
processes, workers_private_bytes, max_worker_private_bytes, mapped_arrays_bytes, summed_pss_bytes, summed_rss_bytes, wall_seconds, and the goals: growth per
extra attacker under 10% of maps_bytes; the whole run under 1.5 x (maps + images) + 1 GB per process.

    python benchmarks/bench_scale.py                       # full size (about 15 minutes the first time here)
    python benchmarks/bench_scale.py --identities 100      # 3,000 images, a quick look
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def synthetic_celeba(work: Path, identities: int, log) -> Path:
    """A data root holding a synthetic CelebA of ``identities`` x 30 aligned JPEGs in the official
    layout, written once under ``work`` (benchmarks/bench_celeba_cache.py's generator)."""
    from bench_celeba_cache import write_fake_celeba

    data = work / f"celeba-{identities}"
    if not (data / "ready").exists():
        t0 = time.perf_counter()
        shutil.rmtree(data, ignore_errors=True)
        write_fake_celeba(data, identities, 30)
        (data / "ready").write_text("")
        log(f"wrote {identities * 30} synthetic aligned JPEGs under {data} in {time.perf_counter() - t0:.0f}s")
    return data


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _smaps(pid: int) -> tuple[dict[str, int], dict[str, int]]:
    """(totals, resident bytes per mapped .npy file) of one process, from /proc/PID/smaps."""
    totals: dict[str, int] = {}
    files: dict[str, int] = {}
    current = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
            current = head[5] if len(head) >= 6 and head[5].endswith(".npy") else None
        elif len(head) == 3 and head[0].endswith(":") and head[2] == "kB":
            key, value = head[0][:-1], int(head[1]) * 1024
            totals[key] = totals.get(key, 0) + value
            if current is not None and key == "Rss":
                files[current] = files.get(current, 0) + value
    return totals, files


def worker_memory() -> dict[str, float]:
    """This driver's Ray worker processes, in bytes: their anonymous memory (private: heaps, copies;
    what a process cannot share) summed and at most; the cached arrays they map (.npy files: page
    cache, one copy per node) counted once per file (the largest resident size any worker maps);
    and for comparison the summed PSS and RSS (RSS counts every shared page once per process)."""
    anon = anon_max = pss = rss = 0.0
    files: dict[str, int] = {}
    for pid in _descendants(os.getpid()):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if not title.startswith("ray::") or "Agent" in title:
                continue  # Ray's own agents and services are not workers
            totals, mapped = _smaps(pid)
        except (OSError, ValueError, IndexError):
            continue
        anon, anon_max = anon + totals.get("Anonymous", 0), max(anon_max, totals.get("Anonymous", 0))
        pss, rss = pss + totals.get("Pss", 0), rss + totals.get("Rss", 0)
        for f, b in mapped.items():
            files[f] = max(files.get(f, 0), b)
    return {"anon": anon, "anon_max": anon_max, "files": float(sum(files.values())), "pss": pss, "rss": rss}


def object_store_used() -> float:
    """Bytes in the local object store (from Ray's memory summary; 0 when it cannot be read)."""
    from ray._private.internal_api import memory_summary

    try:
        text = memory_summary(stats_only=True)
    except Exception:
        return 0.0
    hit = re.search(r"Plasma memory usage (\d+) MiB", text)
    return float(hit.group(1)) * 2**20 if hit else 0.0


def idle_worker_baseline() -> float:
    """The anonymous memory of one Ray worker that has imported what an attacker imports (torch,
    gnime_ray) and holds no data: the fixed cost of every extra process."""
    import ray

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")

    @ray.remote(num_cpus=1)
    def idle() -> None:
        import torch  # noqa: F401

        import gnime_ray.tune.attack_pool  # noqa: F401
        time.sleep(4)

    ref = idle.remote()
    time.sleep(3)
    anon = worker_memory()["anon"]
    ray.get(ref)
    ray.shutdown()
    return anon


def run_attackers(k: int, spec, placement, pooled: bool, log) -> dict[str, float]:
    import ray

    from gnime_ray.cellspec import CellSpec
    from gnime_ray.tune.attack_pool import attack_batch
    from gnime_ray.tune.resources import pool_options

    ray.init(address="local", num_cpus=k, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    peak = {"node": 0.0, "anon": 0.0, "anon_max": 0.0, "files": 0.0, "pss": 0.0, "rss": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            m = worker_memory()
            node = m["anon"] + m["files"] + object_store_used()
            peak.update(node=max(peak["node"], node), **{k: max(peak[k], m[k]) for k in m})
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    cells = [CellSpec("celeba", explainer="grad", defense="none", seed=s).to_dict() for s in range(k)]
    batches = [cells] if pooled else [[c] for c in cells]  # one pool of K threads, or K processes
    options = [pool_options(len(b), 0.0, 1.0, placement.pool_allocator) for b in batches]
    tasks = [ray.remote(attack_batch).options(num_cpus=o["num_cpus"], runtime_env=o["runtime_env"], max_retries=0)
             .remote(b, spec, placement, None, f"bench-{k}") for b, o in zip(batches, options)]
    rows = [r for batch in ray.get(tasks) for r in batch]
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    ray.shutdown()
    assert all(r["status"] == "finished" for r in rows), rows
    log(f"K={k}: {k} attackers in {len(batches)} process(es) in {wall:.0f}s; node peak {peak['node'] / 1e9:.2f} GB = workers' private memory "
        f"{peak['anon'] / 1e9:.2f} GB (largest {peak['anon_max'] / 1e9:.2f}) + mapped arrays once "
        f"{peak['files'] / 1e9:.2f} GB + object store; summed PSS {peak['pss'] / 1e9:.2f} GB, summed RSS "
        f"{peak['rss'] / 1e9:.2f} GB")
    return {**peak, "wall": wall}


def main() -> int:
    from gnime_ray.tune.placement import ALLOCATORS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--identities", type=int, default=1000, help="CelebA identities of 30 images each")
    p.add_argument("--tasks", default="1,2,4", help="numbers of concurrent attackers")
    p.add_argument("--one-process-each", action="store_true",
                   help="run each attacker in a process of its own (the layout before attack pools) instead of "
                        "K threads of one attack pool")
    p.add_argument("--allocator", choices=ALLOCATORS, default="jemalloc",
                   help="malloc of the attackers' processes, as a study's --pool-allocator (tune/resources.py)")
    p.add_argument("--work", default=None,
                   help="where the synthetic data and its cache are kept (default: $GNIME_RAY_CACHE/bench-scale, "
                        "else ~/.cache/gnime_ray/bench-scale)")
    args = p.parse_args()
    from gnime_ray import echo
    from gnime_ray.cachedir import resolve_cache_dir
    from gnime_ray.config import get_preset
    from gnime_ray.tune.resources import JEMALLOC_CONF, pool_options
    from gnime_ray.study.spec import StudySpec
    from gnime_ray.tune.placement import Placement
    from gnime_ray.tune.tasks import prepared

    work = Path(args.work) if args.work else resolve_cache_dir() / "bench-scale"
    data = synthetic_celeba(work, args.identities, echo)
    smoke = get_preset("smoke").to_dict()  # the smoke attacker budget; data and evaluation as the paper preset
    preset = get_preset("paper", "celeba", celeba_identities=args.identities, celeba_images_per_identity=30,
                        classifier_width=0.0625, classifier_epochs=1, classifier_patience=1, explain_batch_size=256,
                        **{k: smoke[k] for k in ("net_width", "attack_epochs", "attack_patience", "attack_batch_size")})
    out = tempfile.mkdtemp(prefix="bench-scale-out-")
    atexit.register(shutil.rmtree, out, True)  # the rows and the published artifacts (3 GB at full size)
    spec = StudySpec(name="bench-scale", dataset="celeba", out=out, explainers=("grad",), preset=preset,
                     data_root=str(data), cache_dir=str(work / "cache"))
    placement = Placement(use_gpu=False, pool_allocator=args.allocator)
    t0 = time.perf_counter()
    prep = prepared(spec, "cpu")
    maps_file = prep.cache_path / f"maps-grad-paper-b{preset.explain_batch_size}.f16.npy"
    maps_bytes = maps_file.stat().st_size
    images_bytes = prep.dataset.images.numel()
    echo(f"prepare: {len(prep.dataset)} images {prep.dataset.image_shape}, Grad maps {tuple(prep.maps[('grad', 'paper')].shape)} "
         f"float16 = {maps_bytes / 1e9:.2f} GB (float32 would be {2 * maps_bytes / 1e9:.2f} GB), images "
         f"{images_bytes / 1e9:.2f} GB uint8 ({time.perf_counter() - t0:.0f}s)")
    del prep
    tasks = [int(k) for k in args.tasks.split(",")]
    baseline = idle_worker_baseline()
    echo(f"one idle worker with torch and gnime_ray imported: {baseline / 1e9:.2f} GB of private memory (the fixed "
         f"cost of a process)")
    layout = "a process per attacker" if args.one_process_each else "one attack pool"
    echo(f"attackers run in {layout}, allocating with {args.allocator}"
         f"{' (' + JEMALLOC_CONF + ')' if pool_options(1, 0.0, 1.0, args.allocator)['runtime_env'] else ''}")
    peaks = {k: run_attackers(k, spec, placement, not args.one_process_each, echo) for k in tasks}
    growth = (peaks[tasks[-1]]["anon"] - peaks[tasks[0]]["anon"]) / max(1, tasks[-1] - tasks[0])
    processes = {k: k if args.one_process_each else 1 for k in tasks}
    budget = {k: 1.5 * (maps_bytes + images_bytes) + 1e9 * processes[k] for k in tasks}
    beyond = growth - baseline if args.one_process_each else growth  # a thread of a pool is no extra process
    echo(f"growth per extra attacker: {growth / 1e9:.3f} GB = {100 * growth / maps_bytes:.1f}% of the maps "
         f"(goal: under 10%)" + (f"; beyond an idle worker's {baseline / 1e9:.2f} GB: {beyond / 1e9:.3f} GB = "
                                 f"{100 * beyond / maps_bytes:.1f}% of the maps" if args.one_process_each else
                                 f"; one process per attacker would add the idle worker's {baseline / 1e9:.2f} GB "
                                 f"on top"))
    for k in tasks:
        echo(f"K={k}: node peak {peaks[k]['node'] / 1e9:.2f} GB, budget 1.5 x (maps + images) + 1 GB x "
             f"{processes[k]} process(es) = {budget[k] / 1e9:.2f} GB: "
             f"{'within' if peaks[k]['node'] <= budget[k] else 'OVER'}")
    print(json.dumps({"maps_bytes": maps_bytes, "images_bytes": images_bytes, "tasks": tasks, "layout": layout,
                      "allocator": args.allocator,
                      "peak_node_bytes": [round(peaks[k]["node"]) for k in tasks],
                      "growth_per_extra_task_bytes": round(growth),
                      "idle_worker_bytes": round(baseline),
                      "growth_beyond_idle_worker_bytes": round(beyond),
                      "processes": [processes[k] for k in tasks],
                      "workers_private_bytes": [round(peaks[k]["anon"]) for k in tasks],
                      "max_worker_private_bytes": [round(peaks[k]["anon_max"]) for k in tasks],
                      "mapped_arrays_bytes": [round(peaks[k]["files"]) for k in tasks],
                      "summed_pss_bytes": [round(peaks[k]["pss"]) for k in tasks],
                      "summed_rss_bytes": [round(peaks[k]["rss"]) for k in tasks],
                      "wall_seconds": [round(peaks[k]["wall"], 1) for k in tasks],
                      "growth_goal_met": growth < 0.1 * maps_bytes,
                      "budget_met": all(peaks[k]["node"] <= budget[k] for k in tasks)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
