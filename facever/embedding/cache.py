"""The one embedding cache: image embeddings kept on disk, keyed by content, reused only when nothing changed.

Used by `facever embed` (its resume), every `eval-*` and `ensemble` with a model (through
`facever.workflows.evaluate`: image files, YTF frames, IJB crops and a `.bin`'s images held in memory,
`facever.embedding.sources`) and `facever reproduce`. A row is reused only when all of these match:

- the image's bytes: a content digest (BLAKE2b-128) and size of the bytes, read at lookup time, and the
  digest of the very bytes the decoding worker embedded when the row was stored (a file rewritten in
  place, same name, even with its old mtime, is embedded again; a renamed or copied file is reused);
- the settings (`cache_settings`): the model file's sha256 and its preprocessing (input size, mean,
  std, colour order), the crop policy, the flip mode, the precision (AMP bf16 or float32), the device
  type (CUDA's TF32 convolutions differ from the CPU's float32) and the aligner's settings.

Layout: `<cache_dir>/<settings digest>/` holds `settings.json` (what the digest stands for) and shards
`shard-00000.npz`, one per chunk of embedded images, each written atomically, so an interruption loses
at most one chunk and ~620k YTF frames make ~80 files read one at a time. A shard holds `keys`
(content digests), `embeddings` (float32), `paths`, `sizes`, `mtimes` and `shapes` (for humans and the
report: where each row came from), and the images that produced no embedding (`bad_keys`,
`bad_paths`, `bad_reasons`: undecodable bytes, no face found), which are not retried while their bytes
and the settings stay the same. Several models and settings share one cache folder without mixing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from facever.core.atomic import atomic_path, write_text_atomic
from facever.core.crop import CROP_POLICY
from facever.core.embeddings_file import Embeddings
from facever.core.errors import FaceverError, InputFileError
from facever.core.output_folders import check_folder_path, make_folder
from facever.core.settings import DEFAULT_AMP, DEFAULT_FLIP, EMBED_BATCH_SIZE
from facever.embedding.extract import (
    FUSE_MIN_IMAGES, BadImage, BadImagesError, NoImageEmbeddedError, aligner_settings, embed_images, model_amp,
)
from facever.embedding.preprocess import aspect_ratio_differs
from facever.embedding.sources import ImageBytes, ImageFolder, image_source

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
# Images per shard: big enough that a shard costs little next to its model time, small enough that an
# interruption loses little and YTF's frames make tens of files, not thousands.
DEFAULT_CHUNK = 8192


def cache_settings(model, *, flip: str, amp: str, device_type: str, align=None) -> dict[str, Any]:
    """Everything besides the image that decides an embedding (JSON-ready); see the module doc.
    `amp` is the precision the model runs at ("bf16", "fp16", "off": `extract.model_amp`)."""
    return {
        "cache_format": CACHE_FORMAT,
        "model": getattr(model, "model_id", str(model)),
        "model_sha256": getattr(model, "fingerprint", ""),
        "preprocessing": getattr(model, "preprocessing", ""),
        "crop_policy": CROP_POLICY,
        "flip": flip,
        "amp": amp,
        "device_type": device_type,
        "aligner": aligner_settings(align),
    }


@dataclass
class CacheLookup:
    """What the cache holds for some keys: `rows[key]` (embedding) and `bad[key]` (reason)."""

    rows: dict[str, np.ndarray]
    bad: dict[str, str]
    shapes: dict[str, tuple[int, int]]


class EmbeddingCache:
    """The shards of one set of settings under `cache_dir` (see the module doc)."""

    def __init__(self, cache_dir: str | os.PathLike, settings: dict[str, Any]):
        self.settings = dict(settings)
        blob = json.dumps(self.settings, sort_keys=True).encode()
        self.digest = hashlib.sha256(blob).hexdigest()[:16]
        self.folder = check_folder_path(cache_dir, what="cache folder") / self.digest

    def shards(self) -> list[Path]:
        return sorted(self.folder.glob("shard-*.npz")) if self.folder.is_dir() else []

    def lookup(self, keys: set[str] | Sequence[str]) -> CacheLookup:
        """The cached rows and failures among `keys`, read one shard at a time (only matching rows kept)."""
        wanted = set(keys)
        found = CacheLookup({}, {}, {})
        for shard in self.shards():
            if not wanted:
                break
            try:
                with np.load(shard, allow_pickle=False) as data:
                    shard_keys = data["keys"]
                    hit = np.flatnonzero(np.isin(shard_keys, list(wanted))) if len(shard_keys) else []
                    if len(hit):
                        emb, shapes = data["embeddings"], data["shapes"]
                        for i in hit:
                            found.rows[str(shard_keys[i])] = emb[i]
                            found.shapes[str(shard_keys[i])] = (int(shapes[i][0]), int(shapes[i][1]))
                    for k, reason in zip(data["bad_keys"].tolist(), data["bad_reasons"].tolist()):
                        if k in wanted:
                            found.bad[k] = reason
            except (OSError, ValueError, KeyError) as exc:
                raise InputFileError(shard, f"unreadable embedding cache shard ({type(exc).__name__}: {exc}); "
                                            "delete it to embed those images again") from None
            wanted -= found.rows.keys() | found.bad.keys()
        return found

    def add(self, keys: Sequence[str], embeddings: np.ndarray, *, paths: Sequence[str], mtimes: Sequence[int],
            shapes: Sequence[Sequence[int]], bad: Sequence[tuple[str, str, str]] = ()) -> Path | None:
        """Write one shard: rows (`keys[i]` -> `embeddings[i]`) and failures (key, path, reason)."""
        if not len(keys) and not bad:
            return None
        make_folder(self.folder, what="cache folder")
        settings_file = self.folder / "settings.json"
        if not settings_file.is_file():
            write_text_atomic(settings_file, json.dumps(self.settings, indent=2, sort_keys=True) + "\n")
        shards = self.shards()
        index = int(shards[-1].stem.split("-")[1]) + 1 if shards else 0
        path = self.folder / f"shard-{index:05d}.npz"
        emb = np.asarray(embeddings, dtype=np.float32)
        emb = emb.reshape(len(keys), -1) if len(keys) else np.zeros((0, 1), np.float32)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                keys=np.array(list(keys), dtype=str).reshape(-1),
                embeddings=emb,
                paths=np.array(list(paths), dtype=str).reshape(-1),
                mtimes=np.asarray(list(mtimes), dtype=np.int64).reshape(-1),
                shapes=np.asarray(list(shapes), dtype=np.int32).reshape(-1, 2),
                bad_keys=np.array([b[0] for b in bad], dtype=str).reshape(-1),
                bad_paths=np.array([b[1] for b in bad], dtype=str).reshape(-1),
                bad_reasons=np.array([b[2] for b in bad], dtype=str).reshape(-1),
            )
        return path


def embed_items_cached(
    model,
    root: str | os.PathLike | ImageFolder | ImageBytes,
    items: Sequence[str],
    *,
    cache: str | os.PathLike | None,
    flip: str = DEFAULT_FLIP,
    batch_size: int = EMBED_BATCH_SIZE,
    workers: int | None = None,
    device="cpu",
    amp: str = DEFAULT_AMP,
    align=None,
    skip_bad: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    keep_partial: bool = True,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
):
    """Embeddings of `items` (relative paths under `root`, or names of an image source such as a `.bin`'s
    images in memory: `facever.embedding.sources`), reusing and extending the cache folder `cache`.

    Returns `(embeddings, bad, reused)`: the rows for `items` that could be embedded (in `items`
    order), the `BadImage`s left out, and how many rows came from the cache. `on_plan(reused,
    to_embed)` is called once before any model work (e.g. to advance a progress bar). Without a
    cache (None) everything is embedded. The metadata says how each row was made (`embed_images`'s)
    plus `reused` and `cache`.

    Raises `BadImagesError` listing every bad image when `skip_bad` is False. With `keep_partial` (the
    default) each chunk of rows is saved in `cache` as soon as it is computed, so an interrupted run, or
    one refused for bad images and rerun with `skip_bad`, costs no model time again; without it rows are
    saved only once the whole request succeeded (for sources whose bad images cannot be skipped: a
    refused run then writes nothing).
    """
    import torch

    from facever.core.devices import resolve_device

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    use_amp = model_amp(model, amp, dev)
    source = image_source(root)
    items = list(dict.fromkeys(str(i) for i in items))
    if not items:
        raise FaceverError("no images to embed")
    store = EmbeddingCache(cache, cache_settings(model, flip=flip, amp=use_amp, device_type=dev.type, align=align)) \
        if cache is not None else None

    # Look up what the cache holds for the images' current bytes.
    found = CacheLookup({}, {}, {})
    keys: list[str | None] = [None] * len(items)
    if store is not None:
        keys = [k[0] if k is not None else None for k in source.keys(items)]
        found = store.lookup({k for k in keys if k is not None})
    reused_rows = {p: found.rows[k] for p, k in zip(items, keys) if k in found.rows}
    bad: list[BadImage] = [BadImage(p, found.bad[k]) for p, k in zip(items, keys) if k in found.bad]
    todo = [p for p, k in zip(items, keys) if k is None or (k not in found.rows and k not in found.bad)]
    if on_plan is not None:
        on_plan(len(items) - len(todo), len(todo))

    fresh_rows: dict[str, np.ndarray] = {}
    shards: list[dict[str, Any]] = []  # rows not yet written (all of them without `keep_partial`)
    shapes = {p: found.shapes[k] for p, k in zip(items, keys) if k in found.shapes}
    meta: dict[str, Any] = {}
    # Fold batch norms by the size of the whole request, so a resumed run computes as the first did.
    fuse_bn = len(items) >= FUSE_MIN_IMAGES
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start:start + chunk_size]
        digests: dict[str, tuple[str, int, tuple[int, int] | None]] = {}
        try:
            fresh, chunk_bad = embed_images(
                model, source, chunk, flip=flip, batch_size=batch_size, workers=workers, device=dev, amp=use_amp,
                fuse_bn=fuse_bn, align=align, skip_bad=True, progress=progress, content_keys=digests,
            )
        except NoImageEmbeddedError as exc:  # a chunk of bad images only: the next chunk may do better
            fresh, chunk_bad = None, exc.bad
        bad += chunk_bad
        if fresh is not None:
            meta = fresh.metadata
            fresh_rows.update(zip(fresh.paths, fresh.embeddings))
        if store is not None:
            good = [p for p in (fresh.paths if fresh is not None else []) if p in digests]
            for p in good:
                shapes[p] = digests[p][2]
            shards.append(dict(
                keys=[digests[p][0] for p in good],
                embeddings=np.stack([fresh_rows[p] for p in good]) if good else np.zeros((0, 1), np.float32),
                paths=good, mtimes=[digests[p][1] for p in good], shapes=[digests[p][2] for p in good],
                bad=[(digests[b.path][0], b.path, b.reason) for b in chunk_bad if b.path in digests],
            ))
            if keep_partial:
                store.add(**shards.pop())
        else:
            shapes.update({p: digests[p][2] for p in digests if digests[p][2] is not None})

    bad = sorted(bad, key=lambda b: b.path)
    if bad and not skip_bad:
        raise BadImagesError(bad, len(items))
    for shard in shards:
        store.add(**shard)
    rows = {**reused_rows, **fresh_rows}
    kept = [p for p in items if p in rows]
    if not kept:
        raise NoImageEmbeddedError(bad, len(items))
    size = tuple(int(v) for v in model.input_size)
    kept_shapes = [shapes.get(p) for p in kept]
    metadata = {
        **model.metadata(),
        "flip": flip,
        "crop_policy": CROP_POLICY,
        "crop_size": list(size),
        "amp": use_amp,
        "device": str(dev),
        "aligned_here": align is not None,
        **({"aligner": aligner_settings(align)} if align is not None else {}),
        **({"channels_last": meta["channels_last"]} if "channels_last" in meta else {}),
        "images": len(kept),
        "bad_images": len(bad),
        "resized_images": sum(1 for s in kept_shapes if s is not None and tuple(s) != size),
        "aspect_mismatch_images": sum(1 for s in kept_shapes if s is not None and _aspect_differs(s, size)),
        "reused": len(reused_rows),
        "cache": str(store.folder) if store is not None else None,
    }
    return Embeddings(kept, np.stack([rows[p] for p in kept]), metadata=metadata), bad, len(reused_rows)


def _aspect_differs(shape, size) -> bool:
    return aspect_ratio_differs(shape, size)
