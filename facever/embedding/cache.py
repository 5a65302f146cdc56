"""Embedding only what a protocol needs, once: an embeddings file reused while model and settings match.

`facever eval-lfw --model` (and `facever ensemble --images`) embed the images the pairs need into
`OUT/embeddings.npz`. A later run with the same model weights (sha256), flip mode, precision and
image folder reuses every row it finds and embeds only the missing ones, so an interrupted run
resumes and a second evaluation (other metric, other thresholds) costs no model time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from facever.embeddings_file import Embeddings, load_embeddings, save_embeddings
from facever.errors import FaceverError

log = logging.getLogger(__name__)


def cache_key(model, root: str | os.PathLike, *, flip: str, amp: bool) -> dict[str, Any]:
    """What must match for cached rows to be reused (JSON-ready)."""
    return {
        "model_sha256": model.fingerprint,
        "model": model.model_id,
        "preprocessing": model.preprocessing,
        "flip": flip,
        "amp": "bf16" if amp else "off",
        "images_root": str(Path(root).resolve()),
    }


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
    skip_bad: bool = False,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
):
    """Embeddings of `items` (relative paths under `root`), reusing and updating the file `cache`.

    Returns `(embeddings, bad, reused)`: the rows for `items` that could be embedded (in `items`
    order), the `BadImage`s left out (only with `skip_bad`), and how many rows came from the cache.
    `on_plan(reused, to_embed)` is called once before any model work (for a progress bar's total).
    """
    import torch

    from facever.devices import resolve_device
    from facever.embedding.extract import embed_images

    dev = device if isinstance(device, torch.device) else resolve_device(device)
    use_amp = (dev.type == "cuda") if amp is None else bool(amp)
    key = cache_key(model, root, flip=flip, amp=use_amp)
    items = list(dict.fromkeys(str(i) for i in items))
    if not items:
        raise FaceverError("no images to embed")

    cached: Embeddings | None = None
    if cache is not None and Path(cache).is_file():
        try:
            cached = load_embeddings(cache)
        except FaceverError as exc:
            log.warning("ignoring unreadable embeddings cache (%s); embedding again", exc)
        if cached is not None and cached.metadata.get("cache_key") != key:
            log.info("%s was made with another model or settings; embedding again", cache)
            cached = None
    have = set(cached.paths) if cached is not None else set()
    todo = [p for p in items if p not in have]
    if on_plan is not None:
        on_plan(len(items) - len(todo), len(todo))

    bad = []
    fresh: Embeddings | None = None
    if todo:
        fresh, bad = embed_images(
            model, root, todo, flip=flip, batch_size=batch_size, workers=workers, device=dev, amp=use_amp,
            skip_bad=skip_bad, progress=progress,
        )
    if cached is not None and fresh is not None and cached.dim != fresh.dim:
        raise FaceverError(f"{cache}: cached embeddings have {cached.dim} dimensions, the model gives {fresh.dim}")

    merged_paths = (cached.paths if cached is not None else []) + (fresh.paths if fresh is not None else [])
    parts = [e.embeddings for e in (cached, fresh) if e is not None]
    merged = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    metadata = dict(fresh.metadata if fresh is not None else cached.metadata)  # type: ignore[union-attr]
    metadata["cache_key"] = key
    metadata["images"] = len(merged_paths)
    if cache is not None and fresh is not None and len(fresh):
        save_embeddings(cache, merged_paths, merged, metadata)
    everything = Embeddings(paths=merged_paths, embeddings=merged, metadata=metadata)
    rows = everything.rows(items)
    present = rows >= 0
    result = Embeddings(
        paths=[p for p, ok in zip(items, present) if ok], embeddings=merged[rows[present]], metadata=metadata
    )
    return result, bad, len(items) - len(todo)
