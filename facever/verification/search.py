"""1:N search: the k gallery templates most similar to each probe, exactly.

Gallery and probes are L2-normalised rows (float32), so the similarity is the inner product = cosine.
Two backends give the same answer (the tests check it):

- `numpy`: probes in blocks of `probe_block` against the gallery in blocks of `gallery_block` (one
  matrix product each), keeping a running top-k per probe, so memory stays at one block of scores
  whatever the gallery size (1M x 512 float32 is 2 GB; its scores for 1,024 probes would be 4 GB; a
  block of 1,024 x 8,192 is 32 MB, and the product, not the top-k, then takes the time);
- `faiss`: FAISS's exact inner-product index (`IndexFlatIP`), the optional `facever[faiss]` extra.

Order: by decreasing score; equal scores by increasing gallery row, in both backends. (Identical
templates in different blocks can score a last bit apart: the products' summation order differs.)
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from facever.core.errors import FaceverError
from facever.core.settings import SEARCH_BACKENDS

PROBE_BLOCK = 1024
GALLERY_BLOCK = 8192

FAISS_HINT = "FAISS search needs faiss-cpu: pip install 'facever[faiss]'"


def _check(gallery: np.ndarray, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    gallery = np.ascontiguousarray(gallery, dtype=np.float32)
    probes = np.ascontiguousarray(probes, dtype=np.float32)
    if gallery.ndim != 2 or probes.ndim != 2 or gallery.shape[1] != probes.shape[1]:
        raise ValueError(f"expected G x D gallery and P x D probes, got {gallery.shape} and {probes.shape}")
    if gallery.shape[0] == 0:
        raise ValueError("the gallery is empty")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return gallery, probes, min(int(k), gallery.shape[0])


def _sorted_top(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of the small `scores` (P x M, gallery rows `rows`), the k best by (score desc, row asc)."""
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


# Chunks per row for the candidate bound of `_block_top`: the k-th largest of the chunks' maxima.
_CHUNKS = 64


def _block_top(sims: np.ndarray, k: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row of a block of scores (P x M), with gallery rows `offset + column`.

    A full partition of every row costs more than the matrix product; instead, each row's maximum over
    each of `_CHUNKS` column chunks is taken, and the k-th largest of those maxima is a score that at
    least k entries reach (k different chunks). Only the entries at or above it, usually a few more than
    k, are sorted. Ties at the bound are all kept, so the row rule for ties holds exactly.
    """
    n_p, m = sims.shape
    cols = np.arange(offset, offset + m, dtype=np.int64)
    if m <= max(k, _CHUNKS):
        return _sorted_top(sims, np.broadcast_to(cols, sims.shape), k)
    width = m // _CHUNKS
    maxima = sims[:, :width * _CHUNKS].reshape(n_p, _CHUNKS, width).max(axis=2)
    bound = np.partition(maxima, _CHUNKS - k, axis=1)[:, _CHUNKS - k:_CHUNKS - k + 1]
    r, c = np.nonzero(sims >= bound)
    vals = sims[r, c]
    order = np.lexsort((c, -vals, r))  # by probe, then score desc, then column
    r, c, vals = r[order], c[order], vals[order]
    first = np.searchsorted(r, np.arange(n_p))
    take = first[:, None] + np.arange(k)  # every row has at least k candidates
    return vals[take], cols[c[take]]


def numpy_top_k(gallery: np.ndarray, probes: np.ndarray, k: int, *, probe_block: int = PROBE_BLOCK,
                gallery_block: int = GALLERY_BLOCK, progress: Callable[[int], None] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """`(scores, rows)`: P x k float32 similarities and int64 gallery rows, best first (module doc)."""
    gallery, probes, k = _check(gallery, probes, k)
    n_p, n_g = probes.shape[0], gallery.shape[0]
    out_s = np.empty((n_p, k), dtype=np.float32)
    out_r = np.empty((n_p, k), dtype=np.int64)
    for p0 in range(0, n_p, probe_block):
        block = probes[p0:p0 + probe_block]
        best_s = np.full((block.shape[0], 0), -np.inf, dtype=np.float32)
        best_r = np.zeros((block.shape[0], 0), dtype=np.int64)
        for g0 in range(0, n_g, gallery_block):
            s, r = _block_top(block @ gallery[g0:g0 + gallery_block].T, k, g0)
            best_s, best_r = _sorted_top(np.concatenate([best_s, s], axis=1), np.concatenate([best_r, r], axis=1), k)
        out_s[p0:p0 + block.shape[0]] = best_s
        out_r[p0:p0 + block.shape[0]] = best_r
        if progress is not None:
            progress(block.shape[0])
    return out_s, out_r


def import_faiss():
    """The faiss module, or a FaceverError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise FaceverError(FAISS_HINT) from None
    return faiss


class FaissIndex:
    """An exact FAISS inner-product index over a gallery, built once and searched many times."""

    def __init__(self, gallery: np.ndarray):
        faiss = import_faiss()
        gallery = np.ascontiguousarray(gallery, dtype=np.float32)
        if gallery.ndim != 2 or gallery.shape[0] == 0:
            raise ValueError(f"expected a non-empty G x D gallery, got shape {gallery.shape}")
        self.index = faiss.IndexFlatIP(gallery.shape[1])
        self.index.add(gallery)
        self.size = gallery.shape[0]

    def search(self, probes: np.ndarray, k: int, *, probe_block: int = PROBE_BLOCK,
               progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        probes = np.ascontiguousarray(probes, dtype=np.float32)
        k = min(int(k), self.size)
        out_s = np.empty((probes.shape[0], k), dtype=np.float32)
        out_r = np.empty((probes.shape[0], k), dtype=np.int64)
        for p0 in range(0, probes.shape[0], probe_block):
            s, r = self.index.search(probes[p0:p0 + probe_block], k)
            # FAISS's order among equal scores is its heap's; restate the module's rule.
            s, r = _sorted_top(s, r.astype(np.int64), k)
            out_s[p0:p0 + len(s)], out_r[p0:p0 + len(s)] = s, r
            if progress is not None:
                progress(len(s))
        return out_s, out_r


def top_k(gallery: np.ndarray, probes: np.ndarray, k: int, *, backend: str = "numpy",
          progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k best gallery rows of every probe with `backend` (`SEARCH_BACKENDS`); see `numpy_top_k`."""
    if backend == "numpy":
        return numpy_top_k(gallery, probes, k, progress=progress)
    if backend == "faiss":
        gallery, probes, k = _check(gallery, probes, k)
        return FaissIndex(gallery).search(probes, k, progress=progress)
    raise ValueError(f"unknown search backend {backend!r}; known: {', '.join(SEARCH_BACKENDS)}")


def open_set_fpir_bound(far_bound: float, gallery_size: int) -> float:
    """An upper bound on the chance that a probe of someone NOT in the gallery is matched to somebody:
    P(any of G impostor scores > t) <= G x P(one impostor score > t) (the union bound; it needs no
    independence between the G comparisons). Capped at 1."""
    return min(1.0, float(far_bound) * int(gallery_size))
