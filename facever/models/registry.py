"""Backbones by name: a decorator registers a builder, `create_model(name, **overrides)` builds it.

Modelled on timm's registry. Builders are plain functions returning an `nn.Module` whose
`forward(x: N x 3 x H x W) -> N x D` gives the (unnormalised) embedding, with attributes
`input_size` ((h, w)), `embedding_dim`, `mean` and `std` (the preprocessing it expects:
`(rgb_uint8 / 255 - mean) / std`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from facever.core.errors import FaceverError

_MODELS: dict[str, Callable[..., Any]] = {}

#: The most parameters a model facever builds may have: 15 times iresnet100's 65 million, 12 GB of
#: float32 weights, gradients and momentum. Larger is a typo (`width = 100000`), refused before allocating.
MAX_PARAMETERS = 1_000_000_000


def register_model(fn: Callable[..., Any] | None = None, *, name: str | None = None):
    """Register a builder under `name` (default: the function name with `_` -> `-`).

    Usable as `@register_model` or `@register_model(name="inception-resnet-v1")`.
    """

    def add(builder: Callable[..., Any]) -> Callable[..., Any]:
        key = name or builder.__name__.replace("_", "-")
        if key in _MODELS and _MODELS[key] is not builder:
            raise ValueError(f"model name {key!r} is already registered")
        _MODELS[key] = builder
        return builder

    return add(fn) if fn is not None else add


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


def model_options(name: str) -> list[str]:
    """The keyword options a model's builder accepts (for help texts and validation)."""
    builder = _builder(name)
    return [p.name for p in inspect.signature(builder).parameters.values() if p.kind is p.KEYWORD_ONLY]


def create_model(name: str, **overrides: Any):
    """Build the backbone `name`, with `overrides` replacing its defaults.

    None-valued overrides are dropped, so unset CLI options never override a model's defaults.
    Raises FaceverError naming the known models (unknown name) or the accepted options (unknown option).
    """
    builder = _builder(name)
    kwargs = {key: value for key, value in overrides.items() if value is not None}
    accepted = model_options(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise FaceverError(
            f"model {name!r} has no option {', '.join(unknown)}; "
            f"its options: {', '.join(accepted) if accepted else '(none)'}"
        )
    return builder(**kwargs)


def _builder(name: str) -> Callable[..., Any]:
    try:
        return _MODELS[name]
    except KeyError:
        raise FaceverError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def build_on_meta(name: str, **overrides: Any):
    """`create_model(name, **overrides)` on the meta device: the shapes, no memory. Sizes typed by
    mistake are checked this way before a real build tries to allocate them. FaceverError (one line)
    when it cannot be built."""
    import torch

    try:
        with torch.device("meta"):
            return create_model(name, **overrides)
    except FaceverError:
        raise
    except Exception as exc:  # sizes so large that torch cannot even describe the tensors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        given = ", ".join(f"{k}={v}" for k, v in overrides.items() if v is not None) or "its defaults"
        raise FaceverError(f"{name}: cannot build it with {given} ({first[:200]})") from None
