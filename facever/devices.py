"""Choosing a torch device from the CLI's `--device cpu|cuda|auto` (or `cuda:1`)."""

from __future__ import annotations

from facever.errors import FaceverError


def resolve_device(name: str = "auto"):
    """Return a `torch.device`; `auto` picks CUDA when available. Asking for CUDA without one is an error."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FaceverError(f"--device {name}: no CUDA device is available on this machine (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise FaceverError(f"--device {name}: {exc}") from None
