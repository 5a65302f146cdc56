"""Embedding the images of an InsightFace `.bin` with any embedding model."""

from __future__ import annotations

from typing import Callable

from facever.core.embeddings_file import Embeddings
from facever.embedding.extract import embed_pixels
from facever.protocols.insightface_bin import BinImages


def embed_bin_images(
    model,
    images: BinImages,
    *,
    flip: str = "none",
    batch_size: int = 64,
    device="cpu",
    amp: bool | None = None,
    progress: Callable[[int], None] | None = None,
) -> Embeddings:
    """Embed every image of a `.bin` with an `EmbeddingModel` (`facever.embedding.loading`).

    Images are fitted to the model's input with the crop policy (`fit_to_input`: centre crop to its
    aspect ratio, then resize) and go through the one forward loop (`embed_pixels`): same
    normalisation, flip fusion and AMP rule as `embed_images`. Keys are the image names
    (`image_names`), so the result matches `bin_protocol`.
    """
    size = tuple(int(v) for v in model.input_size)
    fitted = BinImages(images.bins, source=images.source, size=size)
    names: list[str] = []

    def batches():
        for batch_names, pixels in fitted.batches(batch_size):
            names.extend(batch_names)
            yield pixels

    rows, settings = embed_pixels(model, batches(), flip=flip, device=device, amp=amp, count=len(fitted),
                                  progress=progress)
    source_shape = list(BinImages(images.bins[:1])[0].shape[:2]) if len(images) else []
    metadata = {
        **(model.metadata() if hasattr(model, "metadata") else {}),
        **settings,
        "crop_size": list(size),
        "bin_file": images.source,
        "source_image_size": source_shape,
        "fit": "centre crop to the input's aspect ratio, then resize",
    }
    return Embeddings(names, rows, metadata=metadata)
