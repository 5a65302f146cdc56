"""InsightFace / MXNet RecordIO training sets (`train.rec` + `train.idx`), read without mxnet.

How CASIA-WebFace and MS1M are commonly distributed (`faces_webface_112x112/`). Format:

- `train.idx`: text lines `key<TAB>byte_offset` giving where each record starts in `train.rec`.
- A record in `train.rec`: little-endian uint32 magic 0xCED7230A, uint32 `lrec` with
  `cflag = lrec >> 29` and `length = lrec & (2**29 - 1)`, then `length` payload bytes padded to a
  multiple of 4. MXNet splits a payload wherever the magic word appears at a 4-aligned offset:
  cflag 0 = whole record, 1 = first part, 2 = middle part, 3 = last part; the reader re-inserts
  the magic bytes between the parts.
- A payload: a 24-byte header `<IfQQ` (flag, label, id, id2); when flag > 0, `flag` float32 labels
  follow (the label field is then unused); the rest is an encoded image (JPEG).
- Key 0 may be a header record (flag 2, labels [A, B]): images are keys 1..A-1 and keys A..B-1 give
  each identity's image-key range [start, end) as their two labels. Without it, every key is an image
  whose class is its own label.
- A `property` file next to them holds `num_classes,height,width`.

`write_recordio` writes the same format (used by the tests to build real files, and handy for
packing an identity folder into one file).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from facever.core.atomic import atomic_path
from facever.core.errors import FaceverError, InputFileError

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_MASK = (1 << 29) - 1
_HEADER = struct.Struct("<IfQQ")


@dataclass(frozen=True)
class RecordHeader:
    """The `<IfQQ` header of a payload: `labels` holds the float labels (one, or `flag` of them)."""

    flag: int
    labels: tuple[float, ...]
    id: int
    id2: int


def read_idx(path: str | Path) -> dict[int, int]:
    """Parse a `.idx` file into {key: byte offset}. Raises InputFileError with the line number."""
    path = Path(path)
    offsets: dict[int, int] = {}
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise InputFileError(path, "index file not found") from None
    except UnicodeDecodeError:
        raise InputFileError(path, "not a RecordIO index (not ASCII text)") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise InputFileError(path, f"expected 'key<TAB>offset', got {line!r}", line=lineno)
        try:
            key, offset = int(fields[0]), int(fields[1])
        except ValueError:
            raise InputFileError(path, f"key and offset must be integers, got {line!r}", line=lineno) from None
        if key < 0 or offset < 0:
            raise InputFileError(path, f"negative key or offset in {line!r}", line=lineno)
        if key in offsets:
            raise InputFileError(path, f"key {key} appears twice", line=lineno)
        offsets[key] = offset
    if not offsets:
        raise InputFileError(path, "index file is empty")
    return offsets


def unpack_payload(payload: bytes, *, name: str = "<record>") -> tuple[RecordHeader, bytes]:
    """Split a record payload into its header and the encoded image bytes."""
    if len(payload) < _HEADER.size:
        raise FaceverError(f"{name}: record payload of {len(payload)} bytes is shorter than its 24-byte header")
    flag, label, id1, id2 = _HEADER.unpack_from(payload, 0)
    start = _HEADER.size
    if flag > 0:
        end = start + 4 * flag
        if len(payload) < end:
            raise FaceverError(f"{name}: header announces {flag} labels but the payload is too short")
        labels = tuple(float(v) for v in np.frombuffer(payload, dtype="<f4", count=flag, offset=start))
        start = end
    else:
        labels = (float(label),)
    return RecordHeader(int(flag), labels, int(id1), int(id2)), payload[start:]


def pack_payload(header: RecordHeader, image: bytes = b"") -> bytes:
    """Inverse of `unpack_payload` (flag 0 stores one label in the header; flag > 0 appends the labels)."""
    if header.flag > 0:
        if len(header.labels) != header.flag:
            raise ValueError("flag must equal the number of labels")
        head = _HEADER.pack(header.flag, 0.0, header.id, header.id2)
        head += np.asarray(header.labels, dtype="<f4").tobytes()
    else:
        head = _HEADER.pack(0, float(header.labels[0]), header.id, header.id2)
    return head + image


class RecordFile:
    """Random access to the records of a `.rec` file through its `.idx`.

    Picklable for DataLoader workers: each process opens its own file handle on first use.
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        if not self.rec_path.is_file():
            raise InputFileError(self.rec_path, "RecordIO file not found")
        if not self.idx_path.is_file():
            raise InputFileError(
                self.rec_path,
                f"no index file {self.idx_path.name} next to it; RecordIO training sets come as "
                "train.rec + train.idx (random access needs the index)",
            )
        self.offsets = read_idx(self.idx_path)
        self.size = self.rec_path.stat().st_size
        bad = [k for k, off in self.offsets.items() if off >= self.size]
        if bad:
            raise InputFileError(
                self.idx_path, f"key {bad[0]} points to byte {self.offsets[bad[0]]}, past the end of {self.rec_path.name}"
            )
        self._fh = None
        self._pid = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fh"] = None
        state["_pid"] = None
        return state

    def _file(self):
        if self._fh is None or self._pid != os.getpid():
            self._fh = open(self.rec_path, "rb")
            self._pid = os.getpid()
        return self._fh

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def keys(self) -> list[int]:
        return sorted(self.offsets)

    def read(self, key: int) -> bytes:
        """The full payload of record `key` (multi-part records joined with the magic re-inserted)."""
        try:
            offset = self.offsets[key]
        except KeyError:
            raise InputFileError(self.idx_path, f"no record with key {key}") from None
        fh = self._file()
        fh.seek(offset)
        parts: list[bytes] = []
        while True:
            head = fh.read(8)
            if len(head) < 8:
                raise InputFileError(self.rec_path, f"record {key} at byte {offset} is truncated")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise InputFileError(
                    self.rec_path,
                    f"bad magic 0x{magic:08X} at byte {fh.tell() - 8} (record key {key}); not a RecordIO file, "
                    "or the .idx does not belong to it",
                )
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            data = fh.read(length)
            if len(data) < length:
                raise InputFileError(self.rec_path, f"record {key} at byte {offset} is truncated")
            pad = (4 - length % 4) % 4
            if pad:
                fh.read(pad)
            if cflag == 0:
                if parts:
                    raise InputFileError(self.rec_path, f"record {key}: unterminated multi-part record")
                return data
            if cflag == 1:
                if parts:
                    raise InputFileError(self.rec_path, f"record {key}: multi-part record restarted")
                parts.append(data)
            elif cflag in (2, 3):
                if not parts:
                    raise InputFileError(self.rec_path, f"record {key} at byte {offset} starts mid-record")
                parts.append(data)
                if cflag == 3:
                    return _MAGIC_BYTES.join(parts)
            else:
                raise InputFileError(self.rec_path, f"record {key}: invalid continuation flag {cflag}")

    def read_header(self, key: int) -> RecordHeader:
        return unpack_payload(self.read(key), name=f"{self.rec_path}:key {key}")[0]

    def read_image_bytes(self, key: int) -> bytes:
        return unpack_payload(self.read(key), name=f"{self.rec_path}:key {key}")[1]


