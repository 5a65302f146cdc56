"""The embeddings file: the hand-over between `facever embed` and every evaluator.

Format (`.npz`, readable with `numpy.load(path, allow_pickle=False)`):

- `paths`: 1-D unicode array, N relative image paths in POSIX form (`Name/Name_0001.jpg`), unique.
- `embeddings`: float32 array, N x D, row i belongs to `paths[i]`. Not necessarily normalised.
- `metadata` (optional): 0-d unicode array holding a JSON object (model id, flip mode, crop size, ...).

JSON rather than pickled objects so that a file from anywhere can be opened without running code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from facever.core.atomic import atomic_path
from facever.core.errors import FaceverError, InputFileError
from facever.core.json_files import parse_json

FORMAT_VERSION = 1


@dataclass
class Embeddings:
    """Embeddings keyed by relative image path."""

    paths: list[str]
    embeddings: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        if self.embeddings.ndim != 2:
            raise ValueError(f"embeddings must be N x D, got shape {self.embeddings.shape}")
        if len(self.paths) != self.embeddings.shape[0]:
            raise ValueError(f"{len(self.paths)} paths but {self.embeddings.shape[0]} embeddings")
        self._index: dict[str, int] | None = None

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.paths)

    def index(self) -> dict[str, int]:
        """Map from relative path to row."""
        if self._index is None:
            self._index = {p: i for i, p in enumerate(self.paths)}
        return self._index

    def rows(self, paths: Sequence[str]) -> np.ndarray:
        """Row indices for `paths`, -1 where a path has no embedding."""
        get = self.index().get
        return np.array([get(p, -1) for p in paths], dtype=np.int64)


def save_embeddings(
    path: str | Path,
    paths: Sequence[str],
    embeddings: np.ndarray,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write an embeddings file atomically (a crash leaves the old file or none). Returns the path."""
    path = Path(path)
    emb = np.asarray(embeddings, dtype=np.float32)
    paths = [str(p) for p in paths]
    if emb.ndim != 2 or emb.shape[0] != len(paths):
        raise ValueError(f"expected {len(paths)} x D embeddings, got shape {emb.shape}")
    if len(set(paths)) != len(paths):
        raise ValueError("duplicate paths in embeddings")
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():
        # A model with NaN weights (or overflowing activations) must not leave a file that looks fine.
        bad = [paths[i] for i in np.flatnonzero(~finite)[:3]]
        raise FaceverError(f"{path}: {int((~finite).sum())} embeddings are NaN or infinite (e.g. {', '.join(bad)}); "
                           "the model or its input is broken, nothing was written")
    meta = {"format": "facever-embeddings", "format_version": FORMAT_VERSION, **(metadata or {})}
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                paths=np.array(paths, dtype=str) if paths else np.zeros(0, dtype="<U1"),
                embeddings=emb,
                metadata=np.array(json.dumps(meta, sort_keys=True)),
            )
    return path


def _texts(path: Path, key: str, values: list) -> list[str]:
    out = []
    for value in values:
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise InputFileError(path, f"`{key}` holds bytes that are not UTF-8 text") from None
        out.append(str(value))
    return out


def load_embeddings(path: str | Path) -> Embeddings:
    """Read an embeddings file; structural problems raise `InputFileError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "not a regular file" if path.exists() else "embeddings file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            missing = {"paths", "embeddings"} - keys
            if missing:
                raise InputFileError(path, f"not a facever embeddings file (missing {', '.join(sorted(missing))})")
            paths_arr = data["paths"]
            emb = data["embeddings"]
            meta_arr = data["metadata"] if "metadata" in keys else np.array("{}")
    except InputFileError:
        raise
    except ValueError as exc:
        # allow_pickle=False refuses object arrays: a file that needs unpickling is not ours.
        raise InputFileError(path, f"cannot read embeddings file ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, EOFError ...
        raise InputFileError(path, f"cannot read embeddings file ({type(exc).__name__}: {exc})") from None
    if paths_arr.ndim != 1 or paths_arr.dtype.kind not in "US":
        raise InputFileError(path, "`paths` must be a 1-D array of strings")
    if emb.ndim != 2:
        raise InputFileError(path, f"`embeddings` must be N x D, got shape {emb.shape}")
    if emb.shape[0] == 0:
        raise InputFileError(path, "the file holds no embeddings")
    if emb.shape[0] != paths_arr.shape[0]:
        raise InputFileError(path, f"{paths_arr.shape[0]} paths but {emb.shape[0]} embeddings")
    if emb.dtype.kind != "f":
        raise InputFileError(path, f"`embeddings` must be floating point, got {emb.dtype}")
    # numpy writes Python 3 text as unicode ("U"); a file written with byte strings ("S", Python 2 tools,
    # h5py exports) holds the same names as UTF-8: read them as the text they are, never as "b'...'".
    paths = _texts(path, "paths", paths_arr.tolist())
    meta_raw = _texts(path, "metadata", [meta_arr.item() if meta_arr.ndim == 0 else str(meta_arr)])[0]
    if len(set(paths)) != len(paths):
        dup = next(p for i, p in enumerate(paths) if p in paths[:i])
        raise InputFileError(path, f"duplicate path {dup!r}")
    try:
        metadata = parse_json(meta_raw, path)  # InputFileError (a ValueError) when not JSON or nested too deeply
        if not isinstance(metadata, dict):
            raise ValueError("not an object")
    except ValueError:
        raise InputFileError(path, "`metadata` is not a JSON object") from None
    version = metadata.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputFileError(path, f"format_version {version!r} is not a version number (a damaged or edited file?)")
    if version > FORMAT_VERSION:
        raise InputFileError(path, f"format_version {version} is newer than this facever reads ({FORMAT_VERSION}); "
                             "upgrade facever")
    return Embeddings(paths=paths, embeddings=emb.astype(np.float32, copy=False), metadata=metadata)
