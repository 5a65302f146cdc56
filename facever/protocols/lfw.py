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

import re
from pathlib import Path

import numpy as np

from facever.protocols.pair_lists import looks_like_path_list, read_path_pairs
from facever.protocols.pair_protocol import PairProtocol, checked
from facever.core.errors import InputFileError
from facever.core.paths import name_problem
from facever.core.text_files import read_text


def lfw_image_path(name: str, number: int, ext: str = ".jpg") -> str:
    """Relative path of an LFW image: `Name/Name_0001.jpg`."""
    if not ext.startswith("."):
        ext = "." + ext
    return f"{name}/{name}_{number:04d}{ext}"


_DIGITS = re.compile(r"[0-9]+")


def _parse_number(path: Path, lineno: int, token: str) -> int:
    # ASCII digits only: int() would also take "1_0" (ten), "+3" and Unicode digits.
    if not _DIGITS.fullmatch(token):
        raise InputFileError(path, f"image number {token!r} is not an integer (digits 0-9 only)", line=lineno)
    value = int(token)
    if value < 1:
        raise InputFileError(path, f"image number {value} must be 1 or more", line=lineno)
    return value


def _check_name(path: Path, lineno: int, name: str) -> str:
    # A name becomes one folder under the images root: a plain relative name (core.paths), one part.
    problem = name_problem(name) or ("holds a /" if "/" in name else None)
    if problem is not None:
        raise InputFileError(path, f"name {name!r} is not a person's name (it {problem}; names must stay inside "
                             "the images folder)", line=lineno)
    return name


def read_lfw_pairs(path: str | Path, *, ext: str = ".jpg", n_folds: int = 10) -> PairProtocol:
    """Read an LFW `pairs.txt` into a `PairProtocol` (labels: True = same person; folds 0..9).

    Raises `InputFileError` (with the 1-based line) for malformed lines, a header that disagrees
    with the pairs (their number, or each set's count of same and different pairs), or an empty file.
    A UTF-8 byte order mark is accepted.
    """
    path = Path(path)
    text = read_text(path, what="pairs file")
    if looks_like_path_list(text):  # `facever pairs` on a folder not named like LFW
        return read_path_pairs(path, text)

    first: list[str] = []
    second: list[str] = []
    labels: list[bool] = []
    line_numbers: list[int] = []
    header: tuple[int, int] | None = None
    header_line = 1
    for lineno, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        if header is None and not first and len(fields) == 2 and all(_DIGITS.fullmatch(f) for f in fields):
            header = (int(fields[0]), int(fields[1]))
            header_line = lineno
            if header[0] < 2 or header[1] < 1:
                raise InputFileError(
                    path, f"header {raw.strip()!r}: expected 'sets pairs-per-set' with at least 2 sets "
                    "(LFW: '10 300')", line=lineno,
                )
            continue
        if len(fields) == 3:
            name, n1, n2 = fields
            a, b = _parse_number(path, lineno, n1), _parse_number(path, lineno, n2)
            if a == b:
                raise InputFileError(path, f"pairs image {a} of {name!r} with itself", line=lineno)
            _check_name(path, lineno, name)
            first.append(lfw_image_path(name, a, ext))
            second.append(lfw_image_path(name, b, ext))
            labels.append(True)
        elif len(fields) == 4:
            name1, n1, name2, n2 = fields
            a, b = _parse_number(path, lineno, n1), _parse_number(path, lineno, n2)
            _check_name(path, lineno, name1)
            _check_name(path, lineno, name2)
            if name1 == name2:
                raise InputFileError(
                    path, f"a different-person line names {name1!r} twice (a same-person pair is 'Name n1 n2')",
                    line=lineno,
                )
            first.append(lfw_image_path(name1, a, ext))
            second.append(lfw_image_path(name2, b, ext))
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
    labels_arr = np.array(labels, dtype=bool)
    if header is not None:
        sets, per_class = header
        if n != 2 * sets * per_class:
            raise InputFileError(
                path, f"header says {sets} sets x {per_class} x 2 = {2 * sets * per_class} pairs, file has {n}",
                line=header_line,
            )
        folds = np.repeat(np.arange(sets), 2 * per_class)
        for k in range(sets):
            n_same = int(labels_arr[folds == k].sum())
            if n_same != per_class:
                start = 2 * per_class * k
                raise InputFileError(
                    path, f"set {k + 1} holds {n_same} same-person and {2 * per_class - n_same} different-person "
                    f"pairs; the header says {per_class} of each", line=line_numbers[start],
                )
    else:
        if n % n_folds:
            raise InputFileError(path, f"{n} pairs cannot be split into {n_folds} equal folds (add the header line)")
        folds = np.repeat(np.arange(n_folds), n // n_folds)
        for k in range(n_folds):
            in_fold = labels_arr[folds == k]
            if in_fold.all() or not in_fold.any():
                kind = "same-person" if in_fold.all() else "different-person"
                raise InputFileError(
                    path, f"fold {k + 1} of {n_folds} holds only {kind} pairs (add the header line 'sets pairs-per-set')",
                    line=line_numbers[k * (n // n_folds)],
                )
    return checked(PairProtocol(
        name="lfw", first=first, second=second, labels=labels_arr, folds=folds,
        source=path, line_numbers=line_numbers,
    ))
