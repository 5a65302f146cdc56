"""`facever compare RUN1 RUN2 ...`: finished training runs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facever.core.settings import TRAINING_INSTRUMENTS


def compare(
    runs: List[Path] = typer.Argument(..., help="Run folders made by `facever train` (or reproduce's OUT/runs/NAME).",
                                      show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write compare.md, compare.json, compare.png "
                                       "(loss and validation accuracy against step) and curves/NAME.png (one per "
                                       f"training instrument: {', '.join(TRAINING_INSTRUMENTS)}) into this folder."),
    json_output: bool = typer.Option(False, "--json", help="Print the comparison as JSON instead of the table."),
) -> None:
    """Compare finished training runs side by side, with curves.

    Shows configuration differences (highlighted), steps, final loss, the final target probability
    and saturated share, training and best validation accuracy, and every benchmark report.json found
    inside the run folders. With --out, one plot per quantity with the runs as coloured lines (e.g.
    curves/saturated.png: softmax against Noisy Softmax, the paper's postponed saturation).

    Examples:

        facever compare runs/softmax runs/noisy

        facever compare repro/runs/noisy-a repro/runs/noisy-b repro/runs/softmax --out repro/compare
    """
    import json

    from facever.cli._console import info, print_table, user_errors

    from facever.core.locks import folder_lock

    with user_errors(), folder_lock(out, kind="compare"):
        from facever.workflows.compare import compare_runs, write_comparison

        comparison = compare_runs(runs)
        written = write_comparison(comparison, out) if out is not None else None
    if json_output:
        typer.echo(json.dumps(comparison.to_dict(), indent=2))
    else:
        rows = [(label + (" *" if highlight else ""), *cells) for label, cells, highlight in comparison.rows]
        marked = [i for i, (_, _, highlight) in enumerate(comparison.rows) if highlight]
        print_table(("", *(run.name for run in comparison.runs)), rows, highlight_rows=marked)
        if comparison.differing:
            info("* configuration that differs between the runs")
    if written:
        curves = f" and {len(written['curves'])} curves in {Path(out) / 'curves'}" if written["curves"] else ""
        info(f"wrote {written['table']}, {written['json']}, {written['plot']}{curves}")
