"""Embedding the images of an InsightFace `.bin` with any embedding model."""

from __future__ import annotations

from typing import Callable

import numpy as np

from facever.core.devices import resolve_device
from facever.core.embeddings_file import Embeddings
from facever.embedding.extract import forward_with_flip
from facever.embedding.preprocess import normalize_batch
from facever.protocols.insightface_bin import BinImages


def embed_bin_images(
    model,
    images: BinImages,
    *,
    flip: str = "none",
    batch_size: int = 64,
    device="cpu",
    progress: Callable[[int], None] | None = None,
) -> Embeddings:
    """Embed every image of a `.bin` with an `EmbeddingModel` (`facever.embedding.loading`).

    Images are fitted to the model's input (`fit_to_input`: centre crop to its aspect ratio, then
    resize) and fed as `embed_images` feeds files: same normalisation, flip fusion and bf16 autocast on
    CUDA. Keys are the image names (`image_names`), so the result matches `bin_protocol`.
    """
    import torch

    size = tuple(int(v) for v in model.input_size)
    fitted = BinImages(images.bins, source=images.source, size=size)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    module = model.module.eval().to(dev)
    use_amp = dev.type == "cuda"
    names: list[str] = []
    rows = []
    with torch.inference_mode(), torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
        for batch_names, pixels in fitted.batches(batch_size):
            x = normalize_batch(torch.from_numpy(pixels).to(dev), mean=model.mean, std=model.std, color=model.color)
            rows.append(forward_with_flip(module, x.contiguous(), flip).float().cpu().numpy())
            names.extend(batch_names)
            if progress is not None:
                progress(len(batch_names))
    source_shape = list(BinImages(images.bins[:1])[0].shape[:2]) if len(images) else []
    metadata = {
        **(model.metadata() if hasattr(model, "metadata") else {}),
        "flip": flip,
        "crop_size": list(size),
        "device": str(dev),
        "amp": "bf16" if use_amp else "off",
        "bin_file": images.source,
        "source_image_size": source_shape,
        "fit": "centre crop to the input's aspect ratio, then resize",
    }
    return Embeddings(names, np.concatenate(rows).astype(np.float32), metadata=metadata)
