"""Options shared by every scoring command (eval-lfw, eval-fglfw, eval-ytf, eval-bin, ensemble), so
they read and behave the same everywhere. Typer only reads these objects; sharing them is safe."""

from __future__ import annotations

from enum import Enum

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
