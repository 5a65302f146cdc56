"""`facever eval-bin`: InsightFace verification `.bin` files (lfw, cfp_fp, agedb_30, calfw, cplfw)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facever.cli._options import (
    AMP, Amp, JSON_OUTPUT, METRIC, SUBTRACT_MEAN, THRESHOLDS, Flip, Metric, ThresholdMode, batch_size_option, device_option,
    model_weights_option, flip_option,
)


def eval_bin(
    bin_file: Path = typer.Argument(..., help="An InsightFace verification set, e.g. agedb_30.bin."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model to score: a facever model.pt (or run folder) or facenet:vggface2."
    ),
    embeddings: Optional[Path] = typer.Option(
        None, "--embeddings", "-e", help="Instead of --model: embeddings of this .bin from an earlier run "
        "(OUT/embeddings.npz, keys `000000`, `000001`, ... = image index in the file)."
    ),
    thresholds: ThresholdMode = THRESHOLDS,
    metric: Optional[Metric] = METRIC,
    subtract_mean: bool = SUBTRACT_MEAN,
    flip: Flip = flip_option(),
    weights: Optional[Path] = model_weights_option(),
    device: str = device_option(),
    amp: Amp = AMP,
    batch_size: int = batch_size_option(),
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
    from facever.cli._console import info, user_errors
    from facever.cli._evaluation import require_embeddings_or_model

    require_embeddings_or_model(embeddings, model)
    from facever.cli._console import library_warnings

    from facever.core.locks import folder_lock

    with user_errors(), library_warnings(), folder_lock(out, kind="evaluation"):
        from facever.cli._evaluation import evaluate_and_report, load_model
        from facever.cli._console import progress_bar
        from facever.embedding.bin_images import embed_bin_images
        from facever.protocols.insightface_bin import BinImages, bin_protocol, load_bin
        from facever.core.embeddings_file import load_embeddings, save_embeddings

        bins, issame = load_bin(bin_file)
        proto = bin_protocol(issame, name=bin_file.name, source=bin_file)
        settings = {"bin_file": str(bin_file), "images": len(bins), "folds_rule": "10 contiguous blocks (insightface)"}
        if model is not None:
            net = load_model(model, weights=weights, device=device)
            size = tuple(int(v) for v in net.input_size)
            images = BinImages(bins, source=bin_file)
            first_shape = images[0].shape[:2]
            if tuple(first_shape) != size:
                info(f"images are {first_shape[0]}x{first_shape[1]}: centre-cropped to the model's aspect ratio and "
                     f"resized to {size[0]}x{size[1]} (h x w)")
            with progress_bar("embedding", total=len(images)) as advance:
                emb = embed_bin_images(net, images, flip=flip.value, batch_size=batch_size, device=device, amp=amp.value,
                                       cache=Path(out) / "embedding_cache" if out is not None else None,
                                       progress=advance)
            if emb.metadata.get("reused"):
                info(f"{emb.metadata['reused']} of {len(emb)} embeddings reused from {emb.metadata['cache']}")
            source = f"model {model}"
            settings.update({"model": model, "flip": flip.value, "source_image_size": list(first_shape),
                             "input_size": list(size)})
            if out is not None:
                save_embeddings(Path(out) / "embeddings.npz", emb.paths, emb.embeddings, emb.metadata)
        else:
            emb = load_embeddings(embeddings)
            source = str(embeddings)
            settings["embeddings_file"] = str(embeddings)
        evaluate_and_report(
            proto, emb,
            title=f"{bin_file.name} {proto.n_folds}-fold verification: {len(proto)} pairs, {source}",
            thresholds=thresholds.value, metric=metric.value if metric else None, subtract_mean=subtract_mean,
            allow_missing=False, out=out, json_output=json_output, embeddings_source=source, settings=settings,
        )
