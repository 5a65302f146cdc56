"""IJB-B / IJB-C meta files in InsightFace's `IJB_release` layout (the data is licensed by NIST; never fetched).

Per set (`IJBC/` or `IJBB/`; `SET` below is `ijbc` or `ijbb`):

- `loose_crop/`: the images, named as in the meta files (`1.jpg` ...);
- `meta/SET_face_tid_mid.txt`: `image_name template_id media_id` per line (one line per image of a
  template; a media id counts within its template);
- `meta/SET_template_pair_label.txt`: `template_1 template_2 label`, label 1 same, 0 different;
- `meta/SET_name_5pts_score.txt`: `image_name x1 y1 ... x5 y5 faceness_score`, the five points in
  ArcFace-template order (left eye, right eye, nose, left mouth corner, right mouth corner);
- 1:N: `meta/SET_1N_gallery_G1.csv` and `..._G2.csv` (IJB-B: `..._S1.csv`, `..._S2.csv`) and
  `meta/SET_1N_probe_mixed.csv`: CSV with a header naming `TEMPLATE_ID` and `SUBJECT_ID` (other columns
  ignored), several rows per template.

Fields are separated by spaces or tabs. Images are joined to embeddings and landmarks by name (the
files need not list them in the same order). Every malformed line raises `InputFileError` with
`file:line`. Readers never import model code.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from facever.core.errors import FaceverError, InputFileError
from facever.core.paths import check_name
from facever.core.text_files import read_text

from facever.core.settings import IJB_SETS as SETS
IMAGES_DIR = "loose_crop"


def set_folder(root: str | Path, set_name: str) -> Path:
    """The `IJBC/` (or `IJBB/`) folder: `root` itself when it holds `meta/`, else `root/IJBC`."""
    if set_name not in SETS:
        raise FaceverError(f"unknown IJB set {set_name!r}; known: {', '.join(SETS)}")
    root = Path(root)
    if (root / "meta").is_dir():
        return root
    sub = root / set_name.upper()
    if (sub / "meta").is_dir():
        return sub
    raise FaceverError(f"{root}: no meta/ folder here nor in {sub} (expected InsightFace's IJB_release layout)")


def meta_file(folder: Path, set_name: str, name: str) -> Path:
    path = Path(folder) / "meta" / f"{set_name}_{name}"
    if not path.is_file():
        raise InputFileError(path, "meta file not found")
    return path


def _text(path: Path) -> str:
    return read_text(path, what="meta file")


def _int(path: Path, line: int, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputFileError(path, f"{what} {value!r} is not an integer", line=line) from None


# ---------------------------------------------------------------------------------------------------
# face_tid_mid


@dataclass
class TemplateMedia:
    """`SET_face_tid_mid.txt`: one row per image of a template."""

    path: Path
    names: list[str]
    templates: np.ndarray  # int64
    medias: np.ndarray  # int64
    lines: np.ndarray  # 1-based line of each row

    def __len__(self) -> int:
        return len(self.names)

    def where(self, row: int) -> str:
        return f"{self.path}:{int(self.lines[row])}"


def read_template_media(path: str | Path) -> TemplateMedia:
    """Read `image_name template_id media_id` lines (blank lines skipped)."""
    path = Path(path)
    names, templates, medias, lines = [], [], [], []
    for i, raw in enumerate(_text(path).splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise InputFileError(path, f"expected `image_name template_id media_id`, got {len(fields)} fields", line=i)
        names.append(check_name(path, i, fields[0]))
        templates.append(_int(path, i, fields[1], "template id"))
        medias.append(_int(path, i, fields[2], "media id"))
        lines.append(i)
    if not names:
        raise InputFileError(path, "no images listed")
    return TemplateMedia(path, names, np.array(templates, np.int64), np.array(medias, np.int64), np.array(lines))


# ---------------------------------------------------------------------------------------------------
# template pairs (15.7M lines for IJB-C: parsed in C, re-read line by line only to report an error)


@dataclass
class TemplatePairs:
    path: Path
    t1: np.ndarray
    t2: np.ndarray
    labels: np.ndarray  # bool
    lines: np.ndarray | None = None  # 1-based line of each pair; None: pair i is on line i + 1

    def __len__(self) -> int:
        return int(self.labels.size)

    def line(self, i: int) -> int:
        return int(self.lines[i]) if self.lines is not None else i + 1


def read_template_pairs(path: str | Path) -> TemplatePairs:
    """Read `template_1 template_2 label` lines; label 1 (same) or 0 (different)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror or exc})") from None
    values = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (instead of failing) when it stops at a bad token
        try:
            values = np.fromstring(data, dtype=np.int64, sep=" ")  # text mode: whitespace incl. newlines
        except (ValueError, DeprecationWarning):
            values = None
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    if (values is None or values.size % 3 or values.size // 3 != lines or values.size == 0
            or not ((values[2::3] == 0) | (values[2::3] == 1)).all()):
        return _read_pairs_slowly(path)  # raises with the exact line (or accepts blank lines, comments none)
    rows = values.reshape(-1, 3)
    return TemplatePairs(path, rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].astype(bool))


