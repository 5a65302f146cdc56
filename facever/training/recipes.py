"""Recipes: named training configurations shipped with the package (`facever/training/recipe_files/*.toml`).

A recipe is a config file (see `facever.training.config_files`) whose `[recipe]` table says what it is for,
the results to expect and the training time it takes (on what hardware). `facever train --recipe NAME` starts from it
(a `--config` file and command-line options override it); `facever reproduce` trains from one;
`facever recipes` lists them. `NAME` may also be the path of a user's own `.toml` recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from facever.training.config_files import parse_options, parse_toml_text
from facever.core.errors import FaceverError

SUFFIX = ".toml"
META_FIELDS = ("summary", "data", "expected", "expected_ensemble", "expected_source", "train_time")


@dataclass(frozen=True)
class Recipe:
    """One recipe: its training `options` (TrainConfig fields, validated) and what it promises."""

    name: str
    options: dict[str, Any]
    summary: str = ""
    data: str = ""
    expected: dict[str, float] = field(default_factory=dict)  # benchmark -> accuracy in percent
    expected_ensemble: dict[str, float] = field(default_factory=dict)
    expected_source: str = ""
    train_time: str = ""
    source: str = ""  # where it was read from

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "summary": self.summary, "data": self.data, "expected": dict(self.expected),
            "expected_ensemble": dict(self.expected_ensemble), "expected_source": self.expected_source,
            "train_time": self.train_time, "options": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()},
            "source": self.source,
        }


def _recipe_files() -> dict[str, Any]:
    folder = resources.files("facever.training").joinpath("recipe_files")
    if not folder.is_dir():
        return {}
    return {entry.name[: -len(SUFFIX)]: entry for entry in folder.iterdir() if entry.name.endswith(SUFFIX)}


def recipe_names() -> list[str]:
    """Names of the shipped recipes, sorted."""
    return sorted(_recipe_files())


def _percentages(value: Any, *, where: str, key: str) -> dict[str, float]:
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 100 for v in value.values()
    ):
        raise FaceverError(f"{where}: [recipe] '{key}' must be a table of percentages, e.g. {{ lfw = 99.18 }}")
    return {str(k): float(v) for k, v in value.items()}


def parse_recipe(text: str, *, name: str, where: str) -> Recipe:
    """A `Recipe` from TOML text; FaceverError naming `where` and the key for anything malformed."""
    table = parse_toml_text(text, where=where)
    options = parse_options(table, where=where)
    meta = table.get("recipe", {})
    unknown = sorted(set(meta) - set(META_FIELDS))
    if unknown:
        renamed = " ('gpu_time' is now 'train_time': the time to train, and on what hardware)" if "gpu_time" in unknown else ""
        raise FaceverError(f"{where}: unknown key(s) in [recipe]: {', '.join(unknown)} (known: {', '.join(META_FIELDS)})"
                           + renamed)
    for key in ("summary", "data", "expected_source", "train_time"):
        if not isinstance(meta.get(key, ""), str):
            raise FaceverError(f"{where}: [recipe] '{key}' must be a string")
    return Recipe(
        name=name,
        options=options,
        summary=meta.get("summary", ""),
        data=meta.get("data", ""),
        expected=_percentages(meta.get("expected", {}), where=where, key="expected"),
        expected_ensemble=_percentages(meta.get("expected_ensemble", {}), where=where, key="expected_ensemble"),
        expected_source=meta.get("expected_source", ""),
        train_time=meta.get("train_time", ""),
        source=where,
    )


def load_recipe(name: str) -> Recipe:
    """A shipped recipe by name, or a `.toml` file given by path. FaceverError lists the known names."""
    files = _recipe_files()
    if name in files:
        return parse_recipe(files[name].read_text(encoding="utf-8"), name=name, where=f"recipe {name}")
    path = Path(name)
    if path.suffix == SUFFIX and path.is_file():
        return parse_recipe(path.read_text(encoding="utf-8"), name=path.stem, where=str(path))
    known = ", ".join(sorted(files)) or "(none installed)"
    raise FaceverError(f"unknown recipe {name!r}{_did_you_mean(name, sorted(files))}; known recipes: {known} "
                       "(or the path of a .toml file)")


def _did_you_mean(name: str, names: list[str]) -> str:
    """`; did you mean 'cpu-small'?` for a typo or a prefix of known names, else nothing."""
    import difflib

    close = [n for n in names if n.startswith(name)] if name else []
    close = close or difflib.get_close_matches(name, names, n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""


def list_recipes() -> list[Recipe]:
    """Every shipped recipe, loaded and validated, sorted by name."""
    return [load_recipe(name) for name in recipe_names()]
