"""LFW pairs.txt parsing: the real file, header-less files and malformed lines."""

from __future__ import annotations

import numpy as np
import pytest

from facever.protocols.lfw import lfw_image_path, read_lfw_pairs
from facever.core.errors import InputFileError


def test_real_pairs_file(lfw_pairs_file):
    p = read_lfw_pairs(lfw_pairs_file)
    assert len(p) == 6000
    assert p.n_folds == 10
    np.testing.assert_array_equal(np.bincount(p.folds), [600] * 10)
    assert p.labels.sum() == 3000
    # per fold: 300 same then 300 different, in file order
    for k in range(10):
        fold = p.labels[p.folds == k]
        assert fold[:300].all() and not fold[300:].any()
    # line 2 of the real file is the first matched pair
    first_line = lfw_pairs_file.read_text().splitlines()[1].split()
    name, n1, n2 = first_line
    assert p.first[0] == f"{name}/{name}_{int(n1):04d}.jpg"
    assert p.second[0] == f"{name}/{name}_{int(n2):04d}.jpg"
    assert p.line_numbers[0] == 2


def test_extension_and_paths():
    assert lfw_image_path("Anthony_Hopkins", 2, ".png") == "Anthony_Hopkins/Anthony_Hopkins_0002.png"
    assert lfw_image_path("A", 12, "jpg") == "A/A_0012.jpg"


def _write(tmp_path, text):
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    return path


def test_without_header_splits_into_equal_folds(tmp_path):
    lines = []
    for k in range(10):
        lines += [f"Ann {k + 1} {k + 2}", f"Bob {k + 1} Carl {k + 1}"]
    p = read_lfw_pairs(_write(tmp_path, "\n".join(lines) + "\n"), ext=".png")
    assert len(p) == 20
    np.testing.assert_array_equal(p.folds, np.repeat(np.arange(10), 2))
    assert p.first[1] == "Bob/Bob_0001.png" and p.second[1] == "Carl/Carl_0001.png"
    assert list(p.labels[:2]) == [True, False]


def test_small_header(tmp_path):
    text = "2\t1\nAnn\t1\t2\nAnn\t1\tBob\t1\nCarl 1 2\nCarl 3 Dan 4\n"
    p = read_lfw_pairs(_write(tmp_path, text))
    np.testing.assert_array_equal(p.folds, [0, 0, 1, 1])


@pytest.mark.parametrize(
    "text, line, match",
    [
        ("10\t300\nAnn\t1\n", 2, "got 2 fields"),
        ("Ann 1 x\n", 1, "not an integer"),
        ("Ann 1 2\nAnn 0 2\n", 2, "must be 1 or more"),
        ("2\t1\nAnn 1 2\nAnn 1 Bob 1\nAnn 1 2\n", 1, "header says"),
        ("Ann 1 2 Bob 3 4\n", 1, "got 6 fields"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, match):
    path = _write(tmp_path, text)
    with pytest.raises(InputFileError, match=match) as info:
        read_lfw_pairs(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_empty_missing_and_indivisible(tmp_path):
    with pytest.raises(InputFileError, match="no pairs"):
        read_lfw_pairs(_write(tmp_path, "\n\n"))
    with pytest.raises(InputFileError, match="not found"):
        read_lfw_pairs(tmp_path / "nope.txt")
    with pytest.raises(InputFileError, match="equal folds"):
        read_lfw_pairs(_write(tmp_path, "Ann 1 2\nAnn 1 Bob 1\nCarl 1 2\n"))
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(InputFileError, match="not a text file"):
        read_lfw_pairs(binary)
