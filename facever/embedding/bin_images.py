"""Embedding the images of an InsightFace `.bin` with any embedding model."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from facever.core.embeddings_file import Embeddings
from facever.core.crop import CROP_POLICY
from facever.core.settings import DEFAULT_AMP, DEFAULT_FLIP, EMBED_BATCH_SIZE
from facever.embedding.extract import FUSE_MIN_IMAGES, embed_pixels
from facever.protocols.insightface_bin import BinImages


def embed_bin_images(
    model,
    images: BinImages,
    *,
    flip: str = DEFAULT_FLIP,
    batch_size: int = EMBED_BATCH_SIZE,
    device="cpu",
    amp: str = DEFAULT_AMP,
    cache: str | os.PathLike | None = None,
    progress: Callable[[int], None] | None = None,
) -> Embeddings:
    """Embed every image of a `.bin` with an `EmbeddingModel` (`facever.embedding.loading`).

    Images are fitted to the model's input with the crop policy (`fit_to_input`: centre crop to its
    aspect ratio, then resize) and go through the one forward loop (`embed_pixels`): same
    normalisation, flip fusion and AMP rule as `embed_images`. Keys are the image names
    (`image_names`), so the result matches `bin_protocol`. With `cache` (a folder), rows are kept in
    and reused from the one embedding cache (`facever.embedding.cache`), keyed by each image's bytes
    and the settings; `metadata["reused"]` counts the reused rows.
    """
    import torch

    from facever.core.devices import resolve_device
    from facever.core.checksums import content_key
    from facever.embedding.cache import EmbeddingCache, cache_settings
    from facever.embedding.extract import model_amp

    size = tuple(int(v) for v in model.input_size)
    fitted = BinImages(images.bins, source=images.source, size=size)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    use_amp = model_amp(model, amp, dev)
    store = found = None
    keys = [content_key(b) for b in images.bins] if cache is not None else []
    if cache is not None:
        store = EmbeddingCache(cache, cache_settings(model, flip=flip, amp=use_amp, device_type=dev.type))
        found = store.lookup(set(keys))
    todo = [i for i in range(len(fitted)) if found is None or keys[i] not in found.rows]
    if progress is not None and len(fitted) - len(todo):
        progress(len(fitted) - len(todo))

    def batches():
        for start in range(0, len(todo), batch_size):
            yield np.stack([fitted[i] for i in todo[start:start + batch_size]])

    settings = {}
    fresh = np.zeros((0, 1), np.float32)
    if todo:
        # Batch norms folded by the size of the whole set, as a run without the cache would.
        fresh, settings = embed_pixels(model, batches(), flip=flip, device=dev, amp=use_amp,
                                       fuse_bn=len(fitted) >= FUSE_MIN_IMAGES, progress=progress)
        if store is not None:
            shape = list(BinImages(images.bins[:1])[0].shape[:2])
            store.add([keys[i] for i in todo], fresh, paths=[fitted.names[i] for i in todo],
                      mtimes=[0] * len(todo), shapes=[shape] * len(todo))
    rows = {i: fresh[k] for k, i in enumerate(todo)}
    if found is not None:
        rows.update({i: found.rows[keys[i]] for i in range(len(fitted)) if i not in rows})
    source_shape = list(BinImages(images.bins[:1])[0].shape[:2]) if len(images) else []
    metadata = {
        **(model.metadata() if hasattr(model, "metadata") else {}),
        "flip": flip, "amp": use_amp, "device": str(dev), "crop_policy": CROP_POLICY,
        **settings,
        "crop_size": list(size),
        "bin_file": images.source,
        "source_image_size": source_shape,
        "fit": "centre crop to the input's aspect ratio, then resize",
        "reused": len(fitted) - len(todo),
        "cache": str(store.folder) if store is not None else None,
    }
    return Embeddings(list(fitted.names), np.stack([rows[i] for i in range(len(fitted))]), metadata=metadata)

