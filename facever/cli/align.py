"""`facever align SRC DST`: detect, align and crop every face photo of a dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from facever.cli._options import OnMiss, OutputFormat, Select, device_option


def _default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def align(
    src: Path = typer.Argument(
        ...,
        help="Folder of photos (identity folders at any depth, e.g. CASIA-WebFace or raw LFW), one image, "
        "or a text file listing image paths (one per line, relative to the list's folder).",
        show_default=False,
    ),
    dst: Path = typer.Argument(..., help="Output folder; mirrors SRC's relative paths.", show_default=False),
    size: str = typer.Option(
        "112x96", "--size", help="Crop size HxW: 112x96 (the paper's), 112x112 (ArcFace), or any, e.g. 160x160."
    ),
    select: Select = typer.Option(
        Select.largest,
        "--select",
        help="Which face to keep when a photo holds several: the largest, or the one nearest the centre "
        "weighted by size (use `center` for LFW's 250x250 photos).",
    ),
    all_faces: bool = typer.Option(
        False, "--all", help="Write every face: photo.jpg -> photo_0.jpg, photo_1.jpg, ... in --select order."
    ),
    min_face: int = typer.Option(20, "--min-face", help="Smallest face to look for, in pixels (>= 12)."),
    device: str = device_option(),
    batch_size: int = typer.Option(
        64, "--batch-size", help="Images per detector call (images of equal size are batched together)."
    ),
    workers: int = typer.Option(
        None,
        "--workers",
        help="Processes decoding images (0: decode in the main process). Default: CPU count - 1, at most 8.",
        show_default=False,
    ),
    fmt: OutputFormat = typer.Option(OutputFormat.jpg, "--format", help="Output image format."),
    on_miss: OnMiss = typer.Option(
        OnMiss.skip,
        "--on-miss",
        help="When no face is found: skip the photo, or write a centre crop (LFW practice: every pair keeps "
        "both images). Either way the photo is listed in DST/align_report.csv.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo every image; by default existing crops are kept (resume)."
    ),
    max_side: int = typer.Option(
        1280,
        "--max-side",
        help="Detect on a copy shrunk to this longer side (huge photos); crops still use the full pixels.",
    ),
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
    from facever.cli._console import info, out_console, progress_bar, user_errors, warn

    import contextlib

    from facever.core.locks import folder_lock

    with user_errors(), contextlib.ExitStack() as stack:
        from facever.data_prep.align_dataset import AlignConfig, check_output_folder, plan_alignment, run_alignment
        from facever.core.sizes import parse_size
        from facever.core.errors import FaceverError

        check_output_folder(src, dst)
        stack.enter_context(folder_lock(dst, kind="align"))  # one writer per DST, held until the crops are written

        try:
            crop_size = parse_size(size)
        except ValueError as exc:
            raise FaceverError(f"--size: {exc}") from None
        config = AlignConfig(
            size=crop_size,
            select=select.value,
            all_faces=all_faces,
            min_face=min_face,
            device=device,
            batch_size=batch_size,
            workers=_default_workers() if workers is None else workers,
            format=fmt.value,
            on_miss=on_miss.value,
            overwrite=overwrite,
            max_detect_side=max_side,
        )
        if min_face < 12:
            raise FaceverError(f"--min-face {min_face}: must be at least 12 pixels")
        if max_side < 64:
            raise FaceverError(f"--max-side {max_side}: must be at least 64")
        from facever.core.devices import resolve_device

        resolved = resolve_device(device)  # a missing GPU fails here, before any work
        plan = plan_alignment(src, dst, config=config)
        if not plan.items:
            raise FaceverError(f"{src}: no images found")
        if plan.already_done:
            info(f"{plan.already_done} of {len(plan.items)} images already aligned in {dst} (resuming; "
                 "--overwrite redoes them)")
        info(f"aligning {len(plan.todo)} images to {crop_size[0]}x{crop_size[1]} on {resolved}")
        with progress_bar("align", total=len(plan.todo)) as advance:
            summary = run_alignment(plan, progress=advance)

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
