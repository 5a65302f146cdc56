"""InsightFace verification `.bin` files (lfw.bin, cfp_fp.bin, agedb_30.bin, calfw.bin, cplfw.bin).

A `.bin` is a pickle of `(bins, issame_list)`: `bins` holds the encoded images (JPEG/PNG bytes), two per
pair, interleaved; `issame_list` one bool per pair. Unpickling runs whatever callable the file names,
so a plain `pickle.load` on a downloaded `.bin` is code execution. `load_bin` uses an unpickler whose
`find_class` refuses every global: only the opcodes that build lists, tuples, bytes, bools (and other
plain builtins, rejected afterwards by the structure check) can run, and any object, function or
`REDUCE` (all of which need a global) stops the load before anything is called.

Protocol: 10 folds of contiguous pairs, as insightface evaluates them (sklearn `KFold(10)` without
shuffling: the first `n % 10` folds get one pair more). Images are named by their index in the file,
`"000000"`, `"000001"`, ...; pair k is images 2k and 2k+1.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from facever.core.images import decode_image_bytes_rgb
from facever.core.crop import fit_to_input
from facever.protocols.pair_protocol import PairProtocol
from facever.core.errors import FaceverError, InputFileError

ALLOWED = "only lists, tuples, bytes and bools are allowed"


class _RefusedGlobal(Exception):
    def __init__(self, what: str):
        self.what = what


def _latin1_bytes(text, encoding="latin1"):
    """What `_codecs.encode` does for bytes in a Python 3 pickle of protocol 0-2: text to bytes, no more."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _RefusedGlobal(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin-1")


class _DataOnlyUnpickler(pickle.Unpickler):
    """Refuses every global (classes, functions): nothing in the file can be called or instantiated.

    The one exception is how Python 3 writes *bytes* with pickle protocols 0-2, `_codecs.encode(str,
    "latin1")`: it is answered by a stand-in that only turns text into bytes.
    """

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        raise _RefusedGlobal(f"{module}.{name}")

    def persistent_load(self, pid):
        raise _RefusedGlobal(f"persistent id {pid!r}")


def _unpickle_data(data: bytes, path: Path):
    try:
        return _DataOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise FaceverError(
            f"refused: {path} contains a pickled object of type {exc.what} (possible code); {ALLOWED}"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            OverflowError, MemoryError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not a valid InsightFace .bin pickle ({type(exc).__name__}: {exc})") from None


def load_bin(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """Read a `.bin` safely: (encoded images, bool array issame with one entry per pair).

    Raises `FaceverError` ("refused: ...") for a file that pickles any object other than lists, tuples,
    bytes and bools, and `InputFileError` for a malformed one.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    obj = _unpickle_data(path.read_bytes(), path)
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise InputFileError(path, f"expected a pickled (bins, issame_list) pair, got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple)):
        raise InputFileError(path, "expected `bins` and `issame_list` to be lists")
    for i, b in enumerate(bins):
        if not isinstance(b, (bytes, bytearray)):
            raise InputFileError(path, f"image {i} is a {type(b).__name__}, expected encoded image bytes; {ALLOWED}")
    for i, s in enumerate(issame):
        # ints 0/1 are how some writers store the flag; anything else is not a label.
        if not isinstance(s, bool) and not (isinstance(s, int) and s in (0, 1)):
            raise InputFileError(path, f"issame_list[{i}] is {s!r}, expected a bool; {ALLOWED}")
    if len(issame) == 0:
        raise InputFileError(path, "no pairs in the file")
    if len(bins) != 2 * len(issame):
        raise InputFileError(path, f"{len(bins)} images for {len(issame)} pairs (expected two images per pair)")
    return [bytes(b) for b in bins], np.array([bool(s) for s in issame], dtype=bool)


def write_bin(path: str | Path, images: Sequence[bytes], issame: Sequence[bool]) -> Path:
    """Write a `.bin` in InsightFace's format (protocol 4 pickle of (list of bytes, list of bools))."""
    from facever.core.atomic import write_bytes_atomic

    images = [bytes(b) for b in images]
    issame = [bool(s) for s in issame]
    if len(images) != 2 * len(issame):
        raise ValueError(f"{len(images)} images for {len(issame)} pairs")
    write_bytes_atomic(path, pickle.dumps((images, issame), protocol=4))
    return Path(path)


def image_names(n_images: int) -> list[str]:
    """The names standing for a `.bin`'s images: their index, zero-padded (`"000000"`)."""
    return [f"{i:06d}" for i in range(n_images)]


def bin_folds(n_pairs: int, n_folds: int = 10) -> np.ndarray:
    """Fold of each pair: `n_folds` contiguous blocks, the first `n_pairs % n_folds` one pair longer."""
    if n_pairs < n_folds:
        raise ValueError(f"{n_pairs} pairs cannot make {n_folds} folds")
    sizes = np.full(n_folds, n_pairs // n_folds)
    sizes[: n_pairs % n_folds] += 1
    return np.repeat(np.arange(n_folds), sizes)


def bin_protocol(issame: np.ndarray, *, name: str = "bin", source: str | Path | None = None, n_folds: int = 10) -> PairProtocol:
    """The pairs of a `.bin`: pair k = images 2k and 2k+1 (named as in `image_names`)."""
    if len(issame) < n_folds:
        message = f"{len(issame)} pairs: the {n_folds}-fold protocol needs at least {n_folds}"
        raise InputFileError(source, message) if source is not None else FaceverError(message)
    names = image_names(2 * len(issame))
    return PairProtocol(
        name, names[0::2], names[1::2], np.asarray(issame, dtype=bool), bin_folds(len(issame), n_folds),
        source=Path(source) if source is not None else None,
    )


class BinImages:
    """The images of a `.bin`, decoded to RGB on demand (and fitted to `size` = (h, w) when given).

    Behaves as a read-only sequence of `H x W x 3` uint8 arrays; `names` are the protocol's item names.
    """

    def __init__(self, bins: Sequence[bytes], *, source: str | Path = "<bin>", size: tuple[int, int] | None = None):
        self.bins = list(bins)
        self.source = str(source)
        self.size = tuple(size) if size is not None else None
        self.names = image_names(len(self.bins))

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, i: int) -> np.ndarray:
        rgb = decode_image_bytes_rgb(self.bins[i], name=f"{self.source} image {i}")
        return fit_to_input(rgb, self.size) if self.size is not None else rgb

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def batches(self, batch_size: int) -> Iterator[tuple[list[str], np.ndarray]]:
        """(names, N x H x W x 3 uint8) batches in file order; needs `size` (all images the same shape)."""
        if self.size is None:
            raise ValueError("batches() needs a target size")
        for start in range(0, len(self), batch_size):
            idx = range(start, min(start + batch_size, len(self)))
            yield [self.names[i] for i in idx], np.stack([self[i] for i in idx])
