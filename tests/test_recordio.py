"""InsightFace RecordIO (train.rec + train.idx) read without mxnet, on files built in the exact format."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from facever.data_prep.recordio import (
    MAGIC,
    RecordFile,
    RecordHeader,
    open_recordio,
    pack_payload,
    read_idx,
    unpack_payload,
    write_recordio,
)
from facever.core.errors import FaceverError, InputFileError


def _jpeg(seed: int, size=(12, 10)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _hand_record(payload: bytes, cflag: int = 0) -> bytes:
    """One physical record written by hand from the format notes (independent of our writer)."""
    pad = (4 - len(payload) % 4) % 4
    return struct.pack("<II", MAGIC, (cflag << 29) | len(payload)) + payload + b"\0" * pad


def test_hand_built_file_with_header_record_and_multipart_image(tmp_path):
    # A payload holding the magic word at a 4-aligned offset must be split in parts by a writer;
    # build that by hand: header record, two images (one split in three parts), two identity records.
    img_a = _jpeg(1)
    img_b_raw = b"ABCD" + struct.pack("<I", MAGIC) + b"EFGH" + struct.pack("<I", MAGIC) + b"tail!"
    head_b = struct.pack("<IfQQ", 0, 1.0, 2, 0)
    payload_b = head_b + img_b_raw  # header is 24 bytes: the magics sit at offsets 28 and 36 (aligned)
    parts = payload_b.split(struct.pack("<I", MAGIC))
    assert len(parts) == 3
    chunks, idx = [], []
    offset = 0

    def add(key, data):
        nonlocal offset
        idx.append(f"{key}\t{offset}\n")
        chunks.append(data)
        offset += len(data)

    add(0, _hand_record(struct.pack("<IfQQ", 2, 0.0, 0, 0) + np.array([3.0, 5.0], "<f4").tobytes()))
    add(1, _hand_record(struct.pack("<IfQQ", 0, 0.0, 1, 0) + img_a))
    add(2, _hand_record(parts[0], 1) + _hand_record(parts[1], 2) + _hand_record(parts[2], 3))
    add(3, _hand_record(struct.pack("<IfQQ", 2, 0.0, 0, 0) + np.array([1.0, 2.0], "<f4").tobytes()))
    add(4, _hand_record(struct.pack("<IfQQ", 2, 0.0, 0, 0) + np.array([2.0, 3.0], "<f4").tobytes()))
    (tmp_path / "train.rec").write_bytes(b"".join(chunks))
    (tmp_path / "train.idx").write_text("".join(idx))
    (tmp_path / "property").write_text("2,112,112\n")

    rec = open_recordio(tmp_path)
    assert rec.num_classes == 2
    assert rec.image_size == (112, 112)
    assert rec.keys.tolist() == [1, 2]
    assert rec.labels.tolist() == [0, 1]
    assert rec.records.read_image_bytes(1) == img_a
    assert rec.records.read(2) == payload_b  # magic re-inserted between the three parts
    assert rec.records.read_image_bytes(2) == img_b_raw


def test_writer_roundtrip_grouped_identities(tmp_path):
    samples = [(0, _jpeg(0)), (0, _jpeg(1)), (1, _jpeg(2)), (2, _jpeg(3)), (2, _jpeg(4)), (2, _jpeg(5))]
    path = write_recordio(tmp_path / "train.rec", samples, image_size=(12, 10))
    assert (tmp_path / "train.idx").is_file() and (tmp_path / "property").read_text().strip() == "3,12,10"
    rec = open_recordio(path)
    assert rec.num_classes == 3 and len(rec) == 6
    assert rec.labels.tolist() == [0, 0, 1, 2, 2, 2]
    for key, (label, data) in zip(rec.keys.tolist(), samples):
        header, image = unpack_payload(rec.records.read(key))
        assert header.labels[0] == label and image == data
    # Records start 4-aligned and carry the magic, as the .idx says.
    raw = path.read_bytes()
    for off in read_idx(tmp_path / "train.idx").values():
        assert off % 4 == 0 and struct.unpack_from("<I", raw, off)[0] == MAGIC


def test_writer_splits_payload_with_aligned_magic(tmp_path):
    tricky = b"\x00" * 8 + struct.pack("<I", MAGIC) + b"xyz"  # at payload offset 24 + 8 = 32
    path = write_recordio(tmp_path / "t.rec", [(0, _jpeg(0)), (1, tricky)])
    rec = open_recordio(path)
    key = int(rec.keys[1])
    assert rec.records.read_image_bytes(key) == tricky
    raw = path.read_bytes()
    off = read_idx(tmp_path / "t.idx")[key]
    cflag = struct.unpack_from("<II", raw, off)[1] >> 29
    assert cflag == 1  # really written as a multi-part record


def test_no_header_record_uses_each_records_label(tmp_path):
    path = write_recordio(tmp_path / "t.rec", [(1, _jpeg(0)), (0, _jpeg(1)), (1, _jpeg(2))], header_record=False)
    rec = open_recordio(path)
    assert rec.keys.tolist() == [0, 1, 2]
    assert rec.labels.tolist() == [1, 0, 1]
    assert rec.num_classes == 2


def test_multi_label_header_payload_roundtrip():
    payload = pack_payload(RecordHeader(3, (4.0, 1.5, 2.5), 7, 0), b"img")
    header, image = unpack_payload(payload)
    assert header.flag == 3 and header.labels == (4.0, 1.5, 2.5) and header.id == 7 and image == b"img"


def test_rec_without_idx_is_a_clear_error(tmp_path):
    path = write_recordio(tmp_path / "train.rec", [(0, _jpeg(0)), (1, _jpeg(1))])
    (tmp_path / "train.idx").unlink()
    with pytest.raises(InputFileError, match=r"train\.rec: no index file train\.idx"):
        open_recordio(path)


def test_bad_magic_names_the_file(tmp_path):
    (tmp_path / "x.rec").write_bytes(b"\x00" * 64)
    (tmp_path / "x.idx").write_text("0\t0\n")
    with pytest.raises(InputFileError, match=r"x\.rec: bad magic"):
        open_recordio(tmp_path / "x.rec")


def test_malformed_idx_line_number(tmp_path):
    (tmp_path / "x.rec").write_bytes(b"\x00" * 64)
    (tmp_path / "x.idx").write_text("0\t0\nnot a line at all\n")
    with pytest.raises(InputFileError, match=r"x\.idx:2:"):
        RecordFile(tmp_path / "x.rec")


def test_truncated_record_and_property_mismatch(tmp_path):
    path = write_recordio(tmp_path / "train.rec", [(0, _jpeg(0)), (1, _jpeg(1))], image_size=(12, 10))
    (tmp_path / "property").write_text("5,12,10\n")
    with pytest.raises(InputFileError, match=r"property:1: says 5 classes"):
        open_recordio(path)
    (tmp_path / "property").unlink()
    idx = read_idx(tmp_path / "train.idx")
    data = path.read_bytes()
    path.write_bytes(data[: idx[2] + 20])  # cut inside image 2: the identity records are gone too
    with pytest.raises(InputFileError, match=r"train\.idx: key 3 points to byte \d+, past the end"):
        RecordFile(path)
    (tmp_path / "train.idx").write_text("".join(f"{k}\t{idx[k]}\n" for k in (0, 1, 2)))
    with pytest.raises(InputFileError, match=r"train\.rec: record 2 at byte \d+ is truncated"):
        RecordFile(path).read(2)


def test_record_file_is_picklable_for_workers(tmp_path):
    import pickle

    path = write_recordio(tmp_path / "train.rec", [(0, _jpeg(0)), (1, _jpeg(1))])
    rec = RecordFile(path)
    first = rec.read(1)
    clone = pickle.loads(pickle.dumps(rec))
    assert clone.read(1) == first


def test_training_set_from_recordio_decodes_images(tmp_path):
    from facever.training.data import open_training_set

    samples = [(c, _jpeg(10 * c + i)) for c in range(3) for i in range(3)]
    write_recordio(tmp_path / "train.rec", samples, image_size=(12, 10))
    tset = open_training_set(tmp_path, min_images=1, holdout_identities=1, seed=3)
    assert tset.kind == "recordio" and len(tset.classes) == 2 and len(tset.holdout) == 1
    assert len(tset.items) == 6
    img = tset.read(tset.items[0])
    assert img.shape == (12, 10, 3) and img.dtype == np.uint8
    with pytest.raises(FaceverError, match="at least two must remain"):
        open_training_set(tmp_path, holdout_identities=2)
