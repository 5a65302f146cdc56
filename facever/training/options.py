"""Where a run's options come from: built-in defaults < `--recipe` < `--config` file < the command line.

Each value remembers its source, which `RUN/config.toml` writes beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from facever.core.errors import FaceverError
from facever.training.config import TrainConfig
from facever.training.config_files import read_config_file
from facever.training.recipes import load_recipe


@dataclass
class ResolvedOptions:
    """Training options after layering: `values` to pass on, `sources[key]` saying where each came from."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)



def layer_options(layers: Iterable[tuple[str, Mapping[str, Any]]]) -> ResolvedOptions:
    """Merge `(source name, options)` layers, later layers winning (recipe, file, command line)."""
    resolved = ResolvedOptions()
    for source, options in layers:
        for key, value in options.items():
            if value is None:
                continue
            resolved.values[key] = value
            resolved.sources[key] = source
    return resolved



def resolve_train_options(
    cli_options: Mapping[str, Any],
    *,
    config_file: str | Path | None = None,
    recipe: str | None = None,
    explicit: set[str] | None = None,
) -> ResolvedOptions:
    """Layer a recipe, a config file and the command line's options (None = not given).

    `explicit`: the command-line options the user typed (None: every non-None value counts); options outside
    it are ignored even when not None, so a default never overrides the file. Everything is
    validated; the result may still hold `amp = "auto"` (TrainConfig resolves it for the run's device).
    """
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if recipe is not None:
        layers.append((f"recipe {recipe}", load_recipe(recipe).options))
    if config_file is not None:
        layers.append((f"config file {config_file}", read_config_file(config_file)))
    cli = {k: v for k, v in cli_options.items() if v is not None and (explicit is None or k in explicit)}
    layers.append(("command line", cli))
    return layer_options(layers)



def train_command_options(
    cli_options: Mapping[str, Any],
    data: Path | None,
    *,
    config_file: Path | None,
    recipe: str | None,
    out: Path,
    resume: bool,
    explicit: set[str] | None = None,
) -> tuple[dict[str, Any], Path, dict[str, str]]:
    """What `facever train` needs from `--recipe`/`--config`: `(options, data, sources)`.

    `options` are the layered values to build the TrainConfig from (or to override a resumed
    run's), `data` the training data (DATA, else the file's `data`, else the resumed run's),
    `sources` where each value came from (for RUN/config.toml).
    """
    resolved = resolve_train_options(cli_options, config_file=config_file, recipe=recipe, explicit=explicit)
    values = dict(resolved.values)
    file_data = values.pop("data", None)
    if data is None and file_data is not None:
        data = Path(file_data)
    elif data is not None:
        resolved.sources["data"] = "command line"
    if data is None and resume:
        saved = Path(out) / "config.json"
        try:
            data = Path(json.loads(saved.read_text(encoding="utf-8"))["data"])
        except (OSError, ValueError, KeyError, TypeError):
            raise FaceverError(f"{saved}: cannot read the run's training data path; give DATA") from None
    if data is None:
        raise FaceverError("no training data: give DATA, or a `data` key in the `config` file", options=('config',))
    if resume and values.get("amp") == "auto":
        values.pop("amp")  # keep the resumed run's own precision
    return values, data, resolved.sources


def make_train_config(options: Mapping[str, Any], *, where: str = "configuration",
                      sources: Mapping[str, str] | None = None) -> TrainConfig:
    """A `TrainConfig` from resolved options (must include `data`); its own checks name the option, and
    with `sources` (from `resolve_train_options`) the file or recipe that gave a refused value."""
    if "data" not in options:
        raise FaceverError(f"{where}: no training data: give DATA or a `data` key")
    try:
        return TrainConfig(**options)
    except TypeError as exc:  # pragma: no cover - keys are validated before
        raise FaceverError(f"{where}: {exc}") from None
    except FaceverError as exc:
        raise name_the_source(exc, sources) from None


def name_the_source(error: FaceverError, sources: Mapping[str, str] | None) -> FaceverError:
    """A refused value's error (from `TrainConfig`'s checks) prefixed with the config file or recipe
    that gave the settings it names (those left at their defaults aside), its keys left as the file
    writes them. Values typed on the command line keep the error as it is, for the command to name
    its own flags; when both gave some, the file's are listed by name and the flags stay the command's."""
    given_by: dict[str, list[str]] = {}
    for name in error.options:
        if sources and name in sources:
            given_by.setdefault(sources[name], []).append(name)
    files = [source for source in given_by if source != "command line"]
    if not files:
        return error
    if "command line" not in given_by:
        return FaceverError(f"{'; '.join(files)}: {error}")
    # Some from a file, some typed: say which file gave which, and let the command write its flags.
    named = "; ".join(f"{source} ({', '.join(given_by[source])})" for source in files)
    return FaceverError(f"{named}: {error}", options=error.options)
