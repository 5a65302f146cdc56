"""`facever align SRC DST`: detect, align and crop every face photo of a dataset."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from facever.cli._options import OnMiss, OutputFormat, Select, device_option
from facever.core.settings import (
    ALIGN_BATCH_SIZE, DEFAULT_CROP_SIZE, DEFAULT_MIN_FACE, DEFAULT_ON_MISS, DEFAULT_OUTPUT_FORMAT, DEFAULT_SELECT,
)


def align(
    src: Path = typer.Argument(..., show_default=False, help="Folder of photos (identity folders at any depth, e.g. "
                               "CASIA-WebFace or raw LFW), one image, or a text file listing image paths (one per "
                               "line, relative to the list's folder)."),
    dst: Path = typer.Argument(..., help="Output folder; mirrors SRC's relative paths.", show_default=False),
    size: str = typer.Option("x".join(map(str, DEFAULT_CROP_SIZE)), "--size", help="Crop size HxW: 112x96 (the paper's), 112x112 (ArcFace), or "
                             "any, e.g. 160x160."),
    select: Select = typer.Option(Select(DEFAULT_SELECT), "--select", help="Which face to keep when a photo holds several: "
                                  "the largest, or the one nearest the centre weighted by size (use `center` for "
                                  "LFW's 250x250 photos)."),
    all_faces: bool = typer.Option(False, "--all", help="Write every face: photo.jpg -> photo_0.jpg, photo_1.jpg, ... "
                                   "in --select order."),
    min_face: int = typer.Option(DEFAULT_MIN_FACE, "--min-face", help="Smallest face to look for, in pixels (>= 12)."),
    device: str = device_option(),
    batch_size: int = typer.Option(ALIGN_BATCH_SIZE, "--batch-size", help="Images per detector call (images of equal size are "
                                   "batched together)."),
    workers: int = typer.Option(None, "--workers", show_default=False, help="Processes decoding images (0: decode in "
                                "the main process). Default: CPU count - 1, at most 8."),
    fmt: OutputFormat = typer.Option(OutputFormat(DEFAULT_OUTPUT_FORMAT), "--format", help="Output image format."),
    on_miss: OnMiss = typer.Option(OnMiss(DEFAULT_ON_MISS), "--on-miss", help="When no face is found: skip the photo, or write a "
                                   "centre crop (LFW practice: every pair keeps both images). Either way the photo "
                                   "is listed in DST/align_report.csv."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo every image; by default existing crops are kept "
                                   "(resume)."),
    max_side: int = typer.Option(1280, "--max-side", help="Detect on a copy shrunk to this longer side (huge photos); "
                                 "crops still use the full pixels."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Align faces: MTCNN landmarks -> similarity transform -> crops on the 5-point template.

    Examples:

      facever align ~/data/CASIA-WebFace ~/data/casia-112x96

      facever align lfw/ lfw-aligned/ --select center --on-miss center-crop

      facever align photos.txt out/ --size 112x112 --format png --device cuda --batch-size 128

    Rerunning the same command resumes: finished crops are skipped.

    Images not aligned normally (centre-cropped, skipped, failed) are listed in DST/align_report.csv.
    """
    from facever.cli._console import out_console, progress_bar, say, user_errors, warn

    with user_errors():
        from facever.core.errors import FaceverError
        from facever.core.sizes import parse_size
        from facever.data_prep.align_dataset import AlignConfig
        from facever.workflows.align import align as align_dataset
        from facever.workflows.align import default_workers

        try:
            crop_size = parse_size(size)
        except ValueError as exc:
            raise FaceverError(f"--size: {exc}") from None
        config = AlignConfig(
            size=crop_size, select=select.value, all_faces=all_faces, min_face=min_face, device=device,
            batch_size=batch_size, workers=default_workers() if workers is None else workers, format=fmt.value,
            on_miss=on_miss.value, overwrite=overwrite, max_detect_side=max_side,
        )
        summary = align_dataset(src, dst, config, say=say, progress=progress_bar)

    if json_out:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        data = summary.to_dict()
        out_console.print(
            f"aligned {summary.aligned}, center-cropped {summary.center_cropped}, skipped {summary.skipped}, "
            f"failed {summary.failed}, already done {summary.already_done} "
            f"({summary.faces_written} faces written, {data['images_per_s']:.1f} images/s)",
            highlight=False,
            soft_wrap=True,
        )
    if summary.center_cropped or summary.skipped or summary.failed:
        warn(f"{summary.center_cropped + summary.skipped + summary.failed} images not aligned normally: "
             f"see {summary.report}")
