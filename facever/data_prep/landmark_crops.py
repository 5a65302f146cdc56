"""Aligned crops from given landmarks (no detector): for benchmarks that ship their own five points (IJB-B/C).

Each image is warped with `facever.data_prep.align.warp_face`, the warp `facever align` uses (Umeyama
similarity of the five points onto the template of the crop size, then one bilinear warp), and saved
under the same relative name in the output folder (JPEG quality 95 for .jpg names as `facever align`
writes, PNG otherwise). Crops already present are kept, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from facever.core.errors import FaceverError
from facever.core.paths import inside
from facever.core.images import ImageDecodeError, read_image_rgb
from facever.data_prep.align import warp_face
from facever.data_prep.align_dataset import _write_atomic, encode_image

JPEG_QUALITY = 95


@dataclass(frozen=True)
class CropSummary:
    written: int
    reused: int


def _crop_one(src: Path, dst: Path, points: np.ndarray, size: tuple[int, int], where: str) -> None:
    if not src.is_file():
        raise FaceverError(f"{where}: image {src} not found")
    try:
        rgb = read_image_rgb(src)
    except ImageDecodeError as exc:
        raise FaceverError(f"{where}: {exc}") from None
    try:
        crop = warp_face(rgb, points, size)
    except ValueError as exc:  # degenerate landmarks (all five points equal)
        raise FaceverError(f"{where}: cannot align {src.name} from its landmarks ({exc})") from None
    fmt = "jpg" if dst.suffix.lower() in (".jpg", ".jpeg") else "png"
    dst.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(dst, encode_image(crop, fmt, jpeg_quality=JPEG_QUALITY))


def crop_from_landmarks(
    src_root: str | Path,
    names: Sequence[str],
    points: np.ndarray,
    dst_root: str | Path,
    size: tuple[int, int],
    *,
    where: Sequence[str] | None = None,
    threads: int = 2,
    progress: Callable[[int], None] | None = None,
) -> CropSummary:
    """Write `dst_root / name`, the crop of `src_root / name` aligned by `points[i]` (5 x 2, x y), for each name.

    `where[i]` says where image i is listed (e.g. `meta/ijbc_face_tid_mid.txt:12`) for error messages.
    A missing or undecodable image raises `FaceverError` naming it; crops already written are kept.
    """
    src_root, dst_root = Path(src_root), Path(dst_root)
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (len(names), 5, 2):
        raise ValueError(f"expected {len(names)} x 5 x 2 landmarks, got {points.shape}")
    todo = [i for i, n in enumerate(names) if not inside(dst_root, n).is_file()]
    reused = len(names) - len(todo)
    if progress is not None and reused:
        progress(reused)

    def run(i: int) -> None:
        _crop_one(inside(src_root, names[i]), inside(dst_root, names[i]), points[i], size,
                  where[i] if where is not None else str(src_root / names[i]))

    # Decoding and warping release the GIL (Pillow, OpenCV): threads overlap them without new processes.
    step = 256
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for s in range(0, len(todo), step):
            chunk = todo[s:s + step]
            list(pool.map(run, chunk))
            if progress is not None:
                progress(len(chunk))
    return CropSummary(written=len(todo), reused=reused)
