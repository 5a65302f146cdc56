"""One writer per output folder: an OS-level lock (`flock`) on a hidden file inside the folder.

Every command that writes a folder (train, align, embed, eval-* --out, ensemble --out, compare --out,
reproduce, demo) holds `folder_lock(out)` while it writes. A second run on the same folder is refused
at once with a message naming the process that holds it, instead of interleaving `metrics.jsonl` or
racing on `model.pt`. The kernel releases the lock when the holder exits, however it exits (crash,
`kill -9`), so a lock is never left behind: a lock file left by a killed run is only a name, and the
next run takes it over. A run that ends deletes its lock file.

While the lock is held no other facever process writes in the folder, so leftovers of writes killed
half-way (`.NAME.partial-*` from `atomic.py`) are deleted then.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

from facever.core.errors import FaceverError
from facever.core.output_folders import (
    LOCK_NAME, check_folder_path, claim_output_folder, make_folder, release_output_folder,
)
log = logging.getLogger(__name__)


class FolderInUseError(FaceverError):
    """Another process holds the folder's lock."""


def _holder(lock_file: Path) -> str:
    try:
        text = lock_file.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "another process"
    pid, _, command = text.partition("\n")
    if not pid.strip().isdigit():
        return "another process"
    command = " ".join(command.split())
    if len(command) > 120:
        command = command[:117] + "..."
    return f"process {pid.strip()}" + (f" ({command})" if command else "")


def _remove_partials(folder: Path, pattern: str) -> None:
    for leftover in folder.glob(pattern):
        with contextlib.suppress(OSError):
            if leftover.is_file() and not leftover.is_symlink():
                leftover.unlink()
                log.info("removed %s, left by a write that was killed", leftover)


@contextlib.contextmanager
def folder_lock(folder: str | Path | None, *, kind: str | None) -> Iterator[Path | None]:
    """Hold the exclusive lock of `folder` (created if needed) for the `with` block, as output of `kind`.

    `kind` (one of `settings.OUTPUT_KINDS`): the folder must be new, empty, or hold facever's own
    output of that kind (`facever.core.output_folders`); None for a caller that applies its own rule.
    Raises `FolderInUseError` naming the holder (pid and command line) when another process has it,
    and `FaceverError` when `folder` exists and is not a folder or holds files facever did not write.
    A folder this call created or claimed is left as it was when the block fails with nothing written
    in it. `None` (no output asked for) locks nothing.
    """
    if folder is None:
        yield None
        return
    folder = check_folder_path(folder)
    created = not folder.exists()
    make_folder(folder)
    claimed = False
    try:
        with _flock(folder / LOCK_NAME, folder, partials=".*.partial-*"):
            claimed = kind is not None and claim_output_folder(folder, kind)
            yield folder
    except BaseException:
        if claimed:
            release_output_folder(folder, kind)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: nothing the failed run wrote is hidden
        raise


@contextlib.contextmanager
def file_lock(path: str | Path, *, wait: float = 0.0) -> Iterator[Path]:
    """Hold the lock of one output file (`.NAME.lock` beside it): two runs writing one file are refused.

    `wait` > 0: wait up to that many seconds for another holder to let go before refusing (for short
    read-modify-write sections, such as the model cache's lock file, that two runs may both need).
    """
    path = Path(path)
    if path.is_dir():
        raise FaceverError(f"{path}: is a folder; give a file name for the output")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise FaceverError(f"{path}: cannot write there (a parent of it is a file); choose another output file") from None
    with _flock(path.with_name(f".{path.name}.lock"), path, partials=f".{glob_escape(path.stem)}.partial-*", wait=wait):
        yield path


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _open_locked(lock_file: Path, target: Path, wait: float = 0.0) -> int | None:
    """A descriptor holding the flock of `lock_file`; None where the filesystem has no locks."""
    import time

    deadline = time.monotonic() + wait
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise FolderInUseError(
                    f"{target}: in use by {_holder(lock_file)}; wait for it to finish, or write elsewhere"
                ) from None
            # A filesystem without locks (some network mounts): go on unprotected rather than refuse.
            log.warning("cannot lock %s (%s); make sure no other facever run writes there", target, exc)
            return None
        # The holder before us deletes the file as it lets go: if we locked that deleted file, the lock
        # protects nothing, so try again on the file now at that name.
        try:
            if os.stat(lock_file).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def _flock(lock_file: Path, target: Path, *, partials: str, wait: float = 0.0) -> Iterator[None]:
    fd = _open_locked(lock_file, target, wait)
    if fd is None:
        yield
        return
    try:
        command = " ".join(sys.argv) if sys.argv else ""
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{command}\n".encode("utf-8", "replace"), 0)
        _remove_partials(lock_file.parent, partials)
        yield
    finally:
        # Delete while still holding the lock (a waiting process re-checks the name), then release.
        with contextlib.suppress(OSError):
            lock_file.unlink()
        os.close(fd)
