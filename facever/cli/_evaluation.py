"""Plumbing shared by eval-lfw, eval-fglfw, eval-ytf and eval-bin: score a protocol, print the table, write the report.

Imported only inside command bodies (it pulls in the verification engine), never at CLI start-up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import typer

from facever.cli._console import info


def evaluate_and_report(
    protocol,
    embeddings,
    *,
    title: str,
    thresholds: str,
    metric: str | None,
    subtract_mean: bool,
    allow_missing: bool,
    out: Path | None,
    json_output: bool,
    embeddings_source: str,
    settings: dict[str, Any],
):
    """Run the one engine (the one of `facever eval-lfw`), print its table (or JSON), write report.json + roc.png."""
    from facever.verification.evaluate import evaluate_protocol
    from facever.verification.report import format_table, write_report

    result = evaluate_protocol(
        protocol,
        embeddings,
        metric=metric,
        thresholds=thresholds,
        subtract_mean=subtract_mean,
        allow_missing=allow_missing,
        embeddings_source=embeddings_source,
    )
    result.settings.update({**settings, "embeddings_metadata": embeddings.metadata})
    if json_output:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(title)
        typer.echo(format_table(result))
    if result.dropped_pairs:
        info(f"dropped {result.dropped_pairs} pairs whose items have no embedding (--allow-missing)")
    if out is not None:
        written = write_report(out, result)
        info(f"wrote {written['report']} and {written['roc']}")
    return result


def missing_files(root: Path, rel_paths: Sequence[str]) -> list[str]:
    return [p for p in rel_paths if not (root / p).is_file()]


def check_images_exist(root: Path, rel_paths: Sequence[str], *, what: str) -> None:
    """Fail with one line naming the missing images (before spending time on a model)."""
    from facever.core.errors import FaceverError

    if not root.is_dir():
        raise FaceverError(f"{root}: image folder not found")
    missing = missing_files(root, rel_paths)
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
        raise FaceverError(f"{len(missing)} of {len(rel_paths)} images of {what} are missing under {root}: {shown}")


def load_model(model: str, *, weights: Path | None, device: str):
    from facever.embedding.loading import load_embedding_model

    return load_embedding_model(model, weights=weights, device=device)
