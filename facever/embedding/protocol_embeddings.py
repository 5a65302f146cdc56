"""One model's embeddings for any benchmark protocol (see `facever.protocols.catalog` for the table)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from facever.core.embeddings_file import Embeddings, load_embeddings
from facever.core.errors import FaceverError
from facever.core.locks import folder_lock
from facever.embedding.bin_images import embed_bin_images
from facever.embedding.extract import embed_images
from facever.embedding.loading import load_embedding_model
from facever.embedding.videos import embed_videos
from facever.protocols.catalog import for_protocol, is_embeddings_file
from facever.protocols.insightface_bin import BinImages, load_bin
from facever.protocols.pair_protocol import PairProtocol
from facever.protocols.ytf import find_video_tree
from facever.core.settings import DEFAULT_AMP, DEFAULT_FLIP, EMBED_BATCH_SIZE


def benchmark_embeddings(
    name: str,
    protocol: PairProtocol,
    source: str,
    *,
    data: str | Path | None = None,
    cache_dir: str | Path | None = None,
    frames: int | None = None,
    flip: str = DEFAULT_FLIP,
    batch_size: int = EMBED_BATCH_SIZE,
    device="cpu",
    amp: str = DEFAULT_AMP,
    progress: Callable[[int], None] | None = None,
) -> Embeddings:
    """One model's embeddings for `protocol`: `source` is an embeddings file (.npz, loaded and, for YTF,
    aggregated per video) or a model (`load_embedding_model` spec) run on `data` (see the module table;
    for `bin` the .bin the protocol was read from). YTF frame embeddings are cached in `cache_dir`.
    """
    if is_embeddings_file(source):
        return for_protocol(name, protocol, load_embeddings(source), frames=frames)
    model = load_embedding_model(source, device=device)
    if name == "bin":

        bin_path = Path(data) if data is not None else protocol.source
        bins, _ = load_bin(bin_path)
        return embed_bin_images(model, BinImages(bins, source=bin_path), flip=flip, batch_size=batch_size,
                                device=device, amp=amp, progress=progress)
    if data is None:
        raise FaceverError(f"{source} is a model: give the {'YTF root' if name == 'ytf' else 'image folder'} to embed")
    if name == "ytf":
        videos, _ = embed_videos(model, find_video_tree(data), protocol.items(), frames=frames, cache_dir=cache_dir,
                                 flip=flip, batch_size=batch_size, device=device, amp=amp, progress=progress)
        return videos
    emb, _ = embed_images(model, data, protocol.items(), flip=flip, batch_size=batch_size, device=device, amp=amp,
                          progress=progress)
    return emb



def ijb_crops(meta, landmarks, size: tuple[int, int], crops_dir: str | Path, *,
              progress: Callable[[int], None] | None = None):
    """Align every image of an IJB set (`facever.protocols.ijb.IJBMeta`) from its five given points onto
    the template of `size` (the model's input), as `facever align` warps (`data_prep.landmark_crops`).
    Resumable: crops already in `crops_dir` are kept. Returns the `CropSummary`."""
    from facever.data_prep.landmark_crops import crop_from_landmarks

    names = meta.image_names()
    first_row: dict[str, int] = {}
    for i, n in enumerate(meta.media.names):
        first_row.setdefault(n, i)
    where = [meta.media.where(first_row[n]) for n in names]
    rows = landmarks.rows(names, where=where.__getitem__)
    # A crops folder is an output folder like any other: new, empty, or facever's own crops.
    with folder_lock(crops_dir, kind="ijb-crops"):
        return crop_from_landmarks(meta.images_dir, names, landmarks.points[rows], crops_dir, tuple(size),
                                   where=where, progress=progress)


def ijb_embeddings(
    model,
    meta,
    crops_dir: str | Path,
    *,
    cache: str | Path | None,
    flip: str = DEFAULT_FLIP,
    batch_size: int = EMBED_BATCH_SIZE,
    device="cpu",
    amp: str = DEFAULT_AMP,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
):
    """Per-image embeddings of an IJB set's aligned crops (`ijb_crops`), keyed by the meta image names.

    Through the project's one cached loop (`embed_items_cached`: resumes from `cache`, reuses it while
    the model and settings match). Flip `concat` (default) keeps f(x) and f(mirror x), so every test
    mode can be scored from the one file. Returns `(embeddings, rows reused from the cache)`.
    """
    from facever.embedding.cache import embed_items_cached

    emb, _bad, reused = embed_items_cached(model, crops_dir, meta.image_names(), cache=cache, flip=flip,
                                           batch_size=batch_size, device=device, amp=amp, progress=progress,
                                           on_plan=on_plan)
    h, w = (int(v) for v in model.input_size)
    emb.metadata.update({"ijb_set": meta.set_name, "alignment": f"given 5 points onto the {h}x{w} template "
                         "(Umeyama similarity, bilinear warp, as facever align)"})
    return emb, reused
