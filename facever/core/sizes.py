"""Image sizes written as text: `112x96` (height x width), `112,96`, or `160` for a square."""

from __future__ import annotations

MIN_SIDE = 8
MAX_SIDE = 4096


def parse_size(text: str) -> tuple[int, int]:
    """Parse `HxW` (e.g. `112x96`, also `112X96` or `112,96`) or a single `N` (square) into `(h, w)`.

    Raises ValueError quoting the text (a plain parser, like `int()`): the caller says where it came
    from (a command-line option, a config-file key).
    """
    parts = str(text).lower().replace(" ", "").replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"invalid size {text!r}: expected HxW such as 112x96 or 112x112") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or size_problem(values[0], values[1]) is not None:
        raise ValueError(
            f"invalid size {text!r}: expected HxW with {MIN_SIDE} <= H, W <= {MAX_SIDE}, such as 112x96"
        )
    return values[0], values[1]


def size_problem(height: int, width: int) -> str | None:
    """Why an image size (an option, a model file's declared input) is refused, or None: the one bound on
    every size facever allocates for, so that a file declaring 100000x100000 pixels is refused, not allocated."""
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SIDE:
        return f"{height}x{width}, outside {MIN_SIDE}..{MAX_SIDE} pixels a side"
    return None

