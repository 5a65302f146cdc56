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
        bundle = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for a non-zip, truncated or unsafe file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(path, f"not a readable facever model file ({reason[:200]})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise InputFileError(path, f"not a facever model file (no format={FORMAT!r} marker; a training checkpoint or another tool's weights?)")
    version = bundle.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputFileError(path, f"model format version {version!r} is newer than this facever ({__version__}) reads ({FORMAT_VERSION}); upgrade facever")
    missing = [key for key in _CORE_KEYS if key not in bundle]
    if missing:
        raise InputFileError(path, f"model file lacks {', '.join(missing)}")
    return bundle


def load_model_bundle(path: str | Path, map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a bundle: returns (backbone in eval mode on `map_location`, info).

    `info` is the bundle dict without "state_dict" (arch, arch_kwargs, input_size, mean, std,
    embedding_dim, color, facever_version and any extra keys the writer added).
    """
    from facever.models import create_model  # the registry, complete once the package is imported

    path = Path(path)
    bundle = read_model_bundle(path, map_location=map_location)
    kwargs = {key: value for key, value in dict(bundle["arch_kwargs"]).items() if key not in _BUILD_ONLY_OPTIONS}
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
