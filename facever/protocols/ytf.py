"""YouTube Faces (YTF): the splits file, the video folders, and video embeddings from frame embeddings.

- `splits.txt`: an optional header line, then rows `split, pair#, Name/video, Name/video, is_same`
  (comma and space separated): 5000 pairs, 10 splits of 500 (250 same + 250 different). Split s is
  fold s - 1. The items of the protocol are video ids `Name/video`.
- Videos: `frame_images_DB/<Name>/<video>/<n>.jpg` (raw frames) or
  `aligned_images_DB/<Name>/<video>/aligned_detect_<video>.<n>.jpg` (the dataset's own aligned crops).
  Frames are ordered naturally by the numbers in their names (frame 9 before frame 10).
- A video's embedding is the mean of its L2-normalised frame embeddings, normalised again. With
  `frames=N` only N frames are used, sampled evenly: frame `floor((k + 1/2) * n / N)` for k = 0..N-1 of
  the n frames (the middle of N equal segments of the video); N >= n uses every frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from facever.core.images import IMAGE_EXTENSIONS
from facever.protocols.pair_protocol import PairProtocol, checked
from facever.core.embeddings_file import Embeddings
from facever.core.errors import FaceverError, InputFileError
from facever.core.paths import name_problem
from facever.core.text_files import read_text

FRAMES_DB = "frame_images_DB"
ALIGNED_DB = "aligned_images_DB"
YTF_SPLITS = 10  # the protocol: 10 splits of 500 pairs (250 same + 250 different)
LAYOUTS = {"frames": FRAMES_DB, "aligned": ALIGNED_DB}

_DIGITS = re.compile(r"([0-9]+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders the numbers inside a name numerically (`0.9.jpg` < `0.10.jpg`)."""
    return tuple((0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)
                 for part in _DIGITS.split(name) if part)


def _check_video_id(path: Path, line: int, video: str) -> None:
    problem = name_problem(video)
    if problem is not None:
        raise InputFileError(path, f"video {video!r} is not of the form Name/video (it {problem})", line=line)
    if len(video.split("/")) != 2:
        raise InputFileError(path, f"video {video!r} is not of the form Name/video", line=line)


def read_ytf_splits(path: str | Path) -> PairProtocol:
    """Read YTF's `splits.txt` (with or without its header line) into a `PairProtocol` over video ids.

    Raises `InputFileError` naming the file and line for a malformed row, a label that contradicts the
    names, or a repeated (split, pair#).
    """
    path = Path(path)
    text = read_text(path, what="splits file")
    first, second, labels, folds, line_numbers = [], [], [], [], []
    seen: dict[tuple[int, int], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if number == 1 and fields[0].lower().startswith("split"):
            continue  # the official header: "split number, pair number, first name, second name, is same:"
        if len(fields) != 5:
            raise InputFileError(
                path, f"expected 5 comma-separated fields `split, pair#, Name/video, Name/video, is_same`, "
                f"got {len(fields)}: {line.strip()!r}", line=number,
            )
        split, pair_no, video_a, video_b, same = fields
        if not split.isascii() or not split.isdigit() or not 1 <= int(split) <= YTF_SPLITS:
            raise InputFileError(path, f"split {split!r} is not a split number 1..{YTF_SPLITS}", line=number)
        if not pair_no.isascii() or not pair_no.isdigit():
            raise InputFileError(path, f"pair number {pair_no!r} is not an integer", line=number)
        if same not in ("0", "1"):
            raise InputFileError(path, f"is_same must be 0 or 1, got {same!r}", line=number)
        _check_video_id(path, number, video_a)
        _check_video_id(path, number, video_b)
        if video_a == video_b:
            raise InputFileError(path, f"a video paired with itself: {video_a!r}", line=number)
        same_by_name = video_a.split("/")[0] == video_b.split("/")[0]
        if same_by_name != (same == "1"):
            raise InputFileError(
                path, f"is_same={same} but the names show {'the same person' if same_by_name else 'different people'}",
                line=number,
            )
        key = (int(split), int(pair_no))
        if key in seen:
            raise InputFileError(path, f"split {key[0]} pair {key[1]} repeats line {seen[key]}", line=number)
        seen[key] = number
        first.append(video_a)
        second.append(video_b)
        labels.append(same == "1")
        folds.append(int(split) - 1)
        line_numbers.append(number)
    if not first:
        raise InputFileError(path, "no pairs in the splits file")
    if len(set(folds)) < 2:
        raise InputFileError(path, f"all pairs are in one split; the protocol needs several (YTF has {YTF_SPLITS})")
    return checked(PairProtocol("ytf", first, second, labels, folds, source=path, line_numbers=line_numbers))


@dataclass(frozen=True)
class VideoTree:
    """Where the videos are: `base/<Name>/<video>/<frames>`; `layout` is "frames" or "aligned"."""

    base: Path
    layout: str


def find_video_tree(root: str | Path, *, layout: str = "auto", prefer: str = "aligned") -> VideoTree:
    """Locate the video folders under a YTF root.

    `root` may be the YTF root (holding `frame_images_DB/` and/or `aligned_images_DB/`) or one of those two
    folders itself. `layout="auto"` takes whichever is there, `prefer` ("aligned": the dataset's own
    crops, or "frames": raw frames, for aligning them here) when both are; "frames" or "aligned" picks one.
    """
    root = Path(root)
    if not root.is_dir():
        raise FaceverError(f"{root}: YTF folder not found")
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"layout must be auto, frames or aligned, got {layout!r}")
    for name, db in LAYOUTS.items():
        if root.name == db and layout in ("auto", name):
            return VideoTree(root, name)
    if prefer not in LAYOUTS:
        raise ValueError(f"prefer must be frames or aligned, got {prefer!r}")
    other = "frames" if prefer == "aligned" else "aligned"
    wanted = [prefer, other] if layout == "auto" else [layout]
    for name in wanted:
        if (root / LAYOUTS[name]).is_dir():
            return VideoTree(root / LAYOUTS[name], name)
    expected = " or ".join(f"{LAYOUTS[n]}/" for n in wanted)
    raise FaceverError(f"{root}: no {expected} folder (expected the YouTube Faces layout <root>/{LAYOUTS[wanted[0]]}/Name/video/)")


