"""The package layout is the data flow: each package imports only packages below it, never in a circle.
The tests follow it: a test module imports the library and tests/helpers (or uses conftest fixtures),
never another test module.

Layers, lowest first. A module may import its own package and any package to its left; `facever`
itself (for `__version__`) is importable from anywhere. Function-local imports count too: they exist
only to keep `--help` free of torch, never to hide an upward import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "facever"
LAYERS = ["core", "data_prep", "protocols", "models", "verification", "embedding", "training", "workflows", "cli"]
TOP_LEVEL = {"__init__", "__main__"}


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "facever" or len(parts) == 1:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "facever":  # `from facever import x`: x may be a subpackage
                out += [(node.lineno, f"facever.{a.name}") for a in node.names if a.name != "__version__"]
            else:
                out.append((node.lineno, node.module))
    return out


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_package_is_a_known_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS), "a new package must be placed in LAYERS"
    loose = {p.stem for p in PACKAGE.glob("*.py")} - TOP_LEVEL
    assert not loose, f"modules loose at facever/: {sorted(loose)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down(path: Path):
    rel = path.relative_to(PACKAGE)
    if rel.parts[0] in (f"{name}.py" for name in TOP_LEVEL):
        return
    own = LAYERS.index(rel.parts[0])
    upward = []
    for line, module in _imports(path):
        layer = _layer_of(module)
        if layer is None:
            continue
        if layer not in LAYERS:
            upward.append(f"line {line}: {module} (not a layer)")
        elif LAYERS.index(layer) > own:
            upward.append(f"line {line}: {module} ({layer} is above {rel.parts[0]})")
    assert not upward, f"{rel} imports upward: " + "; ".join(upward)


def test_library_never_imports_typer_or_the_cli():
    offenders = []
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("cli", "__main__.py"):
            continue
        for line, module in _imports(path):
            if module.split(".")[0] in ("typer", "click") or module.startswith("facever.cli"):
                offenders.append(f"{rel}:{line} {module}")
    assert not offenders, offenders


TESTS = Path(__file__).resolve().parent


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_test_module_imports_another():
    """Shared test code lives in tests/helpers/ (or a conftest.py); a test module is never imported,
    by bare name through sys.path either."""
    local = {p.stem for p in _test_files()}
    offenders = []
    for path in _test_files():
        rel = path.relative_to(TESTS)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func).startswith("sys.path."):
                offenders.append(f"{rel}:{node.lineno} edits sys.path")
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] == "tests":
                if any(part.startswith("test_") for part in parts[1:]) or (
                        len(parts) > 1 and parts[1] not in ("helpers", "conftest", "bad_input")):
                    offenders.append(f"{rel}:{line} imports {module}")
            elif parts[0] in local and parts[0] != "conftest":
                offenders.append(f"{rel}:{line} imports {module} by bare name")
    assert not offenders, offenders


_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")


def test_no_library_error_message_names_a_cli_flag():
    """Library errors name settings by parameter name (in backticks, listed in `options=`); the CLI
    writes them as its own flags. Checked outside facever/cli/: every string in a `raise`, in a call of
    an exception class (`...Error(...)`) and in a `check(ok, message)` call."""
    offenders = []
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("cli", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                message = node.exc
            elif isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1].endswith(("Error", "check")):
                message = node
            else:
                continue
            for const in ast.walk(message):
                if isinstance(const, ast.Constant) and isinstance(const.value, str) and _FLAG.search(const.value):
                    offenders.append(f"{rel}:{const.lineno} {_FLAG.search(const.value).group(0)}")
    assert not offenders, sorted(set(offenders))