@dataclass
class RecordIODataset:
    """The image records of a training `.rec` and their class labels (0..num_classes-1).

    Attributes:
        records: the open `RecordFile`.
        keys: int64 array, the record key of each image.
        labels: int64 array, the class of each image.
        num_classes: number of identities (from the header record, the `property` file or the labels).
        image_size: (h, w) from the `property` file, when present.
    """

    records: RecordFile
    keys: np.ndarray
    labels: np.ndarray
    num_classes: int
    image_size: tuple[int, int] | None

    def __len__(self) -> int:
        return int(self.keys.size)


def read_property(path: str | Path) -> tuple[int, int, int]:
    """Parse the `property` file `num_classes,height,width`."""
    path = Path(path)
    text = path.read_text(encoding="utf-8").strip()
    fields = [f.strip() for f in text.split(",")]
    try:
        values = tuple(int(f) for f in fields)
    except ValueError:
        raise InputFileError(path, f"expected 'num_classes,height,width', got {text!r}", line=1) from None
    if len(values) != 3 or min(values) <= 0:
        raise InputFileError(path, f"expected three positive integers 'num_classes,height,width', got {text!r}", line=1)
    return values  # type: ignore[return-value]


def open_recordio(path: str | Path) -> RecordIODataset:
    """Open a RecordIO training set: `path` is the `.rec` file or the folder holding `train.rec`.

    Uses the header record (key 0) when present, as InsightFace's loader does: images are keys
    1..A-1 and the identity records A..B-1 give each class's key range. Otherwise every key is an
    image labelled by its own header. Raises InputFileError for a missing `.idx`, bad magic, an
    inconsistent header or a `property` file that disagrees with the records.
    """
    path = Path(path)
    rec_path = path / "train.rec" if path.is_dir() else path
    records = RecordFile(rec_path)
    header = records.read_header(0) if 0 in records.offsets else None
    if header is not None and header.flag > 0:
        if len(header.labels) < 2:
            raise InputFileError(rec_path, "header record (key 0) must carry two labels [A, B]")
        first_id, end_id = int(header.labels[0]), int(header.labels[1])
        if not (1 <= first_id <= end_id):
            raise InputFileError(rec_path, f"header record (key 0) has an invalid range [{first_id}, {end_id})")
        keys_list: list[int] = []
        labels_list: list[int] = []
        for cls, id_key in enumerate(range(first_id, end_id)):
            ident = records.read_header(id_key)
            if len(ident.labels) < 2:
                raise InputFileError(rec_path, f"identity record {id_key} must carry an image-key range [start, end)")
            start, end = int(ident.labels[0]), int(ident.labels[1])
            if not (1 <= start <= end <= first_id):
                raise InputFileError(
                    rec_path, f"identity record {id_key} has key range [{start}, {end}) outside images 1..{first_id - 1}"
                )
            keys_list.extend(range(start, end))
            labels_list.extend([cls] * (end - start))
        keys = np.asarray(keys_list, dtype=np.int64)
        labels = np.asarray(labels_list, dtype=np.int64)
        missing = [int(k) for k in keys if int(k) not in records.offsets]
        if missing:
            raise InputFileError(records.idx_path, f"image key {missing[0]} named by the header is not in the index")
        num_classes = end_id - first_id
    else:
        keys = np.asarray(records.keys(), dtype=np.int64)
        labels = np.asarray([int(records.read_header(int(k)).labels[0]) for k in keys], dtype=np.int64)
        if labels.size and labels.min() < 0:
            raise InputFileError(rec_path, "negative class label in a record header")
        num_classes = int(labels.max()) + 1 if labels.size else 0
    if keys.size == 0:
        raise InputFileError(rec_path, "no image records")
    image_size = None
    prop = rec_path.parent / "property"
    if prop.is_file():
        n, h, w = read_property(prop)
        if n != num_classes:
            raise InputFileError(prop, f"says {n} classes but {rec_path.name} holds {num_classes}", line=1)
        image_size = (h, w)
    return RecordIODataset(records, keys, labels, num_classes, image_size)


