"""The package layout is the data flow: each package imports only packages below it, never in a circle.

Layers, lowest first. A module may import its own package and any package to its left; `facever`
itself (for `__version__`) is importable from anywhere. Function-local imports count too: they exist
only to keep `--help` free of torch, never to hide an upward import.
"""

from __future__ import annotations

import ast
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
