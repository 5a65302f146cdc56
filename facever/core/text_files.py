"""Reading a user's text file (pair lists, splits, meta files, logs) with one set of errors.

Every reader of a protocol or list file starts with `read_text(path, what="pairs file")`, so a missing
file, a folder or FIFO given instead, and a binary file are refused the same way everywhere, each as
an `InputFileError` naming the file (and where the first byte that is not UTF-8 is).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from facever.core.errors import InputFileError


def read_text(path: str | Path, *, what: str = "file") -> str:
    """The text of `path`, decoded as UTF-8 (a leading byte order mark, as Windows editors write, dropped).

    Raises `InputFileError`: `{what} not found`; `not a regular file (a folder)` (or a FIFO, which is
    checked before opening since reading one may block forever, or a socket or device); `not a text
    file (byte N, line L, is not UTF-8)`; `cannot read (...)` for other OS errors.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputFileError(path, f"{what} not found") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a socket or device"
        raise InputFileError(path, f"not a regular file ({kind})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputFileError(path, f"not a text file (byte {exc.start}, line {line}, is not UTF-8)") from None
