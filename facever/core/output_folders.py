"""Writing into a folder: only one that is new, empty, or holds facever's own output of the same kind.

A command that writes a folder (`align DST`, `eval-* --out`, `ensemble --out`, `compare --out`, ...)
never writes among the user's own files: swapped arguments (`align crops/ photos/`) or a typo naming a
photo folder must not mix crops and reports into it, or replace a file that happens to share a name.

The rule, applied by `facever.core.locks.folder_lock(folder, kind=...)` once it holds the folder's lock:

- a new folder, or one holding nothing but facever's hidden housekeeping (its lock, its marker,
  leftovers of killed writes), is claimed: facever writes the marker `.facever-output` into it
  (`{"format": "facever-output", "kind": KIND}`), and removes it again if the command fails having
  written nothing else;
- a folder whose marker names the same kind is facever's own: a rerun resumes or replaces its output;
- a folder written by facever before markers existed is recognised by the files of its kind
  (`settings.OUTPUT_KINDS`: `alignment.json` for align, `report.json` for an evaluation, ...) and
  claimed;
- anything else is refused, naming a file that is not facever's, before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from facever.core.errors import FaceverError
from facever.core.settings import OUTPUT_KINDS

MARKER = ".facever-output"
FORMAT = "facever-output"
LOCK_NAME = ".facever.lock"  # core.locks' lock file (defined here: locks imports this module)


def _housekeeping(name: str) -> bool:
    """Hidden names facever leaves in a folder it writes: the lock, the marker, and the temporary files of
    writes in progress or killed (`core.atomic`: `.NAME.partial-*`)."""
    return name in (LOCK_NAME, MARKER) or name.startswith(MARKER + ".") or (name.startswith(".") and ".partial" in name)


def check_folder_path(path: str | Path, *, what: str = "output folder") -> Path:
    """`path` when it is a folder or can become one; FaceverError naming it otherwise (a file there, or a
    file among its parents), instead of "File exists" or "Not a directory" from deep inside a write."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FaceverError(f"{path}: exists and is not a folder; give a folder as the {what}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FaceverError(f"{path}: cannot write there ({parent} is a file); choose another {what}")
            break
    return path


def make_folder(path: str | Path, *, what: str = "output folder") -> Path:
    """Create the folder `path` (and its parents) after `check_folder_path`."""
    path = check_folder_path(path, what=what)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _marker_kind(folder: Path) -> str | None:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if isinstance(data, dict) and data.get("format") == FORMAT and isinstance(data.get("kind"), str):
        return data["kind"]
    return None


def claim_output_folder(folder: str | Path, kind: str) -> bool:
    """Check that facever may write `folder` as output of `kind` (module doc); mark it as such.

    Returns True when this call wrote the marker (the folder was new or empty, or from before markers),
    so that a failed command can take it back (`release_output_folder`). Raises FaceverError naming
    what is in the way otherwise.
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}; known: {', '.join(OUTPUT_KINDS)}")
    folder = Path(folder)
    if (folder / MARKER).exists():
        found = _marker_kind(folder)
        if found == kind:
            return False
        what = f"facever's {found} output" if found else f"an unreadable {MARKER}"
        raise FaceverError(f"{folder}: holds {what}, not {kind} output; choose another output folder")
    entries = sorted(e for e in os.listdir(folder) if not _housekeeping(e))
    if entries and not any(name in entries for name in OUTPUT_KINDS[kind]):
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise FaceverError(f"{folder}: holds files facever did not write ({shown}); facever writes only into a new "
                           f"or empty folder, or one holding its own {kind} output; choose another output folder")
    tmp = folder / f"{MARKER}.partial-{os.getpid()}"
    tmp.write_text(json.dumps({"format": FORMAT, "kind": kind}) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MARKER)
    return True


def release_output_folder(folder: str | Path, kind: str) -> None:
    """Take back the marker `claim_output_folder` wrote, after a failed command: when the folder holds
    nothing else (nothing written), or facever's output from before markers (recognised without it)."""
    folder = Path(folder)
    try:
        rest = [e for e in os.listdir(folder) if not _housekeeping(e)]
        if not rest or any(name in rest for name in OUTPUT_KINDS[kind]):
            (folder / MARKER).unlink()
    except OSError:
        pass
