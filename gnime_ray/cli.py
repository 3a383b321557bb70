"""The ``gnime-ray`` command line.

Errors caused by the user's input print one line (``gnime-ray: error: ...``) and exit with
status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Sequence

from . import GnimeRayError
from .config import PRESETS, get_preset, parse_overrides


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + error
        raise GnimeRayError(f"{self.prog}: {message}")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="dataset name (digits ships with scikit-learn)")
    p.add_argument("--preset", default="quick", help=f"training budgets: {', '.join(PRESETS)} (default: quick)")
    p.add_argument("--seed", type=_seed, default=0, help="study seed (default: 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a preset field, e.g. --set classifier_epochs=20 (repeatable)")
    p.add_argument("--cache-dir", default=None,
                   help="cache directory (default: $GNIME_RAY_CACHE, else ~/.cache/gnime_ray)")
    p.add_argument("--data-root", default=None, help="root of a dataset on disk (not needed for digits)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gnime-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("prepare", help="train the target f and f_E, compute and cache the maps")
    _add_common(p)
    p.add_argument("--explainers", default="grad,gradcam,lrp", help="comma-separated (default: grad,gradcam,lrp)")
    p.add_argument("--variant", default="paper", help="explainer variant: paper or standard (default: paper)")
    return parser


def cmd_prepare(args: argparse.Namespace) -> int:
    from .pipeline import prepare

    preset = get_preset(args.preset, **parse_overrides(args.overrides))
    explainers = [e.strip() for e in args.explainers.split(",") if e.strip()]
    t0 = time.perf_counter()
    prep = prepare(args.dataset, preset, args.seed, explainers=explainers, variant=args.variant,
                   cache_dir=args.cache_dir, data_root=args.data_root, device=args.device)
    wall = time.perf_counter() - t0
    sizes = prep.split.sizes()
    print(f"dataset {args.dataset}: {len(prep.dataset)} images {prep.dataset.image_shape}; split target "
          f"{sizes['target']} (train {sizes['target_train']}, val {sizes['target_val']}), attack-train "
          f"{sizes['attack_train']} (+ val {sizes['attack_val']}), eval {sizes['eval']}")
    src = "loaded from cache" if prep.from_cache else "trained"
    print(f"target f   accuracy on the eval split: {prep.accuracies['target']:.4f} ({src})")
    print(f"eval f_E   accuracy on the eval split: {prep.accuracies['eval']:.4f} ({src})")
    for (name, variant), maps in prep.maps.items():
        print(f"maps {name:8s} ({variant}): {tuple(maps.shape)} in [{maps.min().item():.2f}, {maps.max().item():.2f}]")
    print(f"cache: {prep.cache_path}")
    print(f"done in {wall:.1f}s")
    return 0


COMMANDS = {"prepare": cmd_prepare}


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (GnimeRayError, ValueError) as exc:
        print(f"gnime-ray: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gnime-ray: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