def _split_at_magic(payload: bytes) -> list[bytes]:
    """Split where the magic word sits at a 4-aligned offset, as MXNet's writer does."""
    words = np.frombuffer(payload[: len(payload) // 4 * 4], dtype="<u4")
    cuts = np.flatnonzero(words == MAGIC) * 4
    parts, start = [], 0
    for cut in cuts:
        parts.append(payload[start:cut])
        start = int(cut) + 4
    parts.append(payload[start:])
    return parts


def _write_record(fh, payload: bytes) -> None:
    parts = _split_at_magic(payload)
    for i, part in enumerate(parts):
        if len(parts) == 1:
            cflag = 0
        elif i == 0:
            cflag = 1
        elif i == len(parts) - 1:
            cflag = 3
        else:
            cflag = 2
        if len(part) > _LENGTH_MASK:
            raise ValueError("record part too large for RecordIO (>= 512 MiB)")
        fh.write(struct.pack("<II", MAGIC, (cflag << 29) | len(part)))
        fh.write(part)
        fh.write(b"\0" * ((4 - len(part) % 4) % 4))


def write_recordio(
    rec_path: str | Path,
    samples: Iterable[tuple[int, bytes]],
    *,
    image_size: tuple[int, int] | None = None,
    header_record: bool = True,
) -> Path:
    """Write (label, encoded image) samples as InsightFace RecordIO: `.rec`, `.idx` and `property`.

    Samples must come grouped by label, labels 0..C-1 in order (InsightFace's layout), when
    `header_record` is True. Both files are written atomically. Returns the `.rec` path.
    """
    rec_path = Path(rec_path)
    idx_path = rec_path.with_suffix(".idx")
    samples = list(samples)
    labels = [int(label) for label, _ in samples]
    if header_record and labels != sorted(labels):
        raise ValueError("samples must be grouped by label in increasing order to write identity records")
    idx_lines: list[str] = []
    with atomic_path(rec_path) as tmp_rec:
        with open(tmp_rec, "wb") as fh:

            def put(key: int, payload: bytes) -> None:
                idx_lines.append(f"{key}\t{fh.tell()}\n")
                _write_record(fh, payload)

            first_key = 1 if header_record else 0
            num_classes = max(labels) + 1 if labels else 0
            if header_record:
                first_id = first_key + len(samples)
                put(0, pack_payload(RecordHeader(2, (float(first_id), float(first_id + num_classes)), 0, 0)))
            for key, (label, image) in enumerate(samples, start=first_key):
                put(key, pack_payload(RecordHeader(0, (float(label),), key, 0), image))
            if header_record:
                ranges = {}
                for key, label in enumerate(labels, start=first_key):
                    start, _ = ranges.get(label, (key, key))
                    ranges[label] = (start, key + 1)
                for cls in range(num_classes):
                    start, end = ranges.get(cls, (first_key, first_key))
                    put(first_id + cls, pack_payload(RecordHeader(2, (float(start), float(end)), 0, 0)))
    with atomic_path(idx_path) as tmp_idx:
        tmp_idx.write_text("".join(idx_lines), encoding="ascii")
    if image_size is not None:
        with atomic_path(rec_path.parent / "property") as tmp_prop:
            tmp_prop.write_text(f"{num_classes},{image_size[0]},{image_size[1]}\n", encoding="ascii")
    return rec_path
