"""`facever eval-fglfw`: FGLFW (fine-grained LFW), CALFW and CPLFW with the 10-fold protocol."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from facever.cli._options import JSON_OUTPUT, Variant, model_options, scoring_options

if TYPE_CHECKING:
    from facever.workflows.evaluate import EmbedSettings, ScoringSettings


def eval_fglfw(
    pairs: Path = typer.Option(
        ..., "--pairs", help="The pair list: pair_FGLFW.txt (one `Name/Name_0001.jpg` per line), or pairs_CALFW.txt / "
        "pairs_CPLFW.txt (`filename token` per line) with --protocol calfw|cplfw."
    ),
    protocol: Variant = typer.Option(Variant.fglfw, "--protocol", "-p", help="Which list format and benchmark name."),
    embeddings: Optional[Path] = typer.Option(
        None, "--embeddings", "-e", help="Embeddings file (.npz) from `facever embed`, keyed by the list's image paths."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Embed the list's images now: a facever model.pt (or run folder) or facenet:vggface2."
    ),
    images: Optional[Path] = typer.Option(
        None, "--images", help="With --model: folder the list's paths start from (LFW's aligned images for FGLFW, "
        "`aligned images/` for CALFW/CPLFW)."
    ),
    ext: Optional[str] = typer.Option(
        None, "--ext", help="Replace the image extension written in the list (e.g. .png for re-encoded crops)."
    ),
    pairs_per_fold: int = typer.Option(
        600, "--pairs-per-fold", help="FGLFW only: consecutive pairs per fold (600 = 300 same + 300 different)."
    ),
    scoring: "ScoringSettings" = scoring_options(),
    embedding: "EmbedSettings" = model_options(when="With --model: "),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Folder for report.json and roc.png; with --model also embeddings.npz and embedding_cache/ "
        "(reused by the next run for every image whose bytes, model and settings are unchanged)."
    ),
    json_output: bool = JSON_OUTPUT,
) -> None:
    """Score a model on FGLFW, CALFW or CPLFW: LFW's 10-fold protocol on harder pair lists.

    FGLFW labels each pair from its two names (lists differ in block order); folds are 600 consecutive
    pairs that must hold 300 same + 300 different. CALFW/CPLFW: a positive pair carries its fold
    (token 1..10) and is in fold token-1; negatives (token 0), in file order, are cut into 10 equal
    blocks, block j -> fold j.

    Examples:

        facever eval-fglfw --pairs pair_FGLFW.txt --embeddings lfw_emb.npz --out results/fglfw

        facever eval-fglfw --pairs pairs_CALFW.txt --protocol calfw --model runs/a/model.pt --images "calfw/aligned images"
    """
    from facever.cli._console import library_warnings, user_errors
    from facever.cli._evaluation import console_hooks, print_evaluation, require_embeddings_or_model
    from facever.core.locks import folder_lock

    require_embeddings_or_model(embeddings, model, data=images, data_option="--images",
                                data_help="DIR (the folder the list's image paths start from)")
    with user_errors(), library_warnings(), folder_lock(out, kind="evaluation"):
        from facever.workflows.evaluate import Source, evaluate, open_benchmark

        bench = open_benchmark(protocol.value, pairs, data=images, ext=ext,
                               pairs_per_fold=pairs_per_fold if protocol is Variant.fglfw else None)
        result = evaluate(bench, Source(embeddings, model), embed=embedding, scoring=scoring, out=out,
                          hooks=console_hooks())
        print_evaluation(result, json_output)
