"""`facever eval-lfw`: the LFW 10-fold verification protocol on an embeddings file (or a model run now)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from facever.cli._options import JSON_OUTPUT, model_options, scoring_options

if TYPE_CHECKING:
    from facever.workflows.evaluate import EmbedSettings, ScoringSettings


def eval_lfw(
    pairs: Path = typer.Option(
        ..., "--pairs", help="LFW View 2 pairs.txt (10 folds of 300 same + 300 different; header `10\\t300` optional)."
    ),
    embeddings: Optional[Path] = typer.Option(
        None, "--embeddings", "-e", help="Embeddings file (.npz) from `facever embed`, keyed by `Name/Name_0001.jpg`."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Embed the images the pairs need now: a facever model (RUN/model.pt) or "
        "facenet:vggface2, arcface:r50 (--weights), a .onnx graph. Needs --images; with --out the embeddings used "
        "go to OUT/embeddings.npz, cached in OUT/embedding_cache/ by image content and settings.",
    ),
    images: Optional[Path] = typer.Option(
        None, "--images", help="With --model: the aligned LFW folder (Name/Name_0001.jpg inside)."
    ),
    embedding: "EmbedSettings" = model_options(when="With --model: "),
    ext: str = typer.Option(".jpg", "--ext", help="Image extension the pairs refer to (e.g. .png for aligned crops)."),
    scoring: "ScoringSettings" = scoring_options(),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for report.json and roc.png."),
    json_output: bool = JSON_OUTPUT,
) -> None:
    """Score embeddings (or a model) on LFW with the standard 10-fold protocol.

    For each fold the threshold is chosen on the other 9 folds and accuracy is measured on it; the
    mean and spread over the folds are reported, with ROC, AUC, EER and TAR@FAR.

    Example:

        facever eval-lfw --pairs pairs.txt --embeddings lfw_emb.npz --out results/lfw

        facever eval-lfw --pairs pairs.txt --model runs/noisy/model.pt --images lfw_aligned/ --out results/lfw
    """
    from facever.cli._console import library_warnings, user_errors
    from facever.cli._evaluation import console_hooks, print_evaluation, require_embeddings_or_model
    from facever.core.locks import folder_lock

    require_embeddings_or_model(embeddings, model, data=images, data_option="--images",
                                data_help="LFW_ALIGNED (the folder the pairs' images are in)")
    with user_errors(), library_warnings(), folder_lock(out, kind="evaluation"):
        from facever.workflows.evaluate import Source, evaluate, open_benchmark

        bench = open_benchmark("lfw", pairs, data=images, ext=ext)
        result = evaluate(bench, Source(embeddings, model), embed=embedding, scoring=scoring, out=out,
                          hooks=console_hooks())
        print_evaluation(result, json_output)
