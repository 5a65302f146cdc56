"""`facever eval-bin`: InsightFace verification `.bin` files (lfw, cfp_fp, agedb_30, calfw, cplfw)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from facever.cli._options import JSON_OUTPUT, model_options, scoring_options

if TYPE_CHECKING:
    from facever.workflows.evaluate import EmbedSettings, ScoringSettings


def eval_bin(
    bin_file: Path = typer.Argument(..., help="An InsightFace verification set, e.g. agedb_30.bin."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model to score: a facever model.pt (or run folder) or facenet:vggface2."
    ),
    embeddings: Optional[Path] = typer.Option(
        None, "--embeddings", "-e", help="Instead of --model: embeddings of this .bin from an earlier run "
        "(OUT/embeddings.npz, keys `000000`, `000001`, ... = image index in the file)."
    ),
    scoring: "ScoringSettings" = scoring_options(skip=("allow_missing",)),
    embedding: "EmbedSettings" = model_options(when="With --model: "),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Folder for report.json, roc.png and embeddings.npz (with --model; also embedding_cache/, reused by the "
        "next run for every image whose bytes, model and settings are unchanged)."
    ),
    json_output: bool = JSON_OUTPUT,
) -> None:
    """Score a model on an InsightFace `.bin` verification set with the 10-fold protocol.

    The file is read with an unpickler that admits only lists, tuples, bytes and bools: a `.bin` that
    carries any other object (code) is refused and nothing in it runs. Images decode to RGB; images of
    another shape than the model's input are centre-cropped to its aspect ratio, then resized (a 112x112
    ArcFace crop fitted to a 112x96 model loses 8 columns each side: exactly the 96x112 alignment).
    Folds: 10 blocks of consecutive pairs, as insightface's own evaluation.

    Examples:

        facever eval-bin agedb_30.bin --model runs/a/model.pt --out results/agedb_30

        facever eval-bin lfw.bin --model runs/a/model.pt --flip sum --thresholds grid
    """
    from facever.cli._console import library_warnings, user_errors
    from facever.cli._evaluation import console_hooks, print_evaluation, require_embeddings_or_model
    from facever.core.locks import folder_lock

    require_embeddings_or_model(embeddings, model)
    with user_errors(), library_warnings(), folder_lock(out, kind="evaluation"):
        from facever.workflows.evaluate import Source, evaluate, open_benchmark

        bench = open_benchmark("bin", bin_file)
        result = evaluate(bench, Source(embeddings, model), embed=embedding, scoring=scoring, out=out,
                          hooks=console_hooks())
        print_evaluation(result, json_output)
