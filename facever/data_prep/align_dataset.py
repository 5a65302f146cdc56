"""Aligning a whole dataset: a folder tree or a list of images in, a mirrored tree of crops out.

The pipeline keeps the detector busy: worker processes decode files (torch DataLoader), the main
thread groups decoded images by size and runs MTCNN on whole batches, and a small thread pool warps,
encodes and writes the crops (OpenCV releases the GIL) while the next batch is detected.

Every crop is written atomically (hidden temporary file, then rename), so an interrupted run leaves
only complete files and a rerun skips them. With `all_faces`, faces go to `name_0.jpg`, `name_1.jpg`,
... and `name_0` is written last, so its presence means the image is complete. Images that were not
aligned normally (centre-cropped, skipped, failed) are listed with the reason in
`DST/align_report.csv`, which is merged with the previous run's report on resume.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import io
import logging
import os
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from facever.data_prep.alignment_record import alignment_record, write_alignment_record
from facever.core.images import IMAGE_EXTENSIONS, ImageDecodeError, check_regular_file, list_images, read_image_rgb
from facever.core.errors import FaceverError, InputFileError

log = logging.getLogger(__name__)

REPORT_NAME = "align_report.csv"  # next to `alignment.json` (data_prep.alignment_record)
REPORT_FIELDS = ("path", "status", "reason", "output")
from facever.core.settings import (
    ALIGN_BATCH_SIZE, DEFAULT_CROP_SIZE, DEFAULT_DEVICE, DEFAULT_MIN_FACE, DEFAULT_ON_MISS, DEFAULT_OUTPUT_FORMAT,
    DEFAULT_SELECT, ON_MISS, OUTPUT_FORMATS,
)
# Decoded pixels held at once (images waiting for a detector batch, crops waiting to be written):
# bounds memory on datasets of multi-megapixel photos.
MAX_BUFFER_BYTES = 1 << 30
# Statuses of one source image.
ALIGNED, CENTER_CROPPED, SKIPPED, FAILED = "aligned", "center-cropped", "skipped", "failed"


@dataclass(frozen=True)
class AlignConfig:
    """Options of a dataset alignment run (the CLI's flags)."""

    size: tuple[int, int] = DEFAULT_CROP_SIZE
    select: str = DEFAULT_SELECT
    all_faces: bool = False
    min_face: int = DEFAULT_MIN_FACE
    device: str = DEFAULT_DEVICE
    batch_size: int = ALIGN_BATCH_SIZE
    workers: int = 2
    format: str = DEFAULT_OUTPUT_FORMAT
    on_miss: str = DEFAULT_ON_MISS
    overwrite: bool = False
    jpeg_quality: int = 95
    max_detect_side: int | None = 1280
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    write_threads: int = 2

    def __post_init__(self):
        if self.format not in OUTPUT_FORMATS:
            raise FaceverError(f"`format` {self.format}: choose one of {', '.join(OUTPUT_FORMATS)}", options=('format',))
        if self.on_miss not in ON_MISS:
            raise FaceverError(f"`on_miss` {self.on_miss}: choose one of {', '.join(ON_MISS)}", options=('on_miss',))
        if self.workers < 0:
            raise FaceverError(f"`workers` {self.workers}: must be 0 (decode in this process) or more", options=('workers',))
        if self.batch_size < 1:
            raise FaceverError(f"`batch_size` {self.batch_size}: must be at least 1", options=('batch_size',))
        if self.min_face < 12:
            raise FaceverError(f"`min_face` {self.min_face}: must be at least 12 pixels", options=('min_face',))
        if self.max_detect_side is not None and self.max_detect_side < 64:
            raise FaceverError(f"`max_detect_side` {self.max_detect_side}: must be at least 64",
                               options=('max_detect_side',))
        if not 1 <= self.jpeg_quality <= 100:
            raise FaceverError(f"JPEG quality {self.jpeg_quality}: must be in 1..100")


@dataclass(frozen=True)
class AlignItem:
    """One source image: where it is, its path relative to SRC (mirrored in DST), its first output."""

    source: Path
    rel: str
    output: str  # relative to DST; with all_faces, the `_0` file


@dataclass(frozen=True)
class AlignPlan:
    """What a run will do, computed before any work (so bad paths fail first)."""

    src: Path
    dst: Path
    root: Path
    items: tuple[AlignItem, ...]
    todo: tuple[AlignItem, ...]
    config: AlignConfig

    @property
    def already_done(self) -> int:
        return len(self.items) - len(self.todo)


@dataclass
class AlignSummary:
    """Counts of one run. `already_done` images were skipped because their crops already existed."""

    total: int = 0
    already_done: int = 0
    aligned: int = 0
    center_cropped: int = 0
    skipped: int = 0
    failed: int = 0
    faces_written: int = 0
    multi_face: int = 0  # images with more than one face (one kept unless all_faces)
    elapsed_s: float = 0.0
    interrupted: bool = False
    report: str = ""
    dst: str = ""

    @property
    def processed(self) -> int:
        return self.aligned + self.center_cropped + self.skipped + self.failed

    def to_dict(self) -> dict:
        data = asdict(self)
        data["processed"] = self.processed
        data["images_per_s"] = self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return data


@dataclass
class _Outcome:
    item: AlignItem
    status: str
    reason: str = ""
    faces: int = 0
    detected: int = 0
    outputs: list = field(default_factory=list)


# -- planning ---------------------------------------------------------------------------------------
def collect_sources(src: str | Path, *, exclude: Path | None = None) -> tuple[Path, list[tuple[Path, str]]]:
    """The images of SRC as `(root, [(absolute path, relative POSIX path), ...])`.

    SRC is a folder (every image at any depth, sorted), a single image, or a text file listing
    images, one per line (blank lines and `#` comments ignored; text after a tab, such as a label,
    ignored; relative paths are relative to the list's folder). Relative outputs mirror the paths
    below the list's folder, or below the common parent of all listed files when some lie outside it.
    `exclude`: a folder whose files are never sources (DST inside SRC).
    """
    src = Path(src)
    if not src.exists():
        raise FaceverError(f"{src}: no such file or folder")
    if src.is_dir():
        rels = list_images(src)
        pairs = [(src / rel, rel) for rel in rels]
        if exclude is not None:
            ex = Path(os.path.abspath(exclude))
            pairs = [(p, r) for p, r in pairs if not _is_within(Path(os.path.abspath(p)), ex)]
        return src, pairs
    if src.suffix.lower() in IMAGE_EXTENSIONS:
        return src.parent, [(src, src.name)]
    return _read_list(src)


def _read_list(list_path: Path) -> tuple[Path, list[tuple[Path, str]]]:
    check_regular_file(list_path, error=FaceverError)
    try:
        raw = list_path.read_bytes()
    except OSError as exc:
        raise InputFileError(list_path, f"cannot read ({exc.strerror or exc})") from None
    if b"\0" in raw[:4096]:
        raise InputFileError(list_path, "not a text list of image paths (binary content; if it is an image, "
                             f"give it an image extension: {', '.join(IMAGE_EXTENSIONS)})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputFileError(list_path, "not UTF-8 text", line=line) from None
    base = Path(os.path.abspath(list_path.parent))
    entries: list[Path] = []
    seen = set()
    for line in text.splitlines():
        entry = line.split("\t", 1)[0].strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(os.path.normpath(base / Path(entry).expanduser()))
        if path not in seen:
            seen.add(path)
            entries.append(path)
    if not entries:
        raise InputFileError(list_path, "lists no image paths")
    if all(_is_within(p, base) for p in entries):
        root = base
    else:
        root = Path(os.path.commonpath([str(p.parent) for p in entries]))
    return root, [(p, p.relative_to(root).as_posix()) for p in entries]


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def output_names(rels: Sequence[str], *, fmt: str = "jpg", all_faces: bool = False) -> list[str]:
    """The DST-relative output of each source: same path, extension replaced by `fmt` (`_0` added
    before it with `all_faces`).

    Sources that would share an output (`a.png`, `a.bmp`) all keep their full name (`a.png.jpg`,
    `a.bmp.jpg`), except one already named like its output (`a.jpg` stays `a.jpg`), so a crop looked
    up by either rule never shows another photo. When even that leaves two sources one name (`a.png`
    beside a file really called `a.png.jpg`), FaceverError names them: rename one.
    """
    index = 0 if all_faces else None
    natural = [_face_name(rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel, fmt, index) for rel in rels]
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(natural):
        groups.setdefault(name, []).append(i)
    names = list(natural)
    for name, members in groups.items():
        if len(members) > 1:
            for i in members:
                if rels[i] != name:  # the one source whose own name is the output keeps it
                    names[i] = _face_name(rels[i], fmt, index)
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise FaceverError(
                f"{rels[seen[name]]} and {rels[i]} would both be aligned to {name}; rename one of them"
            )
        seen[name] = i
    return names


def _face_name(stem: str, fmt: str, index: int | None) -> str:
    return f"{stem}.{fmt}" if index is None else f"{stem}_{index}.{fmt}"


def _check_writable(dst: Path) -> None:
    if dst.exists() and not dst.is_dir():
        raise FaceverError(f"{dst}: exists and is not a folder")
    try:
        dst.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dst, prefix=".facever-write-test-"):
            pass
    except OSError as exc:
        raise FaceverError(f"{dst}: cannot write there ({exc.strerror or exc})") from None


def check_output_folder(src: str | Path, dst: str | Path) -> None:
    """SRC must exist and DST must be another folder, not one holding SRC (crops written among the photos
    would mix with them). Whether DST may be written at all is `core.output_folders`' rule."""
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FaceverError(f"{src}: no such file or folder")
    real_src, real_dst = Path(os.path.realpath(src)), Path(os.path.realpath(dst))
    if src.is_dir() and real_src == real_dst:
        raise FaceverError(f"{dst}: the output folder is the input folder; give another folder for the crops")
    if _is_within(real_src, real_dst):
        raise FaceverError(f"{src}: the input is inside the output folder {dst}; the crops would be written among "
                           "the photos. Give an output folder outside it")


def plan_alignment(src: str | Path, dst: str | Path, *, config: AlignConfig = AlignConfig()) -> AlignPlan:
    """Check SRC and DST, list the images and which of them still need aligning. No image is read."""
    src, dst = Path(src), Path(dst)
    check_output_folder(src, dst)
    _check_writable(dst)
    root, sources = collect_sources(src, exclude=dst)
    outputs = output_names([rel for _, rel in sources], fmt=config.format, all_faces=config.all_faces)
    items = tuple(AlignItem(path, rel, out) for (path, rel), out in zip(sources, outputs))
    if config.overwrite:
        todo = items
    else:
        todo = tuple(item for item in items if not (dst / item.output).exists())
    return AlignPlan(src=src, dst=dst, root=root, items=items, todo=todo, config=config)


# -- decoding in worker processes -------------------------------------------------------------------
class _DecodeDataset:
    """Map-style dataset for torch's DataLoader: item i -> (i, image tensor or None, error or None).

    Tensors (not numpy arrays) so the DataLoader hands images over through shared memory."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch

        try:
            rgb = read_image_rgb(self.paths[i])
        except ImageDecodeError as exc:
            return i, None, _reason(exc, self.paths[i])
        except (OSError, MemoryError) as exc:  # unreadable file, or too large to hold
            return i, None, f"cannot read ({exc})"
        if not rgb.flags.writeable:  # PIL hands out read-only buffers; torch wants to own writable memory
            rgb = rgb.copy()
        return i, torch.from_numpy(rgb), None


def _reason(exc: Exception, path: Path) -> str:
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _identity(sample):
    return sample


def _decoded(paths: Sequence[Path], workers: int) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    dataset = _DecodeDataset(paths)
    if workers == 0 or len(paths) <= 1:
        for i in range(len(dataset)):
            idx, tensor, error = dataset[i]
            yield idx, None if tensor is None else tensor.numpy(), error
        return
    from torch.utils.data import DataLoader

    from facever.core.devices import bound_workers
    from facever.core.opencv_guard import opencv

    opencv()  # shut OpenCV's pool down before the workers fork (facever.core.opencv_guard)
    loader = DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=bound_workers(workers, tasks=len(paths)),
        collate_fn=_identity,
        prefetch_factor=4,
        persistent_workers=False,
    )
    for idx, tensor, error in loader:
        yield idx, None if tensor is None else tensor.numpy(), error


# -- writing ----------------------------------------------------------------------------------------
def encode_image(rgb: np.ndarray, fmt: str, *, jpeg_quality: int = 95) -> bytes:
    """Encode an RGB uint8 array as JPEG or PNG bytes."""
    from facever.core.opencv_guard import opencv

    cv2 = opencv()

    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    if fmt == "jpg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise FaceverError(f"could not encode a {rgb.shape} image as {fmt}")
    return buf.tobytes()


def _write_atomic(path: Path, data: bytes) -> None:
    from facever.core.atomic import atomic_path

    # No fsync per crop (it would dominate on many disks at 100k+ files): the rename still guarantees
    # that an interrupted process leaves complete files only, which is what resuming relies on.
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
    except OSError as exc:  # disk full, permissions changed mid-run: stop with the file named
        raise FaceverError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _remove_outputs(dst: Path, item: AlignItem, config: AlignConfig, *, keep: int = 0) -> None:
    """Delete stale crops of `item` from an earlier run (faces beyond `keep`)."""
    if config.all_faces:
        stem = item.output[: -len("_0." + config.format)]
        index = keep
        while (dst / _face_name(stem, config.format, index)).exists():
            (dst / _face_name(stem, config.format, index)).unlink()
            index += 1
    elif keep == 0 and (dst / item.output).exists():
        (dst / item.output).unlink()


def _remove_stale_partials(dst: Path, todo: Sequence[AlignItem]) -> None:
    """Delete hidden temporary files a killed run left next to the crops still to do (atomic_path names
    them `.<stem>.partial-*`); only the folders this run writes to are scanned."""
    folders = {(dst / item.output).parent for item in todo}
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:  # not created yet
            continue
        for entry in entries:
            if entry.name.startswith(".") and ".partial-" in entry.name and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                except OSError as exc:
                    log.warning("could not remove stale temporary file %s: %s", entry.path, exc)


def _finish(aligner, dst: Path, item: AlignItem, rgb: np.ndarray, detections, config: AlignConfig) -> _Outcome:
    """Warp, encode and write the crops of one image; runs in the writer threads."""
    from facever.data_prep.align import center_crop

    faces = aligner.align_detected(rgb, detections)
    crops, error = faces.crops, faces.error
    status, reason = ALIGNED, ""
    if not crops:
        if error:
            reason = error
        elif min(rgb.shape[:2]) < config.min_face:
            reason = f"image smaller than `min_face` ({rgb.shape[1]}x{rgb.shape[0]} pixels)"
        else:
            reason = "no face found"
        if config.on_miss == "center-crop":
            status, crops = CENTER_CROPPED, [center_crop(rgb, config.size)]
        else:
            status = SKIPPED
    if config.overwrite:
        _remove_outputs(dst, item, config, keep=len(crops))
    outputs = []
    if config.all_faces and crops:
        stem = item.output[: -len("_0." + config.format)]
        # Highest index first: `_0` is written last and marks the image as complete for resuming.
        for index in reversed(range(len(crops))):
            name = _face_name(stem, config.format, index)
            _write_atomic(dst / name, encode_image(crops[index], config.format, jpeg_quality=config.jpeg_quality))
            outputs.append(name)
        outputs.reverse()
    elif crops:
        _write_atomic(dst / item.output, encode_image(crops[0], config.format, jpeg_quality=config.jpeg_quality))
        outputs.append(item.output)
    return _Outcome(item, status, reason, faces=len(crops), detected=len(detections), outputs=outputs)


# -- report -----------------------------------------------------------------------------------------
def read_report(path: str | Path) -> list[dict]:
    """Rows of an `align_report.csv` (dicts with `path`, `status`, `reason`, `output`)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "path" not in reader.fieldnames or "status" not in reader.fieldnames:
            raise InputFileError(path, f"not an align report (expected columns {', '.join(REPORT_FIELDS)})", line=1)
        return [dict(row) for row in reader]


def _write_report(path: Path, rows: list[dict]) -> None:
    from facever.core.atomic import write_text_atomic

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=REPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: r["path"]):
        writer.writerow({k: row.get(k, "") for k in REPORT_FIELDS})
    write_text_atomic(path, buf.getvalue())


