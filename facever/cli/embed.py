"""`facever embed`: a model and a folder (or list) of face images in, an embeddings file out."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

import typer

from facever.cli._options import AMP, TORCHSCRIPT_HELP, Amp, Flip, Select, batch_size_option, device_option, flip_option


MODEL_HELP = (
    "A pretrained model by name (arcface-r50-webface600k, ...: `facever models list`; pulled on first use); "
    "a facever model (RUN/model.pt or RUN/); facenet:vggface2 / facenet:casia-webface (facenet-pytorch's "
    "InceptionResnetV1; weights from --weights, its cache or its download); arcface:r18|r34|r50|r100|r200 "
    "with --weights backbone.pth (InsightFace arcface_torch); a .onnx graph (onnxruntime); or a TorchScript "
    "file from `facever export` (model.torchscript). " + TORCHSCRIPT_HELP
)
WEIGHTS_HELP = "facenet:* / arcface:* only: the state dict, e.g. backbone.pth or 20180402-114759-vggface2.pt."
MEAN_HELP = ("ONNX/TorchScript models: per-channel mean on 0..255 pixels, one value or R,G,B "
             "(default: the file's facever metadata, else InsightFace's 127.5).")
STD_HELP = "ONNX/TorchScript models: per-channel std on 0..255 pixels, one value or R,G,B (default as --mean: 127.5)."
BGR_HELP = "ONNX/TorchScript models: feed channels in BGR order (default: the file's metadata, else RGB)."


def report_bad_images(bad, *, limit: int = 20) -> None:
    """List images that produced no embedding on stderr (the first `limit`, then a count)."""
    from facever.cli._console import warn

    for item in bad[:limit]:
        warn(f"{item.path}: {item.reason}")
    if len(bad) > limit:
        warn(f"... and {len(bad) - limit} more images without an embedding")


def embed(
    model: str = typer.Argument(..., help=MODEL_HELP, show_default=False),
    images: Path = typer.Argument(
        ...,
        help="Folder of face images (any depth; keys are paths relative to it, e.g. Name/Name_0001.jpg) or a text "
        "file listing images one per line (paths relative to the list's folder).",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Embeddings file to write (.npz), e.g. lfw_emb.npz."),
    weights: Optional[Path] = typer.Option(None, "--weights", help=WEIGHTS_HELP),
    mean: Optional[str] = typer.Option(None, "--mean", help=MEAN_HELP),
    std: Optional[str] = typer.Option(None, "--std", help=STD_HELP),
    bgr: Optional[bool] = typer.Option(None, "--bgr/--rgb", help=BGR_HELP),
    flip: Flip = flip_option(),
    align: bool = typer.Option(
        False, "--align", help="IMAGES are raw photos: detect and align one face each (as `facever align`) first."
    ),
    size: Optional[str] = typer.Option(
        None, "--size", help="With --align: crop size HxW (default: the model's input size, e.g. 112x96)."
    ),
    select: Select = typer.Option(
        Select.largest, "--select", help="With --align: which face of a photo to embed (largest, or center)."
    ),
    min_face: int = typer.Option(20, "--min-face", help="With --align: smallest face to look for, in pixels."),
    batch_size: int = batch_size_option(),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=0, help="Decoding processes (0: none; default: chosen from the CPU count)."
    ),
    device: str = device_option(),
    amp: Amp = AMP,
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Leave out unreadable images (and, with --align, photos without a face)."
    ),
) -> None:
    """Embed face images with a model and write an embeddings file for eval-lfw / ensemble.

    The file keeps each image's relative path, a float32 embedding per image, and metadata: model id and
    sha256, flip mode, crop size and preprocessing. Crops of another size than the model's input are
    resized (with a warning when that stretches them). An interrupted run resumes: rerun the same command.

    Examples:

        facever embed runs/noisy/model.pt lfw_aligned/ --out lfw_noisy.npz --flip concat

        facever embed facenet:vggface2 lfw_160/ --weights 20180402-114759-vggface2.pt --out lfw_facenet.npz

        facever embed facenet:vggface2 photos/ --align --out photos.npz --skip-bad

        facever embed arcface:r50 lfw_112/ --weights backbone.pth --out lfw_r50.npz --flip sum

        facever embed w600k_r50.onnx lfw_112/ --out lfw_w600k.npz
    """
    from facever.cli._console import info, library_warnings, progress_bar, user_errors

    from facever.core.locks import file_lock

    with user_errors(), library_warnings(), file_lock(out):
        from facever.data_prep.align_dataset import collect_sources
        from facever.embedding.cache import embed_items_cached
        from facever.embedding.extract import BadImagesError
        from facever.embedding.loading import load_embedding_model, preprocessing_overrides
        from facever.core.embeddings_file import save_embeddings
        from facever.core.errors import FaceverError

        from facever.core.paths import check_output_is_not_an_input
        from facever.embedding.loading import model_files

        root, sources = collect_sources(images)
        if not sources:
            raise FaceverError(f"{images}: no images found")
        check_output_is_not_an_input(out, [*model_files(model, weights=weights), images, *(p for p, _ in sources)])
        rel_paths = [rel for _, rel in sources]
        emb_model = load_embedding_model(model, weights=weights, device=device,
                                         **preprocessing_overrides(mean, std, bgr))
        aligner = None
        if align:
            from facever.data_prep.align import FaceAligner
            from facever.core.sizes import parse_size

            try:
                crop = parse_size(size) if size else tuple(emb_model.input_size)
            except ValueError as exc:
                raise FaceverError(f"--size: {exc}") from None
            aligner = FaceAligner(size=crop, select=select.value, min_face=min_face, device=device)
        elif size:
            raise FaceverError("--size applies with --align only (aligned crops are resized to the model's input)")
        if aligner is None:
            from facever.data_prep.alignment_record import alignment_difference, read_alignment_record
            from facever.cli._console import warn

            trained_on = emb_model.extra.get("training_crops") or {}
            differs = alignment_difference(read_alignment_record(root), trained_on.get("alignment"),
                                           emb_model.input_size)
            if differs:
                warn(f"{root}: {differs}")
        # Progress is kept in a hidden cache folder next to OUT (the one embedding cache, keyed by each image's
        # bytes and the settings), so an interrupted run resumes where it stopped and never reuses a stale row.
        partial = out.parent / f".{out.stem}.partial"
        info(f"embedding {len(rel_paths)} images from {root} with {emb_model.model_id} ({emb_model.preprocessing})")
        try:
            with progress_bar("embedding", total=len(rel_paths)) as advance:
                result, bad, reused = embed_items_cached(
                    emb_model, root, rel_paths, cache=partial, flip=flip.value, batch_size=batch_size,
                    workers=workers, device=device, amp=amp.value, align=aligner, skip_bad=skip_bad, progress=advance,
                    on_plan=lambda done, todo: advance(done),
                )
        except BadImagesError as exc:
            report_bad_images(exc.bad)
            raise FaceverError(f"{exc}; use --skip-bad to leave them out (the others are kept for the rerun)") from None
        if reused:
            info(f"resumed: {reused} embeddings from an interrupted run ({partial})")
        if bad:
            report_bad_images(bad)
            info(f"left out {len(bad)} images (--skip-bad)")
        metadata = {**result.metadata, "images_source": str(Path(images).resolve()),
                    "bad": [{"path": b.path, "reason": b.reason} for b in bad]}
        metadata.pop("cache", None)
        save_embeddings(out, result.paths, result.embeddings, metadata)
        shutil.rmtree(partial, ignore_errors=True)
        info(f"wrote {out}: {len(result)} embeddings of dimension {result.dim} (flip {flip.value})")
