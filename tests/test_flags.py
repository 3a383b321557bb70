"""One vocabulary of flags (gnime_ray/flags.py) across `gnime-ray` and the study scripts, walked
parser by parser; and every command line the README and docs/ show names flags that exist."""

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gnime_ray import GnimeRayError
from gnime_ray.cli import build_parser, main
from gnime_ray.flags import HelpFormatter, Parser, PositionalRoot, Renamed

ROOT = Path(__file__).resolve().parents[1]
STUDY_SCRIPTS = ("quickstart", "celeba_lambda", "table1", "table2")
# spellings of earlier versions, each replaced by one of gnime_ray/flags.py
OLD = ("--seed", "--seeds", "--name", "--final-gnime-seeds", "--output")


def _script_parser(name: str) -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location(f"study_{name}", ROOT / "studies" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parser()


def _parsers() -> dict[str, argparse.ArgumentParser]:
    found = {}

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[prefix] = parser
        for action in subs:
            for name, child in action.choices.items():
                walk(f"{prefix} {name}", child)

    walk("gnime-ray", build_parser())
    for name in STUDY_SCRIPTS:
        found[f"studies/{name}.py"] = _script_parser(name)
        found[f"gnime-ray study {name}"] = _study_command_parser(name)
    return found


def _study_command_parser(name: str) -> argparse.ArgumentParser:
    """`gnime-ray study NAME`'s parser, as cli.py cmd_study builds it."""
    from gnime_ray.tune.named_studies import NAMED_STUDIES

    p = Parser(prog=f"gnime-ray study {name}", description=NAMED_STUDIES[name].description)
    NAMED_STUDIES[name].add_flags(p)
    return p


def test_the_study_command_and_the_scripts_name_the_same_studies():
    from gnime_ray.cli import NAMED_STUDIES as listed
    from gnime_ray.tune.named_studies import NAMED_STUDIES

    assert listed == tuple(NAMED_STUDIES) == STUDY_SCRIPTS
    for name in STUDY_SCRIPTS:  # the script and the command: one parser definition, the same flags and defaults
        a, b = _script_parser(name), _study_command_parser(name)
        assert [(x.option_strings, x.default) for x in a._actions] == [(x.option_strings, x.default) for x in b._actions]


PARSERS = _parsers()


def _visible(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.help != argparse.SUPPRESS]


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_one_spelling_per_flag(name):
    parser = PARSERS[name]
    flags = {o for a in _visible(parser) for o in a.option_strings}
    assert not flags & set(OLD), f"{name} still shows {sorted(flags & set(OLD))}"
    positionals = [a for a in _visible(parser) if not a.option_strings]
    if name == "gnime-ray validate-cluster":
        assert [a.dest for a in positionals] == ["files"]
    elif name == "gnime-ray study":  # NAME, then the named study's own flags (its parser is walked as well)
        assert [a.dest for a in positionals] == ["name", "flags"]
    else:
        assert not positionals, f"{name} takes positional arguments {[a.dest for a in positionals]}"
    names = {a.dest: a for a in parser._actions}
    if "out" in names or "legacy_out" in names:  # a command that reads or writes rows: --out, never a positional
        assert "--out" in flags and isinstance(names["legacy_out"], PositionalRoot)
    for concept in ("study", "study_seed", "attack_seed", "attack_seeds", "gnime_seeds"):
        if concept in names:
            assert names[concept].option_strings == [f"--{concept.replace('_', '-')}"], (name, concept)
    # every old spelling a parser knows is refused in one line naming the new one
    for action in parser._actions:
        if isinstance(action, Renamed):
            old = action.option_strings[0]
            with pytest.raises(GnimeRayError, match=f"{old} is no longer a flag: "):
                parser.parse_args(_required(parser) + [old, "1"])


def _required(parser: argparse.ArgumentParser) -> list[str]:
    args = []
    for a in parser._actions:
        if a.required and a.option_strings:
            args += [a.option_strings[-1], "digits" if a.dest == "dataset" else "x"]
        if a.dest == "files":
            args.append("x.yaml")
    return args


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_each_default_is_printed_once(name):
    formatter = HelpFormatter(prog=name)
    for action in _visible(PARSERS[name]):
        text = formatter._get_help_string(action) if action.option_strings else (action.help or "")
        assert text.count("(default:") <= 1 and "(default: None)" not in text, (name, action.dest, text)


def test_old_spellings_on_the_command_line():
    assert main(["matrix", "--dataset", "digits", "--seed", "3"]) == 2
    assert main(["table", "results", "--dataset", "digits"]) == 2


def test_old_spellings_name_the_new_one(capsys):
    main(["table", "results", "--dataset", "digits"])
    assert "the results root is a flag now: --out results" in capsys.readouterr().err
    main(["cell", "--dataset", "digits", "--seed", "3"])
    assert "--seed is no longer a flag: use --attack-seed" in capsys.readouterr().err


def _shown_commands() -> list[tuple[str, str]]:
    """(where, command line) for every gnime-ray / python studies ... / python -m ... command the
    README and docs/ show, continuation lines joined."""
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text().replace("\\\n", " ")
        for m in re.finditer(r"`((?:gnime-ray |python studies/|python benchmarks/|python -m gnime_ray)[^`]*)`", text):
            found.append((doc.name, m.group(1)))
        for line in text.splitlines():
            stripped = line.strip()
            if line.startswith("    ") and re.match(r"(gnime-ray |python studies/|python benchmarks/|python -m gnime_ray)", stripped):
                found.append((doc.name, stripped.split("  #")[0]))
    return found


def _help_of(command: list[str]) -> str:
    if command[0] == "gnime-ray":
        named = command[1] == "study" and command[2:3] and command[2] in STUDY_SCRIPTS  # not the placeholder NAME
        subcommand = command[1:3] if command[1] == "data" or named else command[1:2]
        proc = subprocess.run([sys.executable, "-m", "gnime_ray.cli", *subcommand, "--help"], capture_output=True,
                              text=True, cwd=ROOT)
    else:
        target = command[2:3] if command[1] == "-m" else command[1:2]
        proc = subprocess.run([sys.executable, *(["-m"] if command[1] == "-m" else []), *target, "--help"],
                              capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-1000:]
    return proc.stdout


@pytest.mark.slow  # one process per command's --help
def test_every_command_the_docs_show_names_flags_that_exist():
    helps: dict[tuple, str] = {}
    commands = _shown_commands()
    assert len(commands) > 20
    for where, line in commands:
        words = line.split()
        key = tuple(words[:3]) if words[0] == "gnime-ray" else tuple(words[:3] if words[1] == "-m" else words[:2])
        if key not in helps:
            helps[key] = _help_of(words)
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[key]), f"{where}: {line!r} uses {flag}"


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"make ([a-z-]+)", (ROOT / "README.md").read_text()))
    assert named and named <= targets, named - targets
