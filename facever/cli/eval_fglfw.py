"""`facever eval-fglfw`: FGLFW (fine-grained LFW), CALFW and CPLFW with the 10-fold protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facever.cli._options import (
    AMP, Amp, JSON_OUTPUT, METRIC, SUBTRACT_MEAN, THRESHOLDS, Flip, Metric, ThresholdMode, Variant, allow_missing_option,
    batch_size_option, device_option, model_weights_option, flip_option,
)


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
    thresholds: ThresholdMode = THRESHOLDS,
    metric: Optional[Metric] = METRIC,
    subtract_mean: bool = SUBTRACT_MEAN,
    allow_missing: bool = allow_missing_option(),
    flip: Flip = flip_option(when="With --model: "),
    weights: Optional[Path] = model_weights_option(),
    device: str = device_option(when="With --model: "),
    amp: Amp = AMP,
    batch_size: int = batch_size_option(when="With --model: "),
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
    from facever.cli._console import user_errors
    from facever.cli._evaluation import require_embeddings_or_model

    require_embeddings_or_model(embeddings, model, data=images, data_option="--images",
                                data_help="DIR (the folder the list's image paths start from)")
    from facever.core.locks import folder_lock

    with user_errors(), folder_lock(out, kind="evaluation"):
        from facever.cli._evaluation import evaluate_and_report, protocol_embeddings
        from facever.protocols.fglfw import read_fglfw_pairs, read_token_pairs

        if protocol is Variant.fglfw:
            proto = read_fglfw_pairs(pairs, ext=ext, pairs_per_fold=pairs_per_fold)
        else:
            proto = read_token_pairs(pairs, ext=ext, name=protocol.value)
        settings = {"pairs_file": str(pairs), "ext": ext}
        if protocol is Variant.fglfw:
            settings["pairs_per_fold"] = pairs_per_fold
        else:
            settings["fold_rule"] = "positives: token - 1; negatives: file order cut into one equal block per fold"
        emb, source = protocol_embeddings(
            proto, embeddings=embeddings, model=model, images=images, out=out, what=str(pairs), weights=weights,
            flip=flip.value, batch_size=batch_size, device=device, amp=amp.value, allow_missing=allow_missing,
        )
        settings["embeddings_file"] = source
        if model is not None:
            settings.update({"model": model, "images": str(images)})
        evaluate_and_report(
            proto, emb,
            title=f"{protocol.value.upper()} {proto.n_folds}-fold verification: {len(proto)} pairs from {pairs}, {source}",
            thresholds=thresholds.value, metric=metric.value if metric else None, subtract_mean=subtract_mean,
            allow_missing=allow_missing, out=out, json_output=json_output, embeddings_source=source, settings=settings,
        )
