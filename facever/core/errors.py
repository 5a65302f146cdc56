"""Exceptions the library raises for bad input; the CLI turns them into one-line errors."""

from __future__ import annotations

from pathlib import Path


class FaceverError(Exception):
    """A problem the user can fix (bad file, bad option, missing data). The CLI prints it on one line.

    Library messages name settings by their parameter names (`batch_size`), never by a command-line
    flag; `options` lists the parameter names a message mentions, so a front end can write them its
    own way (the CLI: `--batch-size`, for the options its command has).
    """

    def __init__(self, message: str = "", *, options: tuple[str, ...] | list[str] = ()):
        super().__init__(message)
        self.options = tuple(options)


class InputFileError(FaceverError, ValueError):
    """A malformed input file. The message names the file and, when known, the 1-based line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = Path(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {message}")