def list_video_frames(tree: VideoTree, videos: Sequence[str]) -> dict[str, list[str]]:
    """Frame paths (relative to `tree.base`, POSIX) of each video, in natural frame order.

    Raises `FaceverError` naming the videos that are missing or hold no image.
    """
    frames: dict[str, list[str]] = {}
    missing, empty = [], []
    for video in videos:
        folder = tree.base / video
        if not folder.is_dir():
            missing.append(video)
            continue
        names = [
            p.name for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        ]
        if not names:
            empty.append(video)
            continue
        frames[video] = [f"{video}/{n}" for n in sorted(names, key=natural_key)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} video folder(s) missing: {_some(missing)}")
    if empty:
        problems.append(f"{len(empty)} video folder(s) without frames: {_some(empty)}")
    if problems:
        raise FaceverError(f"{tree.base}: " + "; ".join(problems))
    return frames


def frames_from_embeddings(embeddings: Embeddings, videos: Sequence[str]) -> dict[str, list[str]]:
    """Group an embeddings file's frame paths (`Name/video/frame.jpg`) by video, in natural frame order.

    A leading `frame_images_DB/` or `aligned_images_DB/` is kept in the paths but ignored for grouping.
    Raises `FaceverError` naming the videos with no frame in the file.
    """
    grouped: dict[str, list[str]] = {}
    for p in embeddings.paths:
        parts = p.split("/")
        if parts and parts[0] in LAYOUTS.values():
            parts = parts[1:]
        if len(parts) >= 3:
            grouped.setdefault("/".join(parts[:2]), []).append(p)
    missing = [v for v in videos if v not in grouped]
    if missing:
        raise FaceverError(f"no frame embeddings for {len(missing)} video(s): {_some(missing)}")
    return {v: sorted(grouped[v], key=lambda p: natural_key(p.rsplit("/", 1)[-1])) for v in videos}


def sample_frames(n: int, frames: int | None) -> np.ndarray:
    """Indices of the frames used out of `n`: all, or `floor((k + 1/2) * n / N)` for k < N (even spread)."""
    if frames is None or frames >= n:
        return np.arange(n)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    k = np.arange(frames)
    # Integer arithmetic: floor((2k + 1) * n / (2N)) is exact, no float rounding at segment borders.
    return ((2 * k + 1) * n) // (2 * frames)


def select_frames(frame_lists: Mapping[str, Sequence[str]], *, frames: int | None = None) -> dict[str, list[str]]:
    """The frames each video contributes under the sampling rule (see `sample_frames`)."""
    return {v: [fl[i] for i in sample_frames(len(fl), frames)] for v, fl in frame_lists.items()}


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def video_embeddings(
    frame_embeddings: Embeddings,
    videos: Sequence[str],
    frame_lists: Mapping[str, Sequence[str]],
    *,
    frames: int | None = None,
    skip: Sequence[str] = (),
) -> Embeddings:
    """One embedding per video: the mean of its L2-normalised frame embeddings, L2-normalised.

    `frame_lists[video]` lists the video's frames in order (keys of `frame_embeddings`); with `frames=N`
    only the evenly sampled N of them are used. Frames in `skip` (frames that could not be embedded) are
    left out of the mean. Raises `FaceverError` naming videos that have no frame list, frames that have
    no embedding, and videos left with no usable frame.
    """
    no_list = [v for v in videos if v not in frame_lists]
    if no_list:
        raise FaceverError(f"no frames listed for {len(no_list)} video(s): {_some(no_list)}")
    skip_set = set(skip)
    chosen = select_frames({v: frame_lists[v] for v in videos}, frames=frames)
    index = frame_embeddings.index()
    out = np.zeros((len(videos), frame_embeddings.dim), dtype=np.float64)
    absent, unusable = [], []
    used = []
    for i, video in enumerate(videos):
        rows = []
        for f in chosen[video]:
            if f in skip_set:
                continue
            r = index.get(f)
            if r is None:
                absent.append(f)
            else:
                rows.append(r)
        if not rows:
            unusable.append(video)
            continue
        used.append(len(rows))
        # float64 mean: thousands of frames per video would otherwise accumulate float32 rounding.
        out[i] = _l2_normalise(frame_embeddings.embeddings[rows].astype(np.float64)).mean(axis=0)
    if absent:
        raise FaceverError(f"{len(absent)} frame(s) have no embedding: {_some(absent)}")
    if unusable:
        raise FaceverError(f"{len(unusable)} video(s) have no usable frame: {_some(unusable)}")
    meta = {
        "kind": "ytf-video-embeddings",
        "frames": frames if frames is not None else "all",
        "frames_per_video": {"min": int(min(used)), "max": int(max(used)), "mean": float(np.mean(used))} if used else {},
        "aggregation": "mean of L2-normalised frame embeddings, L2-normalised",
    }
    return Embeddings(list(videos), _l2_normalise(out).astype(np.float32), metadata=meta)


def _some(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
