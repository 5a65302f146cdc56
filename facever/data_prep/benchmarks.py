"""Every benchmark by name: read its protocol, and get one model's embeddings for it.

`facever ensemble --protocol lfw|fglfw|calfw|cplfw|ytf|bin` goes through here, so a new benchmark needs
one entry, not a new ensemble command. What `--pairs` means per benchmark:

| name | `path` (the protocol file) | items | data (for a model) |
|---|---|---|---|
| lfw | pairs.txt | `Name/Name_0001.jpg` | LFW image folder |
| fglfw | pair_FGLFW.txt | `Name/Name_0001.jpg` | LFW image folder |
| calfw, cplfw | pairs_CALFW.txt, pairs_CPLFW.txt | `Name_0001.jpg` | `aligned images/` |
| ytf | splits.txt | video ids `Name/video` | YTF root (aligned_images_DB/ or frame_images_DB/) |
| bin | FILE.bin | image index `000000` | the .bin itself |
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from facever.data_prep.protocol import PairProtocol
from facever.embeddings_file import Embeddings, load_embeddings
from facever.errors import FaceverError

BENCHMARKS = ("lfw", "fglfw", "calfw", "cplfw", "ytf", "bin")


def read_benchmark(name: str, path: str | Path, *, ext: str | None = None) -> PairProtocol:
    """The `PairProtocol` of benchmark `name` read from its protocol file `path`.

    `ext` (image benchmarks only): LFW appends it to `Name_0001` (default .jpg); the FGLFW/CALFW/CPLFW
    readers replace the extension written in the list with it (default: keep the list's).
    """
    path = Path(path)
    if name == "lfw":
        from facever.data_prep.lfw import read_lfw_pairs

        return read_lfw_pairs(path, ext=ext or ".jpg")
    if name in ("fglfw", "calfw", "cplfw"):
        from facever.data_prep.fglfw import read_variant_pairs

        return read_variant_pairs(path, protocol=name, ext=ext)
    if name == "ytf":
        from facever.data_prep.ytf import read_ytf_splits

        return read_ytf_splits(path)
    if name == "bin":
        from facever.data_prep.insightface_bin import bin_protocol, load_bin

        _, issame = load_bin(path)
        return bin_protocol(issame, name=path.name, source=path)
    raise FaceverError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")


def for_protocol(name: str, protocol: PairProtocol, embeddings: Embeddings, *, frames: int | None = None) -> Embeddings:
    """Embeddings keyed by the protocol's items: YTF frame embeddings (`Name/video/frame.jpg`) are turned
    into video embeddings (`video_embeddings`, all frames or `frames` sampled); anything else is returned
    as it is."""
    if name != "ytf":
        return embeddings
    from facever.data_prep.ytf import frames_from_embeddings, video_embeddings

    items = protocol.items()
    index = embeddings.index()
    if all(v in index for v in items):
        return embeddings  # already one embedding per video
    videos = video_embeddings(embeddings, items, frames_from_embeddings(embeddings, items), frames=frames)
    videos.metadata["frame_embeddings_metadata"] = embeddings.metadata
    return videos


def is_embeddings_file(source: str | Path) -> bool:
    return str(source).endswith(".npz") and Path(source).is_file()


def benchmark_embeddings(
    name: str,
    protocol: PairProtocol,
    source: str,
    *,
    data: str | Path | None = None,
    cache_dir: str | Path | None = None,
    frames: int | None = None,
    flip: str = "none",
    batch_size: int = 64,
    device="cpu",
    progress: Callable[[int], None] | None = None,
) -> Embeddings:
    """One model's embeddings for `protocol`: `source` is an embeddings file (.npz, loaded and, for YTF,
    aggregated per video) or a model (`load_embedding_model` spec) run on `data` (see the module table;
    for `bin` the .bin the protocol was read from). YTF frame embeddings are cached in `cache_dir`.
    """
    if is_embeddings_file(source):
        return for_protocol(name, protocol, load_embeddings(source), frames=frames)
    from facever.embedding.models import load_embedding_model

    model = load_embedding_model(source, device=device)
    if name == "bin":
        from facever.data_prep.insightface_bin import BinImages, embed_bin_images, load_bin

        bin_path = Path(data) if data is not None else protocol.source
        bins, _ = load_bin(bin_path)
        return embed_bin_images(model, BinImages(bins, source=bin_path), flip=flip, batch_size=batch_size,
                                device=device, progress=progress)
    if data is None:
        raise FaceverError(f"{source} is a model: give the {'YTF root' if name == 'ytf' else 'image folder'} to embed")
    if name == "ytf":
        from facever.data_prep.ytf import embed_videos, find_video_tree

        videos, _ = embed_videos(model, find_video_tree(data), protocol.items(), frames=frames, cache_dir=cache_dir,
                                 flip=flip, batch_size=batch_size, device=device, progress=progress)
        return videos
    from facever.embedding.extract import embed_images

    emb, _ = embed_images(model, data, protocol.items(), flip=flip, batch_size=batch_size, device=device,
                          progress=progress)
    return emb
