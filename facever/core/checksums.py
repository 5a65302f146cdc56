"""Digests: verifying downloads (sha256/md5), fingerprinting model files (sha256), and the content key
the embedding cache files each image under."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_digests(path: str | Path, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """Hex digests of `path` for each algorithm, computed in one pass over the file."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}


def content_key(data: bytes) -> str:
    """The embedding cache's key of an image's bytes: `SIZE-BLAKE2b128` (hex)."""
    return f"{len(data)}-{hashlib.blake2b(data, digest_size=16).hexdigest()}"


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of one file (sha256 by default)."""
    return file_digests(path, (algorithm,))[algorithm]
