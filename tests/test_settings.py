"""Every shared default is stated once, in facever/core/settings.py: no function or dataclass of the library or
the CLI writes its own literal default for a setting that settings.py owns (flip, amp, alpha2, head, noise, and
the embedding batch size of functions that embed)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "facever"
OWNED = {"flip", "amp", "alpha2", "head", "noise"}
# Same names, other settings: the demo trains with batches of 64 (its embedding batch is the shared one).
NOT_OWNED = {"DemoSettings.batch_size = 64"}


def _literal_defaults(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            names = {a.arg for a, _ in pairs}
            for arg, default in pairs:
                owned = arg.arg in OWNED or (arg.arg == "batch_size" and "flip" in names)
                if owned and isinstance(default, ast.Constant) and default.value not in (None, True, False):
                    yield node.lineno, f"{node.name}({arg.arg}={default.value!r})"
        elif isinstance(node, ast.ClassDef):  # dataclass fields: `flip: str = "concat"`
            fields = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                    name = stmt.target.id
                    owned = name in OWNED or (name == "batch_size" and "flip" in fields)
                    if owned and isinstance(stmt.value, ast.Constant) and stmt.value.value not in (None, True, False):
                        yield stmt.lineno, f"{node.name}.{name} = {stmt.value.value!r}"


@pytest.mark.parametrize("path", sorted(p for p in PACKAGE.rglob("*.py") if p.name != "settings.py"),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_restated_default(path: Path):
    found = [f"line {line}: {what}" for line, what in _literal_defaults(ast.parse(path.read_text(encoding="utf-8")))
             if what not in NOT_OWNED]
    assert not found, f"{path.relative_to(PACKAGE)} restates a default of facever.core.settings: {found}"


def test_validation_and_evaluation_share_the_default_flip_and_amp():
    import inspect

    from facever.core import settings
    from facever.embedding.extract import ForwardLoop, embed_images
    from facever.training.validation import embed_uint8

    for fn in (embed_uint8, embed_images, ForwardLoop.__init__):
        params = inspect.signature(fn).parameters
        assert params["flip"].default == settings.DEFAULT_FLIP and params["amp"].default == settings.DEFAULT_AMP, fn
