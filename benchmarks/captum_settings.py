#!/usr/bin/env python
"""What Captum's sampled methods cost per image, and how far their maps move, at each step or sample
count (numbers, no pass/fail; docs/explainers.md keeps the output and the defaults it led to).

Integrated Gradients, SmoothGrad and GradientSHAP cost in proportion to their steps or samples. For
each count this times the released maps (|attribution| min-max per image and channel, as every
defence and attacker sees them) on a batch of evaluation images through the preset's target
classifier (prepare's, from the cache when it is there), and compares them with the maps at a
high reference count: the mean and the 5th percentile over images of the per-image Pearson
correlation. A count whose maps correlate at 0.95 or more with the reference's is one an attacker
and a defence see as nearly the same map; the cheapest such count is printed per method.

    python benchmarks/captum_settings.py --dataset mnist5k --preset quick --images 256
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# method -> (its count's preset field, the counts timed, the reference count)
COUNTS = {"ig": ("ig_steps", (4, 8, 16, 32), 128),
          "smoothgrad": ("smoothgrad_samples", (2, 4, 8, 16), 64),
          "gradshap": ("gradshap_samples", (2, 4, 8, 16), 64)}
AGREEMENT = 0.95


def correlations(a, b):
    """Per-image Pearson correlation of two batches of maps (N, ...)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--preset", default="quick")
    p.add_argument("--images", type=int, default=256, help="evaluation images explained (one batch)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--data-root", default=None)
    args = p.parse_args()
    import torch

    from gnime_ray import echo
    from gnime_ray.config import get_preset
    from gnime_ray.data.registry import to_float
    from gnime_ray.explain import explainer_settings, get_explainer
    from gnime_ray.models.training_format import cpu_info
    from gnime_ray.pipeline.prepare import prepare

    preset = get_preset(args.preset, args.dataset)
    prep = prepare(args.dataset, preset, explainers=("grad",), cache_dir=args.cache_dir, data_root=args.data_root,
                   device="cpu", log=echo)
    x = to_float(prep.dataset.images[prep.split.eval[:args.images]])
    model = prep.target.eval()
    cpu, _ = cpu_info()
    print(f"\n{args.dataset}, preset {args.preset}: {len(x)} evaluation images through f (accuracy "
          f"{prep.accuracies['target']:.3f}); {cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'method':11s} {'count':>12s} {'ms/image':>9s} {'corr mean':>10s} {'corr p5':>8s}  (against the reference count)")
    for name, (field, counts, reference) in COUNTS.items():
        base = explainer_settings(name, preset)
        ref = get_explainer(name, settings={**base, field: reference})(model, x)
        cheapest = None
        for count in counts:
            fn = get_explainer(name, settings={**base, field: count})
            t0 = time.perf_counter()
            maps = fn(model, x)
            ms = 1000 * (time.perf_counter() - t0) / len(x)
            r = correlations(maps, ref)
            mean, p5 = r.mean().item(), r.quantile(0.05).item()
            if cheapest is None and mean >= AGREEMENT:
                cheapest = count
            print(f"{name:11s} {field + ' ' + str(count):>12s} {ms:9.1f} {mean:10.3f} {p5:8.3f}")
        print(f"{name:11s} reference {field} {reference}; the cheapest count at mean correlation >= {AGREEMENT}: "
              f"{cheapest if cheapest is not None else 'none of those timed'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
