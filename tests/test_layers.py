"""The package's layering (gnime_ray/__init__.py's docstring) holds in the code: every import of a
gnime_ray module names its own layer or an earlier one, only gnime_ray/tune/ imports ray, and
gnime_ray/study/ imports nothing from pipeline, report or tune."""

import ast
import re
from pathlib import Path

import gnime_ray

PACKAGE = Path(gnime_ray.__file__).resolve().parent


def _layers() -> list[str]:
    line = next(l for l in gnime_ray.__doc__.splitlines() if l.strip().startswith("base ->"))
    return [name.strip() for name in line.split("->")]


def _layer_of(module: str, layers: list[str]) -> str:
    """'gnime_ray.study.spec' -> 'study'; a top-level module ('gnime_ray.config') is 'base', except
    the commands cli and bench."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()):
        return parts[1]
    return "cli" if parts[-1] in ("cli", "bench") else "base"


def _is_module(name: str) -> bool:
    where = PACKAGE.parent / name.replace(".", "/")
    return where.with_suffix(".py").exists() or where.is_dir()


def _imports(path: Path) -> list[str]:
    """The absolute names of the modules ``path`` imports (relative imports resolved)."""
    module = ".".join(("gnime_ray",) + path.relative_to(PACKAGE).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names += [base] + [f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}")]
    return names


def test_the_docstring_names_every_package():
    layers = _layers()
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert set(packages) <= set(layers), f"packages missing from the layer line: {set(packages) - set(layers)}"
    assert len(set(layers)) == len(layers)


def test_every_import_goes_down_the_layers():
    layers = _layers()
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("gnime_ray",) + path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        if module == "gnime_ray":  # gnime_ray.Protector: a lazy re-export of the public API (the docstring)
            continue
        own = layers.index(_layer_of(module, layers))
        for name in _imports(path):
            if name.startswith("gnime_ray.") and layers.index(_layer_of(name, layers)) > own:
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_only_the_ray_engine_imports_ray_and_the_study_imports_no_engine():
    for path in sorted(PACKAGE.rglob("*.py")):
        names = _imports(path)
        rel = path.relative_to(PACKAGE).as_posix()
        if any(n == "ray" or n.startswith("ray.") for n in names):
            assert rel.startswith("tune/"), f"{rel} imports ray"
        if rel.startswith("study/"):
            assert not [n for n in names if re.match(r"gnime_ray\.(pipeline|report|tune|cli)\b", n)], rel


def test_every_name_imported_from_gnime_ray_exists():
    """Imports inside functions run only when their command does: each ``from gnime_ray... import
    name`` in the package, the study scripts, the benchmarks and the tests names something that exists."""
    import importlib

    root = PACKAGE.parent
    missing = []
    for path in sorted([*PACKAGE.rglob("*.py"), *(root / "studies").glob("*.py"), *(root / "benchmarks").glob("*.py"),
                        *(root / "tests").glob("*.py")]):
        module = ".".join(("gnime_ray",) + path.relative_to(PACKAGE).with_suffix("").parts) \
            if path.is_relative_to(PACKAGE) else ""
        package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if not (base == "gnime_ray" or base.startswith("gnime_ray.")):
                continue
            target = importlib.import_module(base)
            missing += [f"{path.relative_to(root)}: {base}.{a.name}" for a in node.names
                        if not hasattr(target, a.name) and not _is_module(f"{base}.{a.name}")]
    assert not missing, "\n".join(missing)
