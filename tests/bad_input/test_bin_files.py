"""InsightFace `.bin` sets: no code runs, too few pairs and image bombs are refused with one line."""

from __future__ import annotations

import io
import pickle
import struct
import zlib

import numpy as np
import pytest

from tests.bad_input.conftest import refused


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 24, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG whose header claims 900 megapixels in a few dozen bytes (PIL's decompression-bomb limit)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _bin(path, images, issame, protocol=4):
    path.write_bytes(pickle.dumps((images, issame), protocol=protocol))


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


CASES = {
    "fewer than 10 pairs": (lambda p: _bin(p, [_jpeg(i) for i in range(8)], [True, False, True, False]),
                            r"4 pairs: the 10-fold protocol needs at least 10"),
    "decompression bomb PNG": (lambda p: _bin(p, [_png_bomb()] + [_jpeg(i) for i in range(19)], [True, False] * 5),
                               r"image 0: cannot decode image"),
    "pickled code": (lambda p: p.write_bytes(pickle.dumps(([Evil()], [True]))), r"refus|not a valid"),
    "not a pickle": (lambda p: p.write_text("hello"), r"not a valid InsightFace \.bin"),
    "issame not bools": (lambda p: _bin(p, [_jpeg(0), _jpeg(1)], ["yes"]), r"issame_list\[0\] is 'yes'"),
    "odd number of images": (lambda p: _bin(p, [_jpeg(0)] * 3, [True]), r"3 images for 1 pairs"),
    "no pairs": (lambda p: _bin(p, [], []), r"no pairs in the file"),
    "image not bytes": (lambda p: _bin(p, [1, 2], [True]), r"image 0 is a int"),
    "undecodable image": (lambda p: _bin(p, [b"junk"] * 20, [True, False] * 5), r"image 0: not an image"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_bin_refused(tmp_path, tiny_model, case, capfd):
    make, match = CASES[case]
    make(tmp_path / "set.bin")
    refused(["eval-bin", tmp_path / "set.bin", "--model", tiny_model, "--device", "cpu", "--out", tmp_path / "out"],
            match, tmp_path)
    assert "code ran" not in capfd.readouterr().out
