"""The command-line vocabulary of `gnime-ray` (cli.py) and the study scripts (tune/scripts.py): one
spelling per concept, defined once.

| flag | meaning |
|---|---|
| ``--out`` | the results root (a path or s3://, gs://), for every command that reads or writes rows |
| ``--study`` | a study's name |
| ``--study-seed`` | the seed of prepare (split, f, f_E) and GNIME |
| ``--attack-seed`` | one attacker's seed (a cell, a row) |
| ``--attack-seeds`` | how many attack seeds each cell gets |
| ``--gnime-seeds`` | how many independently trained GNIMEs each configuration gets |
| ``--dest`` (``-o``) | the file or folder a command writes (figures, an exported defence) |
| ``--match`` | what RND's and OND's noise is matched to (one cell: one; a matrix or a report: a list) |

Earlier spellings (``--seed``, ``--seeds``, ``--name``, ``--final-gnime-seeds``, ``--output``, a
positional results root) are refused in one line naming the new one. ``HelpFormatter`` prints a
flag's default once, and only when it has one.
"""

from __future__ import annotations

import argparse
from typing import Any, Optional, Sequence

from . import GnimeRayError
from .cellspec import MATCHES
from .config import PRESETS

SUPPRESS = argparse.SUPPRESS


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps a program's description as written (its numbered steps and example lines), and
    appends ``(default: X)`` to a flag's help unless its help already names the default or it has
    none (None, False, empty, a suppressed default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, SUPPRESS, "", (), []) or not action.option_strings
                or isinstance(action, (argparse._HelpAction, Renamed))):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (tuple, list)) else default
        return f"{text} (default: {shown})"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (GnimeRayError), for every command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:
        raise GnimeRayError(f"{_where(self)}{message}")


def _where(parser: argparse.ArgumentParser) -> str:
    """``"matrix: "`` for ``gnime-ray matrix`` (the caller prints the program's name), ``""`` for
    a program's own parser."""
    words = parser.prog.split(maxsplit=1)
    return f"{words[1]}: " if len(words) > 1 else ""


class Renamed(argparse.Action):
    """An earlier spelling: using it is an error naming the new one (or why it is gone)."""

    def __init__(self, option_strings: Sequence[str], dest: str, instead: str = "", nargs: Any = "?", **kwargs: Any):
        self.instead = instead
        kwargs.pop("default", None)
        super().__init__(option_strings, dest=SUPPRESS, nargs=nargs, default=SUPPRESS, help=SUPPRESS)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        raise GnimeRayError(f"{_where(parser)}{option_string} is no longer a flag: {self.instead}")


class PositionalRoot(argparse.Action):
    """A results root given as a positional argument, as earlier versions took it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if values is not None:
            raise GnimeRayError(f"{_where(parser)}the results root is a flag now: --out {values}")


def renamed(parser: argparse.ArgumentParser, old: str, instead: str) -> None:
    parser.add_argument(old, action=Renamed, instead=instead)


def _count(text: str, low: int, flag: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
    return value


def seed(text: str) -> int:
    """An integer >= 0 (a seed)."""
    return _count(text, 0, "seed")


def positive(text: str) -> int:
    """An integer >= 1 (a count)."""
    return _count(text, 1, "count")


def numbers(text: str) -> tuple[float, ...]:
    """Comma-separated numbers."""
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_out(p: argparse.ArgumentParser, help: str = "results root: a path, or s3://bucket/prefix, gs://bucket/prefix "
                                                   "on a cluster") -> None:
    p.add_argument("--out", default="results", help=help)
    p.add_argument("legacy_out", nargs="?", action=PositionalRoot, help=SUPPRESS)


def add_study(p: argparse.ArgumentParser, default: Optional[str] = None, required: bool = False,
              help: str = "the study's name") -> None:
    p.add_argument("--study", default=default, required=required, help=help)
    renamed(p, "--name", "use --study")


def add_preset(p: argparse.ArgumentParser, default: str = "quick") -> None:
    p.add_argument("--preset", default=default,
                   help=f"training budgets: {', '.join(PRESETS)} (paper: the release's; quick: a CPU budget on real "
                        f"MNIST; demo: the ten-minute demo's; smoke: tests)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a preset field (repeatable), e.g. --set gnime_epochs=500")


def add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None,
                   help="the folder holding the datasets (default: $GNIME_RAY_DATA; mnist5k and digits need none)")


def add_study_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study-seed", type=seed, default=0, help="seed of prepare (split, f, f_E) and of GNIME")


def add_attack_seeds(p: argparse.ArgumentParser, default: int) -> None:
    p.add_argument("--attack-seeds", type=positive, default=default, help="attack seeds per cell")
    renamed(p, "--seeds", "use --attack-seeds")


def add_gnime_seeds(p: argparse.ArgumentParser, default: int, help: str) -> None:
    p.add_argument("--gnime-seeds", type=positive, default=default, help=help)
    renamed(p, "--final-gnime-seeds", "use --gnime-seeds")


def match_list(text: str) -> tuple[str, ...]:
    """``perturbation,utility`` -> ("perturbation", "utility"): a non-empty subset of MATCHES."""
    items = tuple(m.strip() for m in text.split(",") if m.strip())
    if not items or any(m not in MATCHES for m in items) or len(set(items)) < len(items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(MATCHES)}, got {text!r}")
    return items


def add_matches(p: argparse.ArgumentParser, default: Sequence[str]) -> None:
    p.add_argument("--match", type=match_list, default=tuple(default), metavar="M1,M2,...",
                   help="what RND's and OND's noise is matched to, comma-separated: perturbation (the paper's "
                        "protocol), utility (GNIME's DeePSiM at the paper's N), utility-topk (its top-k agreement), "
                        "each found on the selection images")


def add_dest(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("-o", "--dest", required=True, help=help)
    renamed(p, "--output", "use --dest (or -o)")
