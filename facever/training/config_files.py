"""Training configuration files: TOML in, `TrainConfig` fields out, and `RUN/config.toml` written back.

A config file holds `facever train` options as top-level keys named like `TrainConfig`'s fields
(`batch_size` or `batch-size`), e.g.::

    arch = "sphere20"
    input_size = [112, 96]      # or "112x96"
    head = "noisy-softmax"
    alpha2 = 0.1
    milestones = [16, 24]

An optional `[recipe]` table carries a description and expected results (what the shipped recipes
use); training ignores it. Unknown keys, wrong types and invalid choices are `FaceverError`s naming
the key and the file. Relative paths (data, val_pairs, ...) are relative to the file's folder.

Precedence, lowest first: the architecture's and `TrainConfig`'s defaults < a recipe (`--recipe`)
< a config file (`--config`) < options given on the command line. The resolved configuration is
written to `RUN/config.toml` (with where each value came from, as comments) and can be passed
back with `--config` to train the same model again; the model file holds it too (`extra["config"]`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import typing
from pathlib import Path
from typing import Any, Mapping

from facever.core.errors import FaceverError
from facever.core.sizes import parse_size
from facever.core.settings import AMP_MODES, CACHE_MODES, CLASSIFIERS, HEADS, NOISE_CHOICES, SCHEDULES
from facever.training.config import TrainConfig

CONFIG_NAME = "config.toml"
# Keys whose values are paths (made absolute, relative to the config file's folder).
PATH_KEYS = frozenset({"data", "cache_dir", "val_pairs", "val_images", "val_bin"})
# Closed sets of values (facever.core.settings); amp "auto" becomes the device's precision in TrainConfig.
CHOICES: dict[str, tuple[str, ...]] = {
    "head": HEADS, "noise": NOISE_CHOICES, "classifier": CLASSIFIERS, "schedule": SCHEDULES, "amp": AMP_MODES, "cache": CACHE_MODES,
}
# Options whose unset value means "the head's default" (training.head_options).
HEAD_OPTION_FIELDS = ("margin", "noise", "cosine_scale", "sphereface_lambda")
# Tables a config file may hold besides the options.
META_TABLES = frozenset({"recipe"})


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


FIELD_TYPES = _field_types()


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def _convert(key: str, value: Any, hint: Any, where: str) -> Any:
    """`value` (as TOML parsed it) checked against the field's type `hint`; FaceverError otherwise."""
    args = typing.get_args(hint)
    if type(None) in args:  # X | None: TOML has no null, so a present value must be an X
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)

    def wrong(expected: str) -> FaceverError:
        return FaceverError(f"{where}: key '{key}' must be {expected}, got {_type_name(value)} ({value!r})")

    if hint is bool:
        if not isinstance(value, bool):
            raise wrong("a boolean (true or false)")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise wrong("a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if typing.get_origin(hint) is tuple:
        if key.replace("-", "_") == "input_size" and isinstance(value, str):
            try:
                return parse_size(value)
            except ValueError:
                raise wrong('[HEIGHT, WIDTH] or "HEIGHTxWIDTH" such as [112, 96]') from None
        if not isinstance(value, list):
            raise wrong("an array" + (" [HEIGHT, WIDTH]" if key.replace("-", "_") == "input_size" else " of numbers"))
        element = args[0]
        fixed = len(args) if Ellipsis not in args else None
        if fixed is not None and len(value) != fixed:
            raise wrong(f"an array of {fixed} values")
        items = []
        for v in value:
            ok = (isinstance(v, int) and not isinstance(v, bool)) if element is int else (
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
            if not ok:
                raise wrong("an array of " + ("integers" if element is int else "numbers"))
            items.append(element(v))
        return tuple(items)
    raise FaceverError(f"{where}: key '{key}' has a type config files cannot set ({hint})")  # pragma: no cover


def parse_options(table: Mapping[str, Any], *, where: str, base_dir: Path | None = None) -> dict[str, Any]:
    """Validate a table of training options (keys with `-` or `_`) into `TrainConfig` field values.

    `where` names the source in messages (a file path, "recipe NAME"). Paths are resolved against
    `base_dir` when given. Meta tables (`[recipe]`) are skipped. Raises FaceverError naming the key.
    """
    options: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key in META_TABLES:
            if not isinstance(value, dict):
                raise FaceverError(f"{where}: '{raw_key}' must be a table ([{raw_key}])")
            continue
        if key not in FIELD_TYPES:
            known = ", ".join(sorted(FIELD_TYPES))
            raise FaceverError(f"{where}: unknown key '{raw_key}' (known keys: {known}; tables: [recipe])")
        if key in options:
            raise FaceverError(f"{where}: key '{raw_key}' given twice (as '{key}' and with dashes)")
        converted = _convert(raw_key, value, FIELD_TYPES[key], where)
        if key in CHOICES and converted not in CHOICES[key]:
            raise FaceverError(f"{where}: key '{raw_key}' must be one of {', '.join(CHOICES[key])}, got {converted!r}")
        if key in PATH_KEYS and base_dir is not None:
            converted = str((base_dir / Path(converted).expanduser()).resolve())
        options[key] = converted
    return options


def parse_toml_text(text: str, *, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)": keep it, it is what the user needs.
        raise FaceverError(f"{where}: not valid TOML: {exc}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Training options from a TOML file (validated; relative paths made absolute from the file's folder)."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        raise FaceverError(f"{path}: not a regular file, expected a TOML config file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte order mark (Windows editors) is accepted
    except FileNotFoundError:
        raise FaceverError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise FaceverError(f"{path}: is a folder, expected a TOML config file") from None
    except UnicodeDecodeError:
        raise FaceverError(f"{path}: not a text file (cannot decode as UTF-8)") from None
    return parse_options(parse_toml_text(text, where=str(path)), where=str(path), base_dir=path.resolve().parent)


# -- writing --------------------------------------------------------------------------------------

def _toml_string(text: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes (\", \\, \n, \uXXXX).
    return json.dumps(text, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """One TOML value for the simple types a configuration holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML cannot hold {value!r} here")
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() and key.isascii() else _toml_string(key)


def config_to_toml(config: TrainConfig, *, sources: Mapping[str, str] | None = None, header: str = "") -> str:
    """The configuration as a TOML file `read_config_file` reads back to the same `TrainConfig`.

    Fields left at None (architecture defaults) are written as comments; `sources[key]` is added
    as a trailing comment saying where the value came from (default: "default").
    """
    sources = sources or {}
    head_options = config.head_options
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    if lines:
        lines.append("")
    for name, value in config.to_dict().items():
        origin = sources.get(name, "default")
        if value is None:
            why = "the architecture's default" if name in ("input_size", "embedding_dim", "width") else "none"
            resolved = getattr(head_options, name, None) if name in HEAD_OPTION_FIELDS else None
            if name in HEAD_OPTION_FIELDS:
                why = f"the head's default, {toml_value(resolved)}" if resolved is not None else f"none for {config.head}"
            lines.append(f"# {name} = (not set: {why})")
            continue
        lines.append(f"{name} = {toml_value(value)}  # {origin}")
    return "\n".join(lines) + "\n"


def write_run_config(out_dir: str | Path, config: TrainConfig, *, sources: Mapping[str, str] | None = None) -> Path:
    """Write `OUT/config.toml` atomically (the resolved configuration, with each value's origin)."""
    from facever import __version__
    from facever.core.atomic import write_text_atomic

    path = Path(out_dir) / CONFIG_NAME
    header = (
        f"Resolved training configuration of this run (facever {__version__}).\n"
        "Comments say where each value came from (recipe < config file < command line).\n"
        "Train the same model again with: facever train --config config.toml --out NEW_RUN"
    )
    write_text_atomic(path, config_to_toml(config, sources=sources, header=header))
    return path
