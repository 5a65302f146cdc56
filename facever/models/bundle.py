"""The deployable model file (`RUN/model.pt`): a backbone's weights plus everything needed to use it.

A bundle is a plain dict saved with `torch.save` and holding only str/int/float/bool/None, lists,
tuples, dicts and tensors, so `torch.load(weights_only=True)` reads it without unpickling code:

    {"format": "facever-model", "format_version": 1, "arch": str, "arch_kwargs": dict,
     "state_dict": {name: CPU tensor}, "input_size": [h, w], "color": "RGB",
     "mean": [3 floats], "std": [3 floats], "embedding_dim": int, "facever_version": str, **extra}

The backbone's input is `(rgb_uint8 / 255 - mean) / std`, NCHW float, at `input_size`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from facever import __version__
from facever.core.atomic import atomic_path
from facever.core.errors import FaceverError, InputFileError
from facever.core.model_files import load_tensor_file

FORMAT = "facever-model"
FORMAT_VERSION = 1
_CORE_KEYS = (
    "format", "format_version", "arch", "arch_kwargs", "state_dict", "input_size", "color",
    "mean", "std", "embedding_dim", "facever_version",
)
# Builder options that only matter when a model is first built (initial weights from a local file);
# the bundle carries the weights itself, so loading it must not need that file.
_BUILD_ONLY_OPTIONS = ("weights",)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel/DataParallel and `torch.compile` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def save_model_bundle(
    path: str | Path,
    backbone: nn.Module,
    *,
    arch: str,
    arch_kwargs: Mapping[str, Any],
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    embedding_dim: int,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the bundle atomically to `path` (a crash leaves the old file or none) and return `path`.

    `extra` (config, class map, step, validation accuracy, ...) is merged in; it must not reuse a core
    key and must hold only plain data, so the file stays loadable with `weights_only=True`.
    """
    path = Path(path)
    input_size = [int(v) for v in input_size]
    mean, std = [float(v) for v in mean], [float(v) for v in std]
    if len(input_size) != 2 or min(input_size) < 1:
        raise ValueError(f"input_size must be (height, width), got {input_size}")
    if len(mean) != 3 or len(std) != 3 or not all(math.isfinite(v) and v > 0 for v in std):
        raise ValueError(f"mean and std must be 3 numbers each (std > 0), got {mean} and {std}")
    kwargs = {key: value for key, value in dict(arch_kwargs).items() if key not in _BUILD_ONLY_OPTIONS}
    _check_plain(kwargs, "arch_kwargs")
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_CORE_KEYS))
    if clash:
        raise ValueError(f"extra must not reuse the bundle's own keys: {', '.join(clash)}")
    _check_plain(extra, "extra")
    state = {name: tensor.detach().to("cpu").clone() for name, tensor in unwrap_model(backbone).state_dict().items()}
    bundle = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": str(arch),
        "arch_kwargs": kwargs,
        "state_dict": state,
        "input_size": input_size,
        "color": "RGB",
        "mean": mean,
        "std": std,
        "embedding_dim": int(embedding_dim),
        "facever_version": __version__,
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(bundle, tmp)
    return path


