"""`facever eval-lfw`: the LFW 10-fold verification protocol on an embeddings file."""

from __future__ import annotations

from pathlib import Path

import typer


def eval_lfw(
    pairs: Path = typer.Option(..., "--pairs", help="LFW View 2 pairs.txt (header `10\\t300` optional)."),
    embeddings: Path = typer.Option(None, "--embeddings", help="Embeddings file (.npz) from `facever embed`."),
) -> None:
    """Score embeddings on LFW with the 10-fold protocol (threshold chosen on the other 9 folds)."""
    raise typer.Exit(1)
