"""`facever embed`: a model and a folder (or list) of face images in, an embeddings file out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facever.cli._options import AMP, TORCHSCRIPT_HELP, WEIGHTS_HELP, Amp, Flip, Select, batch_size_option, device_option, flip_option
from facever.core.settings import DEFAULT_MIN_FACE, DEFAULT_SELECT


MODEL_HELP = (
    "A pretrained model by name (arcface-r50-webface600k, ...: `facever models list`; pulled on first use); "
    "a facever model (RUN/model.pt or RUN/); facenet:vggface2 / facenet:casia-webface (facenet-pytorch's "
    "InceptionResnetV1; weights from --weights, its cache or its download); arcface:r18|r34|r50|r100|r200 "
    "with --weights backbone.pth (InsightFace arcface_torch); a .onnx graph (onnxruntime); or a TorchScript "
    "file from `facever export` (model.torchscript). " + TORCHSCRIPT_HELP
)
MEAN_HELP = ("ONNX/TorchScript models: per-channel mean on 0..255 pixels, one value or R,G,B "
             "(default: the file's facever metadata, else InsightFace's 127.5).")
STD_HELP = "ONNX/TorchScript models: per-channel std on 0..255 pixels, one value or R,G,B (default as --mean: 127.5)."
BGR_HELP = "ONNX/TorchScript models: feed channels in BGR order (default: the file's metadata, else RGB)."




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
        Select(DEFAULT_SELECT), "--select", help="With --align: which face of a photo to embed (largest, or center)."
    ),
    min_face: int = typer.Option(DEFAULT_MIN_FACE, "--min-face", help="With --align: smallest face to look for, in pixels."),
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
    from facever.cli._console import (
        fail, info, library_warnings, looks_like_model, progress_bar, report_bad_images, say, user_errors, warn,
    )
    from facever.workflows.embed import EmbedHooks, embed_to_file

    if looks_like_model(images) and Path(model).is_dir() and not looks_like_model(model):
        fail(f"{images} is a model and {model} a folder: the model comes first: "
             f"`facever embed {images} {model} --out {out}`")
    with user_errors(), library_warnings():
        from facever.core.errors import FaceverError
        from facever.core.sizes import parse_size
        from facever.embedding.loading import preprocessing_overrides

        try:
            crop = parse_size(size) if size else None
        except ValueError as exc:
            raise FaceverError(f"--size: {exc}") from None
        done = embed_to_file(
            model, images, out, weights=weights, preprocessing=preprocessing_overrides(mean, std, bgr), flip=flip.value,
            align=align, size=crop, select=select.value, min_face=min_face, batch_size=batch_size, workers=workers,
            device=device, amp=amp.value, skip_bad=skip_bad,
            hooks=EmbedHooks(say=say, warn=warn, progress=progress_bar, bad_images=report_bad_images),
        )
    if done.bad:
        info(f"left out {len(done.bad)} images (--skip-bad)")
    info(f"wrote {out}: {done.count} embeddings of dimension {done.dim} (flip {flip.value})")