def _report_row(outcome: _Outcome) -> dict:
    return {
        "path": outcome.item.rel,
        "status": outcome.status,
        "reason": outcome.reason,
        "output": ";".join(outcome.outputs),
    }


def _previous_rows(report: Path, plan: AlignPlan) -> dict[str, dict]:
    # Kept even with --overwrite: every image this run processes replaces its row, and an interrupted
    # --overwrite run must not forget the misses of images it did not reach.
    if not report.is_file():
        return {}
    try:
        rows = read_report(report)
    except (InputFileError, OSError, csv.Error, UnicodeDecodeError) as exc:
        log.warning("ignoring unreadable previous report %s: %s", report, exc)
        return {}
    known = {item.rel for item in plan.items}
    return {row["path"]: row for row in rows if row.get("path") in known}


# -- the run ----------------------------------------------------------------------------------------
def make_aligner(config: AlignConfig):
    """The `FaceAligner` a run with `config` uses."""
    from facever.data_prep.align import FaceAligner

    return FaceAligner(
        config.size,
        select=config.select,
        all_faces=config.all_faces,
        min_face=config.min_face,
        device=config.device,
        thresholds=config.thresholds,
        max_detect_side=config.max_detect_side,
        batch_size=config.batch_size,
    )


def run_alignment(
    plan: AlignPlan,
    *,
    progress: Callable[[int], None] | None = None,
    aligner=None,
) -> AlignSummary:
    """Align every image of `plan.todo`; return the counts. `progress(n)` after each n images.

    `aligner`: a ready `FaceAligner` (built from the config when None). An exception (including one
    raised by `progress`, or KeyboardInterrupt) stops the run after the crops being written are
    complete; the report is still written, and a rerun resumes.
    """
    config, dst = plan.config, plan.dst
    aligner = aligner or make_aligner(config)
    report_path = dst / REPORT_NAME
    rows = _previous_rows(report_path, plan)
    # How these crops are made, for the model trained on them and for `facever embed`'s check.
    write_alignment_record(dst, alignment_record(
        config.size, select=config.select, all_faces=config.all_faces, min_face=config.min_face,
        thresholds=config.thresholds, max_detect_side=config.max_detect_side,
    ))
    _remove_stale_partials(dst, plan.todo)
    summary = AlignSummary(total=len(plan.items), already_done=plan.already_done, report=str(report_path), dst=str(dst))
    started = time.perf_counter()
    todo = plan.todo
    pending: deque[tuple[cf.Future, int]] = deque()
    # Bound the crops waiting to be written: enough to overlap with the next detector call.
    max_pending = 2 * config.batch_size + 8

    def record(outcome: _Outcome) -> None:
        rel = outcome.item.rel
        rows.pop(rel, None)
        if outcome.status == ALIGNED:
            summary.aligned += 1
        elif outcome.status == CENTER_CROPPED:
            summary.center_cropped += 1
        elif outcome.status == SKIPPED:
            summary.skipped += 1
        else:
            summary.failed += 1
        summary.faces_written += len(outcome.outputs) if outcome.status == ALIGNED else 0
        summary.multi_face += outcome.detected > 1
        if outcome.status != ALIGNED:
            rows[rel] = _report_row(outcome)
        if progress is not None:
            progress(1)

    def drain(limit: int) -> None:
        """Record finished crops in order: wait while more than `limit` are pending (or too many bytes),
        then take whatever else is already done, so progress follows the writes."""
        nonlocal pending_bytes
        while pending and (
            len(pending) > limit or pending_bytes > MAX_BUFFER_BYTES or pending[0][0].done()
        ):
            future, nbytes = pending.popleft()
            pending_bytes -= nbytes
            record(future.result())

    pool = cf.ThreadPoolExecutor(max_workers=max(1, config.write_threads), thread_name_prefix="facever-align-write")
    buffers: dict[tuple[int, int], list[tuple[AlignItem, np.ndarray]]] = {}
    buffered = buffered_bytes = pending_bytes = 0

    def detect_and_dispatch(key: tuple[int, int]) -> None:
        nonlocal buffered, buffered_bytes, pending_bytes
        batch = buffers.pop(key)
        buffered -= len(batch)
        buffered_bytes -= sum(rgb.nbytes for _, rgb in batch)
        detections = aligner.detect_batch([rgb for _, rgb in batch])
        for (item, rgb), det in zip(batch, detections):
            pending.append((pool.submit(_finish, aligner, dst, item, rgb, det, config), rgb.nbytes))
            pending_bytes += rgb.nbytes
        drain(max_pending)

    try:
        for index, rgb, error in _decoded([item.source for item in todo], config.workers):
            item = todo[index]
            if rgb is None:
                record(_Outcome(item, FAILED, error or "cannot decode"))
                continue
            key = aligner.detection_shape(rgb.shape) if min(rgb.shape[:2]) >= config.min_face else (0, 0)
            buffers.setdefault(key, []).append((item, rgb))
            buffered += 1
            buffered_bytes += rgb.nbytes
            if len(buffers[key]) >= config.batch_size:
                detect_and_dispatch(key)
            elif buffered >= 4 * config.batch_size or buffered_bytes > MAX_BUFFER_BYTES:
                # Many different sizes: detect the largest group rather than hold images forever.
                detect_and_dispatch(max(buffers, key=lambda k: len(buffers[k])))
        for key in sorted(buffers, key=lambda k: -len(buffers[k])):
            detect_and_dispatch(key)
        drain(0)
    except BaseException:
        summary.interrupted = True
        for future, _ in pending:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        # Record crops that were completed before the interruption, then write the report in any case.
        for future, _ in pending:
            if future.done() and not future.cancelled() and future.exception() is None:
                outcome = future.result()
                rows.pop(outcome.item.rel, None)
                if outcome.status != ALIGNED:
                    rows[outcome.item.rel] = _report_row(outcome)
        summary.elapsed_s = time.perf_counter() - started
        _write_report(report_path, list(rows.values()))
    return summary


def align_dataset(
    src: str | Path,
    dst: str | Path,
    *,
    config: AlignConfig = AlignConfig(),
    progress: Callable[[int], None] | None = None,
    aligner=None,
) -> AlignSummary:
    """Align every image of SRC (folder tree, image, or list file) into DST, mirroring relative paths.

    Already written crops are skipped unless `config.overwrite`. See the module docstring.
    """
    return run_alignment(plan_alignment(src, dst, config=config), progress=progress, aligner=aligner)