def _read_pairs_slowly(path: Path) -> TemplatePairs:
    t1, t2, labels, lines = [], [], [], []
    for i, raw in enumerate(_text(path).splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        lines.append(i)
        if len(fields) != 3:
            raise InputFileError(path, f"expected `template_1 template_2 label`, got {len(fields)} fields", line=i)
        a = _int(path, i, fields[0], "template id")
        b = _int(path, i, fields[1], "template id")
        if fields[2] not in ("0", "1"):
            raise InputFileError(path, f"label {fields[2]!r} must be 1 (same) or 0 (different)", line=i)
        t1.append(a)
        t2.append(b)
        labels.append(fields[2] == "1")
    if not labels:
        raise InputFileError(path, "no template pairs listed")
    return TemplatePairs(path, np.array(t1, np.int64), np.array(t2, np.int64), np.array(labels, bool), np.array(lines))


# ---------------------------------------------------------------------------------------------------
# landmarks and faceness scores


@dataclass
class Landmarks:
    """`SET_name_5pts_score.txt`: five (x, y) points and a faceness score per image name."""

    path: Path
    names: list[str]
    points: np.ndarray  # N x 5 x 2 float64
    faceness: np.ndarray  # N float64
    _index: dict[str, int] | None = field(default=None, repr=False)

    def rows(self, names: Sequence[str], *, where: Callable[[int], str] | None = None) -> np.ndarray:
        """Rows for `names`; `InputFileError` naming the first image without landmarks and, with `where`
        (`where(i)` says where `names[i]` is listed, e.g. `file:line`), where it is listed."""
        if self._index is None:
            self._index = {n: i for i, n in enumerate(self.names)}
        get = self._index.get
        rows = np.array([get(n, -1) for n in names], dtype=np.int64)
        if (rows < 0).any():
            missing = [n for n, r in zip(names, rows) if r < 0]
            first = int(np.argmax(rows < 0))
            at = f" (listed at {where(first)})" if where is not None else ""
            raise InputFileError(self.path, f"no landmarks for {len(missing)} images, first {missing[0]!r}{at}")
        return rows


def read_landmarks(path: str | Path) -> Landmarks:
    """Read `image_name x1 y1 ... x5 y5 faceness_score` lines (13 fields)."""
    path = Path(path)
    names, values = [], []
    seen: dict[str, int] = {}
    for i, raw in enumerate(_text(path).splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) != 12:
            raise InputFileError(path, f"expected `image_name x1 y1 ... x5 y5 score` (12 fields), got {len(fields)}",
                                 line=i)
        try:
            nums = [float(v) for v in fields[1:]]
        except ValueError:
            bad = next(v for v in fields[1:] if not _is_float(v))
            raise InputFileError(path, f"{bad!r} is not a number", line=i) from None
        if not np.all(np.isfinite(nums)):
            raise InputFileError(path, "landmarks and score must be finite", line=i)
        check_name(path, i, fields[0])
        if fields[0] in seen:
            raise InputFileError(path, f"{fields[0]!r} already listed at line {seen[fields[0]]}", line=i)
        seen[fields[0]] = i
        names.append(fields[0])
        values.append(nums)
    if not names:
        raise InputFileError(path, "no images listed")
    arr = np.array(values, dtype=np.float64)
    return Landmarks(path, names, arr[:, :10].reshape(-1, 5, 2), arr[:, 10])


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------------
# 1:N


@dataclass
class SearchSet:
    """A 1:N gallery or probe file: one subject per template."""

    path: Path
    templates: np.ndarray  # distinct template ids, in file order
    subjects: np.ndarray

    def __len__(self) -> int:
        return int(self.templates.size)


def read_search_set(path: str | Path) -> SearchSet:
    """Read a 1:N CSV (header with TEMPLATE_ID and SUBJECT_ID); a template with two subjects is an error."""
    path = Path(path)
    rows = csv.reader(_text(path).splitlines())
    header = next(rows, None)
    if header is None:
        raise InputFileError(path, "empty file")
    cols = [h.strip().upper() for h in header]
    if "TEMPLATE_ID" not in cols or "SUBJECT_ID" not in cols:
        raise InputFileError(path, "the header must name TEMPLATE_ID and SUBJECT_ID columns", line=1)
    ti, si = cols.index("TEMPLATE_ID"), cols.index("SUBJECT_ID")
    subject_of: dict[int, tuple[int, int]] = {}
    for i, row in enumerate(rows, start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) <= max(ti, si):
            raise InputFileError(path, f"expected at least {max(ti, si) + 1} columns, got {len(row)}", line=i)
        t = _int(path, i, row[ti].strip(), "TEMPLATE_ID")
        s = _int(path, i, row[si].strip(), "SUBJECT_ID")
        if t in subject_of and subject_of[t][0] != s:
            raise InputFileError(path, f"template {t} has subject {s} here but {subject_of[t][0]} at line "
                                 f"{subject_of[t][1]}", line=i)
        subject_of.setdefault(t, (s, i))
    if not subject_of:
        raise InputFileError(path, "no templates listed")
    templates = np.fromiter(subject_of, dtype=np.int64)
    subjects = np.array([subject_of[t][0] for t in subject_of], dtype=np.int64)
    return SearchSet(path, templates, subjects)


def search_files(folder: Path, set_name: str) -> tuple[list[tuple[str, Path]], Path]:
    """`([(gallery name, csv), ...], probe csv)`: G1/G2 (IJB-C) or S1/S2 (IJB-B), and the mixed probes."""
    galleries = []
    for names in (("G1", "S1"), ("G2", "S2")):
        found = [folder / "meta" / f"{set_name}_1N_gallery_{n}.csv" for n in names]
        hit = next((p for p in found if p.is_file()), None)
        if hit is None:
            raise InputFileError(found[0], f"1:N gallery file not found (nor {found[1].name})")
        galleries.append((hit.stem.rsplit("_", 1)[-1], hit))
    return galleries, meta_file(folder, set_name, "1N_probe_mixed.csv")


# ---------------------------------------------------------------------------------------------------
# The whole set


@dataclass
class IJBMeta:
    """One IJB set's 1:1 protocol: the images of every template and the template pairs."""

    set_name: str
    folder: Path
    media: TemplateMedia
    pairs: TemplatePairs

    @property
    def images_dir(self) -> Path:
        return self.folder / IMAGES_DIR

    def image_names(self) -> list[str]:
        """Distinct image names, in the order of the template/media file."""
        return list(dict.fromkeys(self.media.names))

    def landmarks_path(self) -> Path:
        return meta_file(self.folder, self.set_name, "name_5pts_score.txt")


def _member(known: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """`ids` in the sorted `known`, for 15.7M ids: a table indexed by id when ids are small (one gather each)."""
    if known[0] >= 0 and known[-1] < 64 * known.size + 1_000_000:
        table = np.zeros(int(known[-1]) + 2, dtype=bool)
        table[known] = True
        return table[np.where((ids >= 0) & (ids <= known[-1]), ids, known[-1] + 1)]
    return known[np.minimum(np.searchsorted(known, ids), known.size - 1)] == ids


def read_ijb(root: str | Path, set_name: str) -> IJBMeta:
    """Read an IJB set's template/media list and template pairs; check every pair's templates have images."""
    folder = set_folder(root, set_name)
    media = read_template_media(meta_file(folder, set_name, "face_tid_mid.txt"))
    pairs = read_template_pairs(meta_file(folder, set_name, "template_pair_label.txt"))
    known = np.unique(media.templates)
    for ids in (pairs.t1, pairs.t2):
        bad = ~_member(known, ids)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputFileError(pairs.path, f"template {int(ids[i])} has no image in {media.path}", line=pairs.line(i))
    return IJBMeta(set_name=set_name, folder=folder, media=media, pairs=pairs)
