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
LAYERS = ["core", "data_prep", "protocols", "models", "verification", "embedding", "training", "workflows", "api",
          "cli"]
TOP_LEVEL = {"__init__", "__main__"}


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "facever" or len(parts) == 1:
        return None
    return parts[1]


def _module_name(path: Path) -> str:
    """`facever.embedding.cache` for facever/embedding/cache.py, `facever.models` for its __init__.py."""
    parts = list(path.resolve().relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every import of a file, module-level and function-local, relative ones resolved (`from .x import y`
    in facever/a/b.py is `facever.a.x`); `from pkg import name` also yields `pkg.name` (it may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module_name(path) if PACKAGE in path.resolve().parents else ""
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            if module == "facever":  # `from facever import x`: x may be a subpackage
                out += [(node.lineno, f"facever.{a.name}") for a in node.names if a.name != "__version__"]
                continue
            out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{a.name}") for a in node.names
                    if module.startswith("facever") and a.name != "*"]
    return out


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _library_trees():
    """(path relative to the package, parsed module) of every module outside the command line."""
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] not in ("cli", "__main__.py"):
            yield rel, ast.parse(path.read_text(encoding="utf-8"))


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
    for rel, tree in _library_trees():
        for node in ast.walk(tree):
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



def test_relative_imports_are_read():
    """The checks above see `from ..cli import x` as facever.cli (a relative import cannot hide an arrow)."""
    import tempfile

    with tempfile.TemporaryDirectory(dir=PACKAGE / "core") as folder:
        probe = Path(folder) / "probe.py"
        probe.write_text("from ...cli import _options\nfrom . import sibling\n", encoding="utf-8")
        found = {module for _, module in _imports(probe)}
    here = _module_name(probe)
    assert "facever.cli" in found and "facever.cli._options" in found and f"{here.rpartition('.')[0]}.sibling" in found


def _module_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in _modules()}
    return {name: {m for _, m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each a set of modules that import
    each other in a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_import_cycle_between_modules():
    """No two modules import each other, directly or round a circle, inside a package or across packages;
    function-local imports count (they would only hide the circle). A package's __init__ counts as a module."""
    assert _cycles(_module_graph()) == []


def test_the_library_never_runs_the_command_line():
    """No hidden arrow up to the CLI through a process: a library module that ran `python -m facever ...`
    depended on the CLI (and on which `facever` the working directory shadows). Work in a child process
    goes through multiprocessing (see facever/workflows/align.py)."""
    offenders = []
    for rel, tree in _library_trees():
        for node in ast.walk(tree):
            if isinstance(node, (ast.List, ast.Tuple)):
                words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                if any(a == "-m" and b == "facever" for a, b in zip(words, words[1:])):
                    offenders.append(f"{rel}:{node.lineno}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if "subprocess" in names:
                    offenders.append(f"{rel}:{node.lineno} imports subprocess")
    assert not offenders, offenders
