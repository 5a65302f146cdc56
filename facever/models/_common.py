"""Small helpers shared by the backbone modules."""

from __future__ import annotations

from typing import Sequence

from facever.core.errors import FaceverError

# (rgb/255 - 0.5) / 0.5: the (x - 127.5) / 127.5 scaling SphereFace, ArcFace and MobileFaceNet train with.
HALF = (0.5, 0.5, 0.5)


def input_size_pair(value: int | Sequence[int], *, model: str, minimum: int) -> tuple[int, int]:
    """Accept `112`, `(112, 96)` or `[112, 96]` (h, w) and check it is large enough for `model`."""
    try:
        size = (int(value), int(value)) if isinstance(value, (int, float)) else tuple(int(v) for v in value)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or min(size) < minimum:
        raise FaceverError(f"{model}: input_size must be (height, width) with both >= {minimum}, got {value!r}")
    return size  # type: ignore[return-value]


def conv_out(n: int, *, kernel: int = 3, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution/pooling along one axis (PyTorch's floor rule)."""
    return (n + 2 * padding - kernel) // stride + 1


def positive(value: int, *, model: str, option: str) -> int:
    if int(value) < 1:
        raise FaceverError(f"{model}: {option} must be a positive integer, got {value!r}")
    return int(value)
