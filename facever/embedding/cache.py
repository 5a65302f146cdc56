"""Embedding each image once: an embeddings file reused while model and settings match, saved as it grows.

`facever eval-lfw --model` (and `facever ensemble --images`) embed the images the pairs need into
`OUT/embeddings.npz`; `facever embed` keeps its progress in a hidden `.NAME.partial.npz` next to its
output. A later run with the same model weights (sha256), flip mode, precision, image folder and
aligner reuses every row it finds and embeds only the missing ones, so an interrupted run resumes and
a second evaluation (other metric, other thresholds) costs no model time. The file is rewritten
(atomically) after every `chunk_size` images, so an interruption loses at most one chunk.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from facever.core.embeddings_file import Embeddings, load_embeddings, save_embeddings
from facever.core.devices import default_amp
from facever.core.errors import FaceverError

log = logging.getLogger(__name__)

# Images per saved step: big enough that rewriting the file is cheap next to the model time.
DEFAULT_CHUNK = 20_000


def cache_key(model, root: str | os.PathLike, *, flip: str, amp: bool, align=None) -> dict[str, Any]:
    """What must match for cached rows to be reused (JSON-ready)."""
    from facever.embedding.extract import _aligner_metadata

    return {
        "model_sha256": model.fingerprint,
        "model": model.model_id,
        "preprocessing": model.preprocessing,
        "flip": flip,
        "amp": "bf16" if amp else "off",
        "images_root": str(Path(root).resolve()),
        "aligner": _aligner_metadata(align) if align is not None else None,
    }


def load_cache(path: str | os.PathLike | None, key: dict[str, Any]) -> Embeddings | None:
    """The cached embeddings at `path` when they were made with `key`'s settings, else None."""
    if path is None or not Path(path).is_file():
        return None
    try:
        cached = load_embeddings(path)
    except FaceverError as exc:
        log.warning("ignoring unreadable embeddings cache (%s); embedding again", exc)
        return None
    if cached.metadata.get("cache_key") != key:
        log.info("%s was made with another model or settings; embedding again", path)
        return None
    return cached


def _merge(a: Embeddings | None, b: Embeddings, where) -> Embeddings:
    if a is None or not len(a):
        return b
    if not len(b):
        return a
    if a.dim != b.dim:
        raise FaceverError(f"{where}: cached embeddings have {a.dim} dimensions, the model gives {b.dim}")
    return Embeddings(a.paths + b.paths, np.concatenate([a.embeddings, b.embeddings]), metadata=b.metadata)


def embed_items_cached(
    model,
    root: str | os.PathLike,
    items: Sequence[str],
    *,
    cache: str | os.PathLike | None,
    flip: str = "none",
    batch_size: int = 64,
    workers: int | None = None,
    device="cpu",
    amp: bool | None = None,
    align=None,
    skip_bad: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
):
    """Embeddings of `items` (relative paths under `root`), reusing and extending the file `cache`.

    Returns `(embeddings, bad, reused)`: the rows for `items` that could be embedded (in `items`
    order), the `BadImage`s left out, and how many rows came from the cache. `on_plan(reused,
    to_embed)` is called once before any model work (e.g. to advance a progress bar).

    Raises `BadImagesError` listing every bad image when `skip_bad` is False, after the good ones are
    saved in `cache`, so rerunning with `skip_bad` costs no model time.
    """
    import torch

    from facever.core.devices import resolve_device
    from facever.embedding.extract import BadImagesError, NoImageEmbeddedError, embed_images, runs_own_graph

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    use_amp = (default_amp(dev) if amp is None else bool(amp)) and not runs_own_graph(model)
    key = cache_key(model, root, flip=flip, amp=use_amp, align=align)
    items = list(dict.fromkeys(str(i) for i in items))
    if not items:
        raise FaceverError("no images to embed")

    everything = load_cache(cache, key)
    have = set(everything.paths) if everything is not None else set()
    todo = [p for p in items if p not in have]
    if on_plan is not None:
        on_plan(len(items) - len(todo), len(todo))

    bad = []
    for start in range(0, len(todo), chunk_size):
        try:
            fresh, chunk_bad = embed_images(
                model, root, todo[start:start + chunk_size], flip=flip, batch_size=batch_size, workers=workers,
                device=dev, amp=use_amp, align=align, skip_bad=True, progress=progress,
            )
        except NoImageEmbeddedError as exc:  # a chunk of bad images only: the next chunk may do better
            bad += exc.bad
            continue
        bad += chunk_bad
        everything = _merge(everything, fresh, cache or "embeddings")
        if cache is not None and len(fresh):
            meta = {**everything.metadata, "cache_key": key, "images": len(everything)}
            meta.pop("bad_images", None)
            save_embeddings(cache, everything.paths, everything.embeddings, meta)
    if bad and not skip_bad:
        raise BadImagesError(bad, len(items))
    if everything is None or not len(everything):
        raise FaceverError(f"no image could be embedded ({len(bad)} bad of {len(items)})")
    rows = everything.rows(items)
    present = rows >= 0
    metadata = {**everything.metadata, "cache_key": key, "images": int(present.sum()), "bad_images": len(bad)}
    result = Embeddings(
        paths=[p for p, ok in zip(items, present) if ok], embeddings=everything.embeddings[rows[present]],
        metadata=metadata,
    )
    return result, bad, len(items) - len(todo)
