"""JSON from files: one reader, so that every malformed file is the same one-line error naming it.

Python's parser recurses once per nesting level, so a file of ten thousand `[` (or a `report.json`
edited into one) would end in a RecursionError deep in a traceback; here it is an `InputFileError`
("nested too deeply"), like a syntax error or bytes that are not UTF-8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facever.core.errors import InputFileError


def parse_json(text: str | bytes, source: str | Path, *, line: int | None = None) -> Any:
    """The value `text` holds; InputFileError naming `source` (and `line`) when it is not JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InputFileError(source, "not valid JSON (nested too deeply)", line=line) from None
    except UnicodeDecodeError as exc:
        raise InputFileError(source, f"not a text file (byte {exc.start} is not UTF-8)", line=line) from None
    except ValueError as exc:
        raise InputFileError(source, f"not valid JSON ({exc})", line=line) from None


def read_json_file(path: str | Path) -> Any:
    """The JSON value in the file `path` (a UTF-8 byte order mark accepted); InputFileError otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror or exc})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return parse_json(data, path)
