"""Every pair benchmark by name: read its protocol from its file.

The evaluation workflow (`facever.workflows.evaluate.open_benchmark`, behind every eval-* command and
`facever ensemble --protocol NAME`) reads protocols here, so a new benchmark needs one entry here and
one in the workflow, not a new command. What the protocol file is per benchmark:

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
from facever.core.errors import FaceverError

from facever.core.settings import PAIR_BENCHMARKS as BENCHMARKS


def read_benchmark(name: str, path: str | Path, *, ext: str | None = None,
                   pairs_per_fold: int | None = None) -> PairProtocol:
    """The `PairProtocol` of benchmark `name` read from its protocol file `path`.

    `ext` (image benchmarks only): LFW appends it to `Name_0001` (default .jpg); the FGLFW/CALFW/CPLFW
    readers replace the extension written in the list with it (default: keep the list's).
    `pairs_per_fold`: FGLFW's consecutive pairs per fold (default 600).
    """
    path = Path(path)
    if name == "lfw":
        from facever.protocols.lfw import read_lfw_pairs

        return read_lfw_pairs(path, ext=ext or ".jpg")
    if name in ("fglfw", "calfw", "cplfw"):
        from facever.protocols.fglfw import read_variant_pairs

        extra = {"pairs_per_fold": pairs_per_fold} if name == "fglfw" and pairs_per_fold is not None else {}
        return read_variant_pairs(path, protocol=name, ext=ext, **extra)
    if name == "ytf":
        from facever.protocols.ytf import read_ytf_splits

        return read_ytf_splits(path)
    if name == "bin":
        from facever.protocols.insightface_bin import bin_protocol, load_bin

        _, issame = load_bin(path)
        return bin_protocol(issame, name=path.name, source=path)
    raise FaceverError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")


def is_embeddings_file(source: str | Path) -> bool:
    return str(source).endswith(".npz") and Path(source).is_file()
