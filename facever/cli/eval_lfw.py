"""`facever eval-lfw`: the LFW 10-fold verification protocol on an embeddings file."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facever.cli._options import (
    AMP, Amp, JSON_OUTPUT, METRIC, SUBTRACT_MEAN, THRESHOLDS, Flip, Metric, ThresholdMode, allow_missing_option,
    batch_size_option, device_option, model_weights_option, flip_option,
)


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
    weights: Optional[Path] = model_weights_option(),
    flip: Flip = flip_option(when="With --model: "),
    batch_size: int = batch_size_option(when="With --model: "),
    device: str = device_option(when="With --model: "),
    amp: Amp = AMP,
    ext: str = typer.Option(".jpg", "--ext", help="Image extension the pairs refer to (e.g. .png for aligned crops)."),
    thresholds: ThresholdMode = THRESHOLDS,
    metric: Optional[Metric] = METRIC,
    subtract_mean: bool = SUBTRACT_MEAN,
    allow_missing: bool = allow_missing_option(),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for report.json and roc.png."),
    json_output: bool = JSON_OUTPUT,
) -> None:
    """Score embeddings (or a model) on LFW with the standard 10-fold protocol.

    For each fold the threshold is chosen on the other 9 folds and accuracy is measured on it; the
    mean and spread over the folds are reported, with ROC, AUC, EER and TAR@FAR.

    Example:

        facever eval-lfw --pairs pairs.txt --embeddings lfw_emb.npz --out results/lfw

        facever eval-lfw --pairs pairs.txt --model runs/noisy/model.pt --images lfw_aligned/ --flip concat --out results/lfw
    """
    from facever.cli._console import user_errors
    from facever.cli._evaluation import require_embeddings_or_model

    require_embeddings_or_model(embeddings, model, data=images, data_option="--images",
                                data_help="LFW_ALIGNED (the folder the pairs' images are in)")
    from facever.core.locks import folder_lock

    with user_errors(), folder_lock(out, kind="evaluation"):
        from facever.protocols.lfw import read_lfw_pairs
        from facever.cli._evaluation import evaluate_and_report, protocol_embeddings

        protocol = read_lfw_pairs(pairs, ext=ext)
        emb, source = protocol_embeddings(
            protocol, embeddings=embeddings, model=model, images=images, out=out, what=str(pairs), weights=weights,
            flip=flip.value, batch_size=batch_size, device=device, amp=amp.value, allow_missing=allow_missing,
        )
        evaluate_and_report(
            protocol, emb,
            title=f"LFW {protocol.n_folds}-fold verification: {len(protocol)} pairs from {pairs}, embeddings {source}",
            thresholds=thresholds.value, metric=metric.value if metric else None, subtract_mean=subtract_mean,
            allow_missing=allow_missing, out=out, json_output=json_output, embeddings_source=source,
            settings={"pairs_file": str(pairs), "embeddings_file": source},
        )

