"""An incremental on-disk cache of image embeddings, keyed by relative image path.

YTF has ~620k frames; embedding them is the slow part of `facever eval-ytf`, and the protocol choices
(how many frames per video, metric) are cheap. So frame embeddings are kept, and a later run with
other settings embeds only frames it has never seen.

Layout: `<cache_dir>/<key>/` where `key` is a hash of the settings that change an embedding (model file
contents, alignment, flip, ...), written out in `signature.json`; several models share one cache dir
without mixing. Inside, each run appends shards: `shard-00000.npz` (a facever embeddings file, readable
by `load_embeddings`) and `shard-00000.bad.json` (frames that could not be embedded, with the reason),
each written atomically after every chunk, so an interrupted run loses at most one chunk.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from facever.core.atomic import write_text_atomic
from facever.core.embeddings_file import Embeddings, load_embeddings, save_embeddings
from facever.core.errors import InputFileError

EmbedFn = Callable[[list[str]], tuple[Embeddings, Any]]


def _bad_paths(bad: Any) -> dict[str, str]:
    """Normalise the embedder's failures to {path: reason}: a mapping, or a list of paths, (path, reason)
    pairs or objects with `.path` and `.reason` (`facever.embedding.extract.BadImage`)."""
    if not bad:
        return {}
    if isinstance(bad, Mapping):
        return {str(k): str(v) for k, v in bad.items()}
    out = {}
    for item in bad:
        if hasattr(item, "path"):
            out[str(item.path)] = str(getattr(item, "reason", "failed"))
        elif isinstance(item, (tuple, list)) and item:
            out[str(item[0])] = str(item[1]) if len(item) > 1 else "failed"
        else:
            out[str(item)] = "failed"
    return out


class EmbeddingCache:
    """Cached embeddings for one set of settings (`signature`, a JSON-able dict) under `cache_dir`."""

    def __init__(self, cache_dir: str | Path, signature: Mapping[str, Any]):
        self.signature = dict(signature)
        blob = json.dumps(self.signature, sort_keys=True).encode()
        self.key = hashlib.sha256(blob).hexdigest()[:16]
        self.folder = Path(cache_dir) / self.key

    def _shards(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.npz")) if self.folder.is_dir() else []

    def load(self) -> tuple[Embeddings | None, dict[str, str]]:
        """Everything cached so far: (embeddings or None, {frame: reason} for frames that failed)."""
        parts = [load_embeddings(p) for p in self._shards()]
        bad: dict[str, str] = {}
        if self.folder.is_dir():
            for p in sorted(self.folder.glob("shard-*.bad.json")):
                try:
                    bad.update(json.loads(p.read_text()))
                except (ValueError, OSError) as exc:
                    raise InputFileError(p, f"unreadable cache file ({exc}); delete it to re-embed") from None
        if not parts:
            return None, bad
        dims = {e.dim for e in parts}
        if len(dims) != 1:
            raise InputFileError(self.folder, f"cache shards disagree on the embedding size {sorted(dims)}")
        paths: list[str] = []
        seen: set[str] = set()
        rows = []
        for e in parts:
            keep = [i for i, p in enumerate(e.paths) if p not in seen]
            seen.update(e.paths[i] for i in keep)
            paths.extend(e.paths[i] for i in keep)
            rows.append(e.embeddings[keep])
        return Embeddings(paths, np.concatenate(rows), metadata={"cache": str(self.folder)}), bad

    def _next_index(self) -> int:
        shards = self._shards()
        return int(shards[-1].stem.split("-")[1]) + 1 if shards else 0

    def extend(
        self,
        paths: Sequence[str],
        embed: EmbedFn,
        *,
        chunk_size: int = 4096,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[Embeddings | None, dict[str, str], int]:
        """Embed the `paths` not cached yet (in chunks, each saved as a shard), then return the whole cache.

        `embed(paths) -> (Embeddings, bad)` computes embeddings; `bad` lists the paths it could not
        embed (or (path, reason) pairs). Returns (embeddings, bad, number of paths embedded this call).
        `progress(n)` is called with the number of cached and newly embedded paths.
        """
        cached, bad = self.load()
        have = set(cached.paths) if cached is not None else set()
        have.update(bad)
        todo = list(dict.fromkeys(p for p in paths if p not in have))
        if progress is not None and len(paths) - len(todo):
            progress(len(set(paths)) - len(todo))
        if not todo:
            return cached, bad, 0
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.folder / "signature.json", json.dumps(self.signature, indent=2, sort_keys=True) + "\n")
        index = self._next_index()
        for start in range(0, len(todo), chunk_size):
            chunk = todo[start : start + chunk_size]
            emb, chunk_bad = embed(chunk)
            chunk_bad = _bad_paths(chunk_bad)
            name = f"shard-{index:05d}"
            if len(emb):
                save_embeddings(self.folder / f"{name}.npz", emb.paths, emb.embeddings, {"cache_signature": self.signature})
            if chunk_bad:
                write_text_atomic(self.folder / f"{name}.bad.json", json.dumps(chunk_bad, indent=1, sort_keys=True))
            index += 1
            if progress is not None:
                progress(len(chunk))
        cached, bad = self.load()
        return cached, bad, len(todo)
