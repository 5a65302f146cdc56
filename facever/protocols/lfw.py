"""LFW View 2 `pairs.txt`: 10 sets of 300 matched + 300 mismatched pairs, read into a `PairProtocol`.

File format (http://vis-www.cs.umass.edu/lfw/README.txt):

    10\t300                      # optional header: number of sets, pairs per class per set
    Name\tn1\tn2                 # matched pair: Name/Name_000n1.jpg and Name/Name_000n2.jpg
    Name1\tn1\tName2\tn2         # mismatched pair

Folds are contiguous in file order: with the header, fold k holds pairs 2*300*k .. 2*300*(k+1)-1.
Without a header the pairs are split into 10 contiguous folds of equal size (the file must divide).
Fields may be separated by tabs or spaces. Image numbers are written with four digits (`_0001`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facever.protocols.pair_lists import looks_like_path_list, read_path_pairs
from facever.protocols.pair_protocol import PairProtocol
from facever.core.errors import InputFileError


def lfw_image_path(name: str, number: int, ext: str = ".jpg") -> str:
    """Relative path of an LFW image: `Name/Name_0001.jpg`."""
    if not ext.startswith("."):
        ext = "." + ext
    return f"{name}/{name}_{number:04d}{ext}"


def _parse_number(path: Path, lineno: int, token: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise InputFileError(path, f"image number {token!r} is not an integer", line=lineno) from None
    if value < 1:
        raise InputFileError(path, f"image number {value} must be 1 or more", line=lineno)
    return value


def read_lfw_pairs(path: str | Path, *, ext: str = ".jpg", n_folds: int = 10) -> PairProtocol:
    """Read an LFW `pairs.txt` into a `PairProtocol` (labels: True = same person; folds 0..9).

    Raises `InputFileError` (with the 1-based line) for malformed lines, a header that disagrees
    with the number of pairs, or an empty file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFileError(path, "pairs file not found") from None
    except UnicodeDecodeError:
        raise InputFileError(path, "not a text file (cannot decode as UTF-8)") from None
    if looks_like_path_list(text):  # `facever pairs` on a folder not named like LFW
        return read_path_pairs(path, text)

    first: list[str] = []
    second: list[str] = []
    labels: list[bool] = []
    line_numbers: list[int] = []
    header: tuple[int, int] | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        if header is None and not first and len(fields) == 2 and all(f.isdigit() for f in fields):
            header = (int(fields[0]), int(fields[1]))
            if header[0] < 1 or header[1] < 1:
                raise InputFileError(path, f"header {raw.strip()!r}: sets and pairs per set must be positive", line=lineno)
            continue
        if len(fields) == 3:
            name, n1, n2 = fields
            first.append(lfw_image_path(name, _parse_number(path, lineno, n1), ext))
            second.append(lfw_image_path(name, _parse_number(path, lineno, n2), ext))
            labels.append(True)
        elif len(fields) == 4:
            name1, n1, name2, n2 = fields
            first.append(lfw_image_path(name1, _parse_number(path, lineno, n1), ext))
            second.append(lfw_image_path(name2, _parse_number(path, lineno, n2), ext))
            labels.append(False)
        else:
            raise InputFileError(
                path,
                f"expected 'Name n1 n2' (same) or 'Name1 n1 Name2 n2' (different), got {len(fields)} fields: {raw.strip()!r}",
                line=lineno,
            )
        line_numbers.append(lineno)

    n = len(first)
    if n == 0:
        raise InputFileError(path, "no pairs found")
    if header is not None:
        sets, per_class = header
        if n != 2 * sets * per_class:
            raise InputFileError(
                path, f"header says {sets} sets x {per_class} x 2 = {2 * sets * per_class} pairs, file has {n}", line=1
            )
        folds = np.repeat(np.arange(sets), 2 * per_class)
    else:
        if n % n_folds:
            raise InputFileError(path, f"{n} pairs cannot be split into {n_folds} equal folds (add the header line)")
        folds = np.repeat(np.arange(n_folds), n // n_folds)
    return PairProtocol(
        name="lfw", first=first, second=second, labels=np.array(labels), folds=folds,
        source=path, line_numbers=line_numbers,
    )