def read_model_bundle(path: str | Path, *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read and validate a bundle file without building the model (raw dict, state_dict included)."""
    path = Path(path)
    if not path.is_file():
        raise FaceverError(f"{path}: no such model file")
    try:
        bundle = load_tensor_file(path, map_location=map_location)
    except InputFileError:
        raise
    except Exception as exc:  # torch raises many types for a non-zip, truncated or unsafe file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(path, f"not a readable facever model file ({reason[:200]})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise InputFileError(path, f"not a facever model file (no format={FORMAT!r} marker; a training checkpoint or another tool's weights?)")
    version = bundle.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputFileError(path, f"model format version {version!r} is not a version number (a damaged or edited file?)")
    if version > FORMAT_VERSION:
        raise InputFileError(path, f"model format version {version!r} is newer than this facever ({__version__}) reads ({FORMAT_VERSION}); upgrade facever")
    missing = [key for key in _CORE_KEYS if key not in bundle]
    if missing:
        raise InputFileError(path, f"model file lacks {', '.join(missing)}")
    _check_fields(path, bundle)
    return bundle


def _check_fields(path: Path, b: dict[str, Any]) -> None:
    """Every core field has the type and range a written bundle has; the weights are finite."""

    def bad(field: str, what: str) -> InputFileError:
        return InputFileError(path, f"{field} {b[field]!r:.80}: {what} (a damaged or edited model file?)")

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if not isinstance(b["arch"], str):
        raise bad("arch", "not a model name")
    if not isinstance(b["arch_kwargs"], dict) or not all(isinstance(k, str) for k in b["arch_kwargs"]):
        raise bad("arch_kwargs", "not a mapping of option names to values")
    size = b["input_size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)):
        raise bad("input_size", "expected [height, width] in pixels")
    for field in ("mean", "std"):
        v = b[field]
        if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(number(x) for x in v):
            raise bad(field, "expected 3 finite numbers")
    if not all(x > 0 for x in b["std"]):
        raise bad("std", "every value must be above 0")
    dim = b["embedding_dim"]
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise bad("embedding_dim", "expected a positive whole number")
    if b["color"] != "RGB":
        raise bad("color", "only RGB models are supported")
    state = b["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in state.items()):
        raise InputFileError(path, "state_dict is not a mapping of names to tensors (a damaged or edited model file?)")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise InputFileError(path, f"weight {name} holds NaN or infinite values (a diverged training?); "
                                 "use an earlier model or checkpoint")


def _check_architecture(path: Path, bundle: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """Build the model on the meta device (no memory) and check the file's weights and sizes fit it.

    Done before the real model is built, so metadata such as width=100000 is refused instead of
    allocating hundreds of gigabytes.
    """
    from facever.models.registry import create_model  # complete: importing this module ran the package's __init__

    try:
        with torch.device("meta"):
            shell = create_model(bundle["arch"], **kwargs)
    except FaceverError as exc:
        raise InputFileError(path, f"cannot build its model: {exc}") from None
    except Exception as exc:  # a builder given values of the wrong type or range
        raise InputFileError(path, f"cannot build {bundle['arch']} from arch_kwargs {kwargs!r:.120} ({exc})"[:400]) from None
    expected = {name: tuple(t.shape) for name, t in shell.state_dict().items()}
    got = {name: tuple(t.shape) for name, t in bundle["state_dict"].items()}
    missing = [n for n in expected if n not in got]
    unexpected = [n for n in got if n not in expected]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected[:3])}"] if unexpected else [])
        raise InputFileError(path, f"weights do not fit {bundle['arch']}: {'; '.join(parts)}")
    for name, shape in expected.items():
        if got[name] != shape:
            raise InputFileError(path, f"weights do not fit {bundle['arch']}: {name} is {list(got[name])}, "
                                 f"the model's is {list(shape)}")
    model_size = [int(v) for v in getattr(shell, "input_size", bundle["input_size"])]
    if list(bundle["input_size"]) != model_size:
        raise InputFileError(path, f"input_size {list(bundle['input_size'])} is not its model's ({model_size[0]}x{model_size[1]})")
    model_dim = getattr(shell, "embedding_dim", bundle["embedding_dim"])
    if bundle["embedding_dim"] != model_dim:
        raise InputFileError(path, f"embedding_dim {bundle['embedding_dim']} is not its model's ({model_dim})")


def load_model_bundle(path: str | Path, map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a bundle: returns (backbone in eval mode on `map_location`, info).

    `info` is the bundle dict without "state_dict" (arch, arch_kwargs, input_size, mean, std,
    embedding_dim, color, facever_version and any extra keys the writer added).
    """
    from facever.models.registry import create_model  # complete: importing this module ran the package's __init__

    path = Path(path)
    bundle = read_model_bundle(path, map_location=map_location)
    kwargs = {key: value for key, value in dict(bundle["arch_kwargs"]).items() if key not in _BUILD_ONLY_OPTIONS}
    _check_architecture(path, bundle, kwargs)
    try:
        backbone = create_model(bundle["arch"], **kwargs)
    except FaceverError as exc:
        raise InputFileError(path, f"cannot build its model: {exc}") from None
    try:
        backbone.load_state_dict(bundle["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputFileError(path, f"weights do not fit {bundle['arch']}: {' '.join(first[:3])[:300]}") from None
    if isinstance(map_location, (str, torch.device)):
        backbone = backbone.to(map_location)
    info = {key: value for key, value in bundle.items() if key != "state_dict"}
    return backbone.eval(), info


def attach_to_bundle(path: str | Path, key: str, value: Any) -> Path:
    """Store plain data `value` under `key` in the bundle at `path` (e.g. a calibration), replacing any
    earlier value, atomically. The weights are copied unchanged; the file's sha256 changes with it."""
    path = Path(path)
    if key in _CORE_KEYS:
        raise ValueError(f"{key!r} is one of the bundle's own keys")
    _check_plain(value, key)
    bundle = read_model_bundle(path, map_location="cpu")
    bundle[key] = value
    with atomic_path(path) as tmp:
        torch.save(bundle, tmp)
    return path


def _check_plain(value: Any, where: str) -> None:
    """Refuse values `torch.load(weights_only=True)` would reject later, when the file is read back."""
    if value is None or isinstance(value, (str, bool, int, float, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ValueError(f"{where}: dict keys must be str or int, got {type(key).__name__}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise ValueError(f"{where}: {type(value).__name__} cannot be stored in a model file (plain data only)")
