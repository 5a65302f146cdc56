"""Names from data files stay inside their folder; outputs never alias inputs.

Two rules every command applies through this module:

1. A name a data file gives for a file under a folder (an image of a pairs file, an IJB meta file, a
   YTF split, a pair list) is a plain relative path below that folder: not absolute, no `..`, no `~`,
   no drive letter, no backslash, no empty or `.` part. `name_problem` says what is wrong with one;
   every reader refuses such a line with `file:line` (`check_name`), and every writer that turns a
   name into a path under its output folder goes through `inside` (defence in depth).
2. An output file is never one of the command's inputs (`check_output_is_not_an_input`): the model it
   reads, an image it embeds, an image of the folder it lists. Identity is the file's (device,
   inode), so a symbolic or hard link to an input is caught as well as the input's own name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from facever.core.errors import FaceverError, InputFileError

_DRIVE = re.compile(r"^[A-Za-z]:")


def name_problem(name: str) -> str | None:
    """Why `name` is not a plain relative path inside its folder (a short phrase), or None when it is."""
    if not name:
        return "is empty"
    if "\x00" in name:
        return "holds a NUL byte"
    if "\\" in name:
        return "holds a backslash (write paths with /)"
    if name.startswith("/"):
        return "is an absolute path"
    if name.startswith("~"):
        return "starts with ~ (a home folder)"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    parts = name.split("/")
    if ".." in parts:
        return "leaves its folder (..)"
    if any(p in ("", ".") for p in parts):
        return "has an empty or '.' part"
    return None


def check_name(source: str | Path, line: int | None, name: str, *, what: str = "image name") -> str:
    """`name` when it is a plain relative path (see `name_problem`); else InputFileError at `source:line`."""
    problem = name_problem(name)
    if problem is not None:
        raise InputFileError(source, f"{what} {name!r} {problem}: names must stay inside their folder", line=line)
    return name


def inside(root: str | Path, name: str) -> Path:
    """`root / name` for a name that stays inside `root` (FaceverError otherwise): for writers and readers
    that join a name from a data file to a folder."""
    problem = name_problem(name)
    if problem is not None:
        raise FaceverError(f"{root}: refusing {name!r}, which {problem}: names must stay inside their folder")
    return Path(root) / name


def _identity(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def check_output_is_not_an_input(output: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse an output file that is one of `inputs` (writing it would destroy that input).

    `inputs`: every file the command reads (a model, its weights, each image of a folder or list).
    An output that does not exist yet cannot be an input; one that does is compared by (device, inode).
    """
    out = _identity(output)
    if out is None:
        return
    for item in inputs:
        if _identity(item) == out:
            raise FaceverError(f"{output}: is also an input ({item}); writing it would overwrite that input. "
                               "Choose another output file")
