"""Options shared by every scoring command (eval-lfw, eval-fglfw, eval-ytf, eval-bin, ensemble), so
they read and behave the same everywhere, and what the command line itself says (which options were typed).
Typer only reads these objects; sharing them is safe."""

from __future__ import annotations

from enum import Enum
from typing import Iterable

import typer


class ThresholdMode(str, Enum):
    exact = "exact"
    grid = "grid"


class Metric(str, Enum):
    cosine = "cosine"
    l2 = "l2"


THRESHOLDS = typer.Option(
    ThresholdMode.exact,
    "--thresholds",
    help="exact: midpoints between training scores (best possible); grid: facenet/insightface's 0:4:0.01 grid.",
)
METRIC = typer.Option(
    None, "--metric", help="cosine (default) or l2 (squared distance of normalised embeddings; default for grid)."
)
SUBTRACT_MEAN = typer.Option(
    False, "--subtract-mean", help="Subtract the 9 training folds' mean embedding first (SphereFace)."
)
JSON_OUTPUT = typer.Option(False, "--json", help="Print report.json's content on stdout instead of the table.")
AMP = typer.Option(
    None, "--amp/--no-amp", help="bf16 autocast (default: on for CUDA and for CPUs with native bf16, AMX/AVX512-BF16; "
    "--no-amp for float32). Output is float32.",
)


def explicit_parameters(names: Iterable[str]) -> set[str] | None:
    """Which of `names` the user gave on the command line (or through the environment).

    Uses click's parameter source of the running command; None outside a click command (then
    every non-None value counts as given).
    """
    try:  # typer >= 0.2x vendors click as typer._click; older typer depends on click itself
        from typer._click.core import ParameterSource
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - depends on the installed typer
        try:
            from click import get_current_context
            from click.core import ParameterSource
        except ImportError:
            return None
    ctx = get_current_context(silent=True)
    if ctx is None:
        return None
    given = set()
    for name in names:
        source = ctx.get_parameter_source(name)
        # None: not a parameter of this command (a value the caller computed): counts as given.
        if source not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            given.add(name)
    return given
