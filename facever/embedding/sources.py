"""Where the bytes of the images to embed come from, and each image's content key (the cache's key).

Two kinds, one interface (`read`, `describe`, `keys`), so the one forward loop (`embed_images`) and the
one embedding cache (`facever.embedding.cache`) serve both:

- `ImageFolder(root)`: files under a folder, named by relative POSIX paths (`Name/Name_0001.jpg`);
- `ImageBytes(blobs, names, source=...)`: encoded images held in memory, e.g. the JPEGs of an
  InsightFace `.bin` (named `000000`, `000001`, ...).

A content key (`facever.core.checksums.content_key`) is the digest of an image's bytes: a cache row is
reused only for the very bytes it was computed from, wherever they come from (a renamed file, the same
JPEG inside a `.bin`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from facever.core.checksums import content_key
from facever.core.images import ImageDecodeError, read_file_bytes


def file_key(path: str | os.PathLike) -> tuple[str, int] | None:
    """(content key, mtime in ns) of a file, or None when it cannot be read (missing, not a regular file)."""
    try:
        data, mtime = read_file_bytes(path)
    except ImageDecodeError:
        return None
    return content_key(data), mtime


class ImageFolder:
    """Image files under `root`, named by their relative paths."""

    #: Crops of another aspect ratio than the model's are a mistake here (warned about once a run).
    warn_aspect = True

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def describe(self, item: str) -> str:
        """How messages name `item` (its path)."""
        return str(self.root / item)

    def read(self, item: str) -> tuple[bytes, int]:
        """(bytes, mtime in ns); `ImageDecodeError` naming the file when it is missing or unreadable."""
        return read_file_bytes(self.root / item)

    def keys(self, items: Sequence[str], *, threads: int = 8) -> list[tuple[str, int] | None]:
        """`file_key` of every item (threads: hashing releases the GIL, reading waits on disk)."""
        if len(items) < 64:
            return [file_key(self.root / i) for i in items]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda i: file_key(self.root / i), items, chunksize=256))


class ImageBytes:
    """Encoded images held in memory (`blobs[i]` named `names[i]`), e.g. a `.bin`'s; `source` names them
    in messages (`agedb_30.bin image 5`)."""

    #: A `.bin`'s 112x112 crops fitted to a 112x96 model is the documented use, not a mistake.
    warn_aspect = False

    def __init__(self, blobs: Sequence[bytes], names: Sequence[str], *, source: str | os.PathLike = "<memory>"):
        if len(blobs) != len(names):
            raise ValueError(f"{len(blobs)} images for {len(names)} names")
        self.blobs = list(blobs)
        self.names = [str(n) for n in names]
        self.source = str(source)
        self._index = {n: i for i, n in enumerate(self.names)}

    def __str__(self) -> str:
        return self.source

    def describe(self, item: str) -> str:
        return f"{self.source} image {self._index[item]}"

    def read(self, item: str) -> tuple[bytes, int]:
        """(bytes, 0): images in memory have no modification time."""
        return self.blobs[self._index[item]], 0

    def keys(self, items: Sequence[str], *, threads: int = 8) -> list[tuple[str, int] | None]:  # noqa: ARG002
        return [(content_key(self.blobs[self._index[i]]), 0) for i in items]


def image_source(root) -> ImageFolder | ImageBytes:
    """`root` as an image source: a folder path becomes an `ImageFolder`; a source is returned as it is."""
    return root if isinstance(root, (ImageFolder, ImageBytes)) else ImageFolder(root)
