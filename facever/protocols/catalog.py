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

from facever.protocols.pair_protocol import PairProtocol
from facever.core.embeddings_file import Embeddings
from facever.core.errors import FaceverError

from facever.core.settings import PAIR_BENCHMARKS as BENCHMARKS


def read_benchmark(name: str, path: str | Path, *, ext: str | None = None) -> PairProtocol:
    """The `PairProtocol` of benchmark `name` read from its protocol file `path`.

    `ext` (image benchmarks only): LFW appends it to `Name_0001` (default .jpg); the FGLFW/CALFW/CPLFW
    readers replace the extension written in the list with it (default: keep the list's).
    """
    path = Path(path)
    if name == "lfw":
        from facever.protocols.lfw import read_lfw_pairs

        return read_lfw_pairs(path, ext=ext or ".jpg")
    if name in ("fglfw", "calfw", "cplfw"):
        from facever.protocols.fglfw import read_variant_pairs

        return read_variant_pairs(path, protocol=name, ext=ext)
    if name == "ytf":
        from facever.protocols.ytf import read_ytf_splits

        return read_ytf_splits(path)
    if name == "bin":
        from facever.protocols.insightface_bin import bin_protocol, load_bin

        _, issame = load_bin(path)
        return bin_protocol(issame, name=path.name, source=path)
    raise FaceverError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")


def for_protocol(name: str, protocol: PairProtocol, embeddings: Embeddings, *, frames: int | None = None) -> Embeddings:
    """Embeddings keyed by the protocol's items: YTF frame embeddings (`Name/video/frame.jpg`) are turned
    into video embeddings (`video_embeddings`, all frames or `frames` sampled); anything else is returned
    as it is."""
    if name != "ytf":
        return embeddings
    from facever.protocols.ytf import frames_from_embeddings, video_embeddings

    items = protocol.items()
    index = embeddings.index()
    if all(v in index for v in items):
        return embeddings  # already one embedding per video
    videos = video_embeddings(embeddings, items, frames_from_embeddings(embeddings, items), frames=frames)
    videos.metadata["frame_embeddings_metadata"] = embeddings.metadata
    return videos


def is_embeddings_file(source: str | Path) -> bool:
    return str(source).endswith(".npz") and Path(source).is_file()
