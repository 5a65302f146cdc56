"""IJB-B / IJB-C: image features -> template features -> 1:1 pair scores and 1:N search metrics.

Pure functions on arrays; `evaluate_ijb` joins an `IJBMeta` (the reader's output) with an
`Embeddings` file. Conventions, all as in insightface's `recognition/_evaluation_/ijb` scripts
(the reference the published IJB numbers come from), each with its test mode spelled out:

- **Image feature**, test mode `F? N? D?`:
  `F1` f(x) + f(mirror x) (from a file embedded with flip `concat`: the two halves summed), `F0` f(x);
  then `N0` divides by the L2 norm, `N1` keeps it (a norm-aware model's quality signal);
  then `D1` multiplies by the detector's faceness score of the image, `D0` does not.
  insightface's script defaults to F1 N1 D1; facever's default is F1 N0 D0: a property of the model
  alone, not of the landmark detector's confidence nor of how a loss happens to scale norms.
- **Template feature**: within a template, the features of each media (a photo, or a video's frames)
  are averaged, the media features summed, and the sum L2-normalised.
- **Pair score**: the cosine of the two template features (their dot product).
- **TAR at FAR**, two definitions, both reported: `insightface` takes the ROC point whose FAR is the
  nearest to the target as insightface's script does (on the reversed ROC arrays, the first nearest:
  the highest TAR of a vertical step, the higher of two equally near FARs), which may lie *above* the
  target; `conservative` takes the highest TAR among points whose FAR does not exceed the target.
  The ROC is `facever.verification.roc`'s (same iff score >= threshold, one point per distinct score);
  insightface's search runs over its corners only, as sklearn's `roc_curve` (which that script calls)
  drops the points in the middle of straight runs (`roc_with_corners`).
- **1:N** (NIST's open-set definitions, Grother & Ngan, NISTIR 8238): a probe is *mated* when its
  subject has a template in the gallery. Scores are gallery-subject level (a subject's score is its
  best template's). CMC rank-k = share of mated probes whose subject's score is among the k best
  (rank = 1 + number of subjects scoring strictly higher). FPIR(t) = share of non-mated probes whose
  best score is >= t; TPIR(t) = share of mated probes whose subject ranks first with score >= t. At a
  target FPIR f, t is the lowest threshold with FPIR(t) <= f: with n non-mated probes, at most
  floor(f n) of them are accepted (ties at the threshold are all rejected).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from facever.core.embeddings_file import Embeddings
from facever.core.errors import FaceverError, InputFileError
from facever.protocols.ijb import IJBMeta, Landmarks, SearchSet
from facever.verification.roc import auc as roc_auc
from facever.verification.roc import binary_counts, tar_at_far

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
FPIRS = (0.01, 0.1)
RANKS = (1, 5, 10)
from facever.core.settings import FLIP_MODES as FLIP_LAYOUTS  # how the file's rows were made


# ---------------------------------------------------------------------------------------------------
# Test modes and image features


@dataclass(frozen=True)
class TestMode:
    """insightface's test-mode switches: F (flip), N (keep the norm), D (detector score)."""

    __test__ = False  # not a pytest class

    flip: bool = True
    norm: bool = False
    detector: bool = False

    @property
    def label(self) -> str:
        return f"F{int(self.flip)} N{int(self.norm)} D{int(self.detector)}"

    @property
    def key(self) -> str:
        return self.label.replace(" ", "")

    @classmethod
    def parse(cls, text: str) -> "TestMode":
        """`F1N0D0`, `F1 N0 D0` or `f1,n0,d0` (any order, each letter once)."""
        found = re.findall(r"([FND])\s*([01])", str(text).upper())
        rest = re.sub(r"[FND]\s*[01]|[\s,]", "", str(text).upper())
        letters = [k for k, _ in found]
        if rest or sorted(letters) != ["D", "F", "N"]:
            raise ValueError(f"invalid test mode {text!r}: expected F0|F1, N0|N1 and D0|D1, such as F1N0D0")
        values = {k: v == "1" for k, v in found}
        return cls(flip=values["F"], norm=values["N"], detector=values["D"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "flip": "f(x) + f(mirror x)" if self.flip else "f(x) only",
            "norm": "image features keep their norm" if self.norm else "image features L2-normalised",
            "detector_score": "image features x faceness score" if self.detector else "not used",
        }


ALL_MODES = tuple(TestMode(f, n, d) for f in (True, False) for n in (False, True) for d in (False, True))


def parse_test_modes(text: str) -> list[TestMode]:
    """`F1N0D0`, a comma-separated list of modes (`F1N0D0,F1N1D1`, each kept once, in order), or `all` (the eight)."""
    if text.strip().lower() == "all":
        return list(ALL_MODES)
    modes: list[TestMode] = []
    for part in text.split(","):
        try:
            mode = TestMode.parse(part)
        except ValueError as exc:
            raise FaceverError(f"`mode`: {exc}", options=("mode",)) from None
        if mode not in modes:
            modes.append(mode)
    return modes


def image_features(
    raw: np.ndarray,
    *,
    mode: TestMode,
    flip_layout: str,
    faceness: np.ndarray | None = None,
) -> np.ndarray:
    """Per-image features for `mode` (module docstring), float32 N x D.

    Args:
        raw: N x E embeddings as stored: `concat` files hold [f(x), f(mirror x)] (E = 2D), `sum` files
            f(x) + f(mirror x), `none` files f(x).
        mode: the test mode.
        flip_layout: how `raw` was embedded (`none`, `concat` or `sum`).
        faceness: N detector scores, needed for D1.

    Raises ValueError when the file cannot give the mode (F1 from `none`, F0 from `sum`), for D1
    without scores, and for an image feature of norm zero or non-finite values under N0.
    """
    raw = np.asarray(raw)
    if raw.ndim != 2:
        raise ValueError(f"embeddings must be N x D, got shape {raw.shape}")
    if flip_layout not in FLIP_LAYOUTS:
        raise ValueError(f"unknown flip layout {flip_layout!r}; known: {', '.join(FLIP_LAYOUTS)}")
    if flip_layout == "concat":
        if raw.shape[1] % 2:
            raise ValueError(f"flip 'concat' embeddings need an even width, got {raw.shape[1]}")
        half = raw.shape[1] // 2
        feats = raw[:, :half] + raw[:, half:] if mode.flip else raw[:, :half]
    elif mode.flip and flip_layout == "none":
        raise ValueError("test mode F1 needs the mirrored images' embeddings: embed with flip 'concat' (or 'sum')")
    elif not mode.flip and flip_layout == "sum":
        raise ValueError("test mode F0 needs f(x) alone, but these embeddings are f(x) + f(mirror x) (flip 'sum')")
    else:
        feats = raw
    feats = np.array(feats, dtype=np.float32)  # a copy: the caller's array is never changed
    if not np.all(np.isfinite(feats)):
        raise ValueError("embeddings contain NaN or infinite values")
    if not mode.norm:
        norms = np.sqrt(np.vecdot(feats, feats))  # float32: 512 squares lose nothing a cosine can show
        if np.any(norms == 0):
            raise ValueError(f"{int(np.sum(norms == 0))} image features have norm zero (no direction)")
        feats /= norms[:, None].astype(np.float32)
    if mode.detector:
        if faceness is None:
            raise ValueError("test mode D1 needs the detector's faceness score of every image")
        faceness = np.asarray(faceness, dtype=np.float32)
        if faceness.shape != (feats.shape[0],):
            raise ValueError(f"expected {feats.shape[0]} faceness scores, got shape {faceness.shape}")
        feats *= faceness[:, None]
    return feats


# ---------------------------------------------------------------------------------------------------
# Templates


def template_features(
    features: np.ndarray, templates: np.ndarray, medias: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Media-averaged, summed, L2-normalised template features (module docstring).

    Args:
        features: N x D image features (one row per line of the template/media list).
        templates, medias: N integer ids; a media id counts within its template only.

    Returns:
        `(template_ids, feats)`: the sorted distinct template ids and one float32 unit row per id.
        A template whose sum is the zero vector keeps a zero row (its cosines are 0), as insightface's
        normalisation leaves it.
    """
    from scipy import sparse

    features = np.asarray(features, dtype=np.float32)
    templates = np.asarray(templates, dtype=np.int64)
    medias = np.asarray(medias, dtype=np.int64)
    n = features.shape[0]
    if features.ndim != 2 or templates.shape != (n,) or medias.shape != (n,):
        raise ValueError(f"expected N x D features and N template and media ids, got {features.shape}, "
                         f"{templates.shape} and {medias.shape}")
    if n == 0:
        raise ValueError("no image features to pool")
    # Group the rows by (template, media): each image weighs 1 / (images of its media), so a template's
    # sum of its media means is one row of a sparse (templates x images) matrix times the features.
    order = np.lexsort((medias, templates))
    t_sorted, m_sorted = templates[order], medias[order]
    new_media = np.r_[True, (t_sorted[1:] != t_sorted[:-1]) | (m_sorted[1:] != m_sorted[:-1])]
    media_of = np.cumsum(new_media) - 1
    media_counts = np.bincount(media_of)
    template_ids, template_of = np.unique(t_sorted, return_inverse=True)
    weights = np.empty(n, dtype=np.float32)
    weights[order] = 1.0 / media_counts[media_of]
    rows = np.empty(n, dtype=np.int64)
    rows[order] = template_of
    pool = sparse.csr_matrix((weights, (rows, np.arange(n))), shape=(template_ids.size, n))
    # float32 products (relative error ~1e-7: far below what a TAR can show) and no float64 copy of
    # all 469k features; the normalisation in float64.
    sums = np.asarray(pool @ features, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", sums, sums))
    feats = sums / np.where(norms > 0, norms, 1.0)[:, None]
    return template_ids, feats.astype(np.float32)


def template_rows(template_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Rows of `wanted` ids in the sorted `template_ids`; ValueError naming ids that have no template."""
    template_ids = np.asarray(template_ids)
    wanted = np.asarray(wanted, dtype=np.int64)
    lo, hi = int(template_ids[0]), int(template_ids[-1])
    if lo >= 0 and hi < 64 * template_ids.size + 1_000_000:
        # A table indexed by id: one gather per pair instead of a binary search (15.7M pairs: ~10x faster).
        table = np.full(hi + 2, -1, dtype=np.int64)
        table[template_ids] = np.arange(template_ids.size)
        rows = table[np.where((wanted >= 0) & (wanted <= hi), wanted, hi + 1)]  # table[hi + 1] is -1
        bad = rows < 0
        rows = np.maximum(rows, 0)
    else:
        rows = np.minimum(np.searchsorted(template_ids, wanted), len(template_ids) - 1)
        bad = template_ids[rows] != wanted
    if bad.any():
        missing = np.unique(wanted[bad])
        shown = ", ".join(str(int(t)) for t in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{len(missing)} template ids have no images: {shown}")
    return rows


# ---------------------------------------------------------------------------------------------------
# 1:1 scores

# Rows of the first template per block: the block's Gram matrix is at most BLOCK x (templates) floats
# (512 x 23k x 4 bytes = 47 MB for IJB-C), whatever the number of pairs.
BLOCK = 512
# A block's pairs are scored with one matrix product over (block rows) x (distinct second templates)
# when at least this share of that product is needed; otherwise pair by pair (gather two rows, dot).
# A BLAS product computes an entry ~50x faster than a gathered pair (measured in bench_ijb.py).
DENSE_SHARE = 1.0 / 64


def pair_scores(feats: np.ndarray, rows1: np.ndarray, rows2: np.ndarray, *, block: int = BLOCK) -> np.ndarray:
    """Dot products `feats[rows1[i]] . feats[rows2[i]]` (cosines of unit template features), float32.

    Fast for millions of pairs among thousands of templates, in bounded memory: pairs are bucketed by
    their first template in blocks of `block` templates; a block's scores come from one BLAS product
    of its templates with the second templates it meets (when dense enough, `DENSE_SHARE`), else from
    gathered rows. Every score is a float32 dot product of the same two rows either way.
    """
    feats = np.ascontiguousarray(feats, dtype=np.float32)
    rows1 = np.asarray(rows1, dtype=np.int64)
    rows2 = np.asarray(rows2, dtype=np.int64)
    if rows1.shape != rows2.shape or rows1.ndim != 1:
        raise ValueError(f"rows1 and rows2 must be 1-D of equal length, got {rows1.shape} and {rows2.shape}")
    out = np.empty(rows1.shape[0], dtype=np.float32)
    if not rows1.size:
        return out
    n_templates = feats.shape[0]
    n_blocks = (n_templates + block - 1) // block
    bucket = rows1 // block
    # Counting sort by block (a stable radix sort on small integers: linear time, not n log n).
    order = np.argsort(bucket.astype(np.uint16 if n_blocks < 65536 else np.int64), kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(n_blocks + 1))
    column_of = np.full(n_templates, -1, dtype=np.int64)
    for b in range(n_blocks):
        sel = order[bounds[b]:bounds[b + 1]]
        if not sel.size:
            continue
        r1, r2 = rows1[sel], rows2[sel]
        lo = b * block
        hi = min(lo + block, n_templates)
        seen = np.zeros(n_templates, dtype=bool)
        seen[r2] = True
        cols = np.flatnonzero(seen)
        if sel.size >= DENSE_SHARE * (hi - lo) * cols.size:
            column_of[cols] = np.arange(cols.size)
            gram = feats[lo:hi] @ feats[cols].T
            out[sel] = gram[r1 - lo, column_of[r2]]
        else:
            for s in range(0, sel.size, 4096):
                out[sel[s:s + 4096]] = np.vecdot(feats[r1[s:s + 4096]], feats[r2[s:s + 4096]])
    return out


# ---------------------------------------------------------------------------------------------------
# TAR at FAR


def roc_with_corners(scores: np.ndarray, labels: np.ndarray):
    """`(fpr, tpr, corners)`: `roc_curve`'s full curve and the mask of its corners.

    The corners are the points scikit-learn's `roc_curve` keeps by default (`drop_intermediate`: a
    point is dropped when both its false and true positive counts lie on a straight line with its
    neighbours'), found from the integer counts as sklearn does. insightface's script searches the
    nearest FAR among those points only, which changes the answer when that FAR falls inside a
    horizontal run of the curve.
    """
    fps, tps, _ = binary_counts(scores, labels)
    keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True] if fps.size > 2 else np.ones(fps.size, bool)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[True, keep]


def tar_at_nearest_far(fpr: np.ndarray, tpr: np.ndarray, far: float, *, corners: np.ndarray | None = None):
    """insightface's TAR@FAR (`ijb_11.py`, `arcface_torch/eval_ijbc.py`): `(tpr, fpr)` of the ROC point
    nearest `far`, found as the script finds it.

    The script reverses scikit-learn's ROC arrays (`np.flipud(fpr)`, `np.flipud(tpr)`: "select largest
    tpr at same fpr") and takes the first index of the smallest `abs(fpr - far)`. So among points at the
    nearest FAR (a vertical step of the curve) it gets the **highest** TAR, and of two FARs equally near
    the target, the higher one. `corners` (`roc_with_corners`) restricts the search to the points
    scikit-learn keeps, as in the script.
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    if corners is not None:
        fpr, tpr = fpr[corners], tpr[corners]
    fpr, tpr = fpr[::-1], tpr[::-1]
    i = int(np.argmin(np.abs(fpr - far)))
    return float(tpr[i]), float(fpr[i])


def tar_at_far_both(fpr: np.ndarray, tpr: np.ndarray, fars: Sequence[float] = FARS, *,
                    corners: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """Both definitions at every target FAR (module docstring), keyed by `f"{far:g}"`.

    `insightface[far]` = {"tar", "far"} (the FAR actually reached, possibly above the target), searched
    among `corners` (pass `roc_with_corners`'s mask to reproduce insightface's script exactly);
    `conservative[far]` = {"tar", "far"} (the FAR of the chosen point, never above the target).
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    tpr = np.asarray(tpr, dtype=np.float64)
    out: dict[str, dict[str, Any]] = {"insightface": {}, "conservative": {}}
    for far in fars:
        tar, reached = tar_at_nearest_far(fpr, tpr, far, corners=corners)
        out["insightface"][f"{far:g}"] = {"tar": tar, "far": reached}
        cons = tar_at_far(fpr, tpr, far)
        ok = (fpr <= far) & (tpr == cons)
        out["conservative"][f"{far:g}"] = {"tar": cons, "far": float(fpr[ok].min()) if ok.any() else 0.0}
    return out


def thin_roc(fpr: np.ndarray, tpr: np.ndarray, *, points: int = 400, min_far: float = 1e-7):
    """A few hundred points of a (possibly 15M-point) ROC for report.json and the plot, as a staircase.

    Keeps, for each of `points` log-spaced FARs, the last ROC point at or below it, plus both ends, and
    joins consecutive kept points by a horizontal then a vertical segment: drawn as a line, the thinned
    curve never lies above the true one and meets it at every kept point.
    """
    fpr = np.asarray(fpr)
    tpr = np.asarray(tpr)
    grid = np.logspace(math.log10(min_far), 0.0, points)
    idx = np.searchsorted(fpr, grid, side="right") - 1
    idx = np.unique(np.r_[0, idx[idx >= 0], fpr.size - 1])
    f, t = fpr[idx], tpr[idx]
    stair_f = np.repeat(f, 2)[1:]
    stair_t = np.repeat(t, 2)[:-1]
    return stair_f, stair_t


@dataclass
class IJBResult:
    """A 1:1 evaluation: raw pair scores, ROC, AUC, TAR at FAR by both definitions, counts, test mode."""

    protocol: str
    mode: TestMode
    scores: np.ndarray
    labels: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    auc: float
    tar_at_far: dict[str, dict[str, Any]]
    n_templates: int
    n_images: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_pairs(self) -> int:
        return int(self.labels.size)

    @property
    def n_same(self) -> int:
        return int(self.labels.sum())

    def to_dict(self) -> dict[str, Any]:
        from facever import __version__

        fpr, tpr = thin_roc(self.fpr, self.tpr)
        return {
            "protocol": self.protocol,
            "test_mode": self.mode.to_dict(),
            "auc": self.auc,
            "tar_at_far": self.tar_at_far,
            "tar_at_far_definitions": {
                "insightface": "TAR of the ROC point nearest the target FAR, first on the reversed ROC as insightface's "
                               "script: the highest TAR at that FAR (the FAR may exceed the target)",
                "conservative": "highest TAR among ROC points whose FAR does not exceed the target",
            },
            "pairs": {"total": self.n_pairs, "same": self.n_same, "different": self.n_pairs - self.n_same},
            "templates": self.n_templates,
            "images": self.n_images,
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "note": "thinned: a staircase through the last point below each of 400 log-spaced FARs"},
            "settings": dict(self.settings),
            "facever_version": __version__,
        }


def score_result(protocol: str, mode: TestMode, scores: np.ndarray, labels: np.ndarray, *, n_templates: int,
                 n_images: int, fars: Sequence[float] = FARS) -> IJBResult:
    """ROC, AUC and TAR@FAR (both definitions) of template-pair scores (same iff score >= threshold)."""
    fpr, tpr, corners = roc_with_corners(scores, labels)
    return IJBResult(
        protocol=protocol, mode=mode, scores=np.asarray(scores, dtype=np.float32), labels=np.asarray(labels, bool),
        fpr=fpr, tpr=tpr, auc=roc_auc(fpr, tpr), tar_at_far=tar_at_far_both(fpr, tpr, fars, corners=corners),
        n_templates=n_templates, n_images=n_images,
    )


# ---------------------------------------------------------------------------------------------------
# 1:N


def search_scores(probe_feats: np.ndarray, gallery_feats: np.ndarray, gallery_subjects: np.ndarray,
                  *, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Subject-level search scores: `(subjects, S)` with `S[p, j]` = the best cosine of probe p with a
    gallery template of `subjects[j]` (sorted distinct subject ids). Computed in probe blocks."""
    gallery_subjects = np.asarray(gallery_subjects, dtype=np.int64)
    order = np.argsort(gallery_subjects, kind="stable")
    subj_sorted = gallery_subjects[order]
    starts = np.flatnonzero(np.r_[True, subj_sorted[1:] != subj_sorted[:-1]])
    g = np.ascontiguousarray(np.asarray(gallery_feats, dtype=np.float32)[order])
    probe_feats = np.asarray(probe_feats, dtype=np.float32)
    out = np.empty((probe_feats.shape[0], starts.size), dtype=np.float32)
    for s in range(0, probe_feats.shape[0], block):
        sims = probe_feats[s:s + block] @ g.T
        out[s:s + block] = np.maximum.reduceat(sims, starts, axis=1) if starts.size < g.shape[0] else sims
    return subj_sorted[starts], out


@dataclass
class SearchResult:
    """One gallery's 1:N metrics (module docstring)."""

    gallery: str
    cmc: dict[int, float]
    tpir_at_fpir: dict[str, dict[str, float]]
    mated_probes: int
    non_mated_probes: int
    gallery_templates: int
    gallery_subjects: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "gallery": self.gallery,
            "cmc": {f"rank{k}": v for k, v in self.cmc.items()},
            "tpir_at_fpir": self.tpir_at_fpir,
            "probes": {"mated": self.mated_probes, "non_mated": self.non_mated_probes},
            "gallery_templates": self.gallery_templates,
            "gallery_subjects": self.gallery_subjects,
        }


def search_metrics(
    gallery: str,
    probe_feats: np.ndarray,
    probe_subjects: np.ndarray,
    gallery_feats: np.ndarray,
    gallery_subjects: np.ndarray,
    *,
    ranks: Sequence[int] = RANKS,
    fpirs: Sequence[float] = FPIRS,
) -> SearchResult:
    """CMC at `ranks` and TPIR at `fpirs` of probes searched in one gallery (module docstring).

    `tpir_at_fpir[f"{f:g}"]` = {"tpir", "fpir" (reached, <= target), "threshold"}. A metric with no
    probe to count (no mated or no non-mated probe) raises ValueError rather than returning 0.
    """
    probe_subjects = np.asarray(probe_subjects, dtype=np.int64)
    subjects, s = search_scores(probe_feats, gallery_feats, gallery_subjects)
    pos = np.searchsorted(subjects, probe_subjects)
    pos_c = np.minimum(pos, subjects.size - 1)
    mated = subjects[pos_c] == probe_subjects
    n_mated, n_non = int(mated.sum()), int((~mated).sum())
    if n_mated == 0:
        raise ValueError(f"gallery {gallery}: no probe has a subject in the gallery (CMC and TPIR undefined)")
    if n_non == 0 and fpirs:
        raise ValueError(f"gallery {gallery}: every probe is mated (FPIR undefined)")
    sm = s[mated]
    mate = sm[np.arange(n_mated), pos_c[mated]]
    rank = 1 + np.sum(sm > mate[:, None], axis=1)
    cmc = {int(k): float(np.mean(rank <= k)) for k in ranks}
    top_non = np.sort(s[~mated].max(axis=1))[::-1] if n_non else np.zeros(0, np.float32)
    tpir = {}
    for f in fpirs:
        k = int(math.floor(f * n_non + 1e-9))  # non-mated searches allowed above the threshold
        if k >= n_non:
            thr = -np.inf
            accepted = n_non
        else:
            thr = float(top_non[k])  # accept scores strictly above the (k+1)-th best non-mated score
            accepted = int(np.sum(top_non > thr))
        hit = (rank == 1) & (mate > thr)
        tpir[f"{f:g}"] = {"tpir": float(hit.mean()), "fpir": accepted / n_non, "threshold": thr}
    return SearchResult(gallery=gallery, cmc=cmc, tpir_at_fpir=tpir, mated_probes=n_mated, non_mated_probes=n_non,
                        gallery_templates=int(np.asarray(gallery_subjects).size), gallery_subjects=int(subjects.size))


def average_search(results: Sequence[SearchResult]) -> dict[str, Any]:
    """The mean over galleries of each CMC rank and each TPIR (as insightface and the IJB papers report)."""
    return {
        "cmc": {f"rank{k}": float(np.mean([r.cmc[k] for r in results])) for k in results[0].cmc},
        "tpir_at_fpir": {f: {"tpir": float(np.mean([r.tpir_at_fpir[f]["tpir"] for r in results]))}
                         for f in results[0].tpir_at_fpir},
        "galleries": [r.gallery for r in results],
    }


def insightface_search(template_ids: np.ndarray, feats: np.ndarray, galleries: Sequence[tuple[str, SearchSet]],
                       probes: SearchSet, *, fars: Sequence[float] = FPIRS) -> dict[str, Any]:
    """insightface's 1:N numbers (`recognition/_evaluation_/ijb/ijb_1n.py`), beside NIST's (`evaluate_search`).

    As the script: the galleries are joined into one (G1 + G2; IJB-B S1 + S2), each distinct gallery
    template keeps the subject of its first row, and so does each distinct mixed-probe template; every
    probe must have exactly one gallery template of its subject (else the script stops: FaceverError).
    top-k = share of probes whose mate template is among the k most similar gallery templates (ties:
    the lower gallery position first, the order of a stable sort; the script's own `np.argsort` leaves
    ties to numpy's sort). At "FAR" f: th = the ceil(f x probes)-th highest similarity among all
    probe-to-non-mate comparisons, TPR = share of probes whose mate similarity is > th. This "FAR" is
    not NIST's FPIR (no non-mated search exists here): both are reported, each under its own name.
    """
    g_templates = np.concatenate([g.templates for _, g in galleries])
    g_subjects = np.concatenate([g.subjects for _, g in galleries])
    g_unique, g_first = np.unique(g_templates, return_index=True)
    g_ids = g_subjects[g_first]
    p_unique, p_first = np.unique(probes.templates, return_index=True)
    p_ids = probes.subjects[p_first]
    order = np.argsort(g_ids, kind="stable")
    pos = np.searchsorted(g_ids[order], p_ids)
    pos_c = np.minimum(pos, g_ids.size - 1)
    counts = np.searchsorted(g_ids[order], p_ids, side="right") - pos
    if np.any(counts != 1):
        bad = int(p_ids[np.flatnonzero(counts != 1)[0]])
        raise FaceverError(f"insightface's 1:N needs exactly one gallery template per probe subject; subject {bad} "
                           f"has {int(counts[counts != 1][0])} (its script stops there too)")
    mask = order[pos_c]
    try:
        g_feats = feats[template_rows(template_ids, g_unique)].astype(np.float64)
        p_feats = feats[template_rows(template_ids, p_unique)].astype(np.float64)
    except ValueError as exc:
        raise FaceverError(f"1:N galleries or probes ({probes.path}): {exc}") from None
    q = p_feats.shape[0]
    required = [math.ceil(q * f) for f in fars]
    top = max(required)
    rank = np.empty(q, dtype=np.int64)
    mate = np.empty(q)
    best_negatives = np.zeros(0)
    for s in range(0, q, 2048):
        sims = p_feats[s:s + 2048] @ g_feats.T
        rows = np.arange(sims.shape[0])
        m = mask[s:s + 2048]
        mate_s = sims[rows, m]
        higher = np.sum(sims > mate_s[:, None], axis=1)
        tied_before = np.sum((sims == mate_s[:, None]) & (np.arange(sims.shape[1])[None, :] < m[:, None]), axis=1)
        rank[s:s + 2048] = 1 + higher + tied_before
        mate[s:s + 2048] = mate_s
        sims[rows, m] = -np.inf
        flat = sims[np.isfinite(sims)]
        k = min(top, flat.size)
        block_top = np.partition(flat, flat.size - k)[flat.size - k:] if k else flat[:0]
        merged = np.r_[best_negatives, block_top]
        best_negatives = np.sort(merged)[::-1][:top]
    out = {f"top{k}": float(np.mean(rank <= k)) for k in RANKS}
    out["tpr_at_far"] = {}
    for f, k in zip(fars, required):
        if k < 1 or k > best_negatives.size:
            raise FaceverError(f"insightface's 1:N at FAR {f:g} needs {k} non-mate comparisons, there are "
                               f"{best_negatives.size}")
        th = float(best_negatives[k - 1])
        out["tpr_at_far"][f"{f:g}"] = {"tpr": float(np.sum(mate > th) / q), "threshold": th}
    out.update({"probes": int(q), "gallery_templates": int(g_unique.size),
                "definition": "insightface ijb_1n.py: galleries joined; top-k of the mate template; at FAR f the "
                              "threshold is the ceil(f x probes)-th highest non-mate similarity"})
    return out


# ---------------------------------------------------------------------------------------------------
# Meta files + embeddings file -> results


def flip_layout_of(embeddings: Embeddings) -> str:
    """How the file was embedded (`facever embed --flip`): `none`, `concat` or `sum` (metadata `flip`)."""
    flip = embeddings.metadata.get("flip", "none")
    if flip not in FLIP_LAYOUTS:
        raise FaceverError(f"embeddings made with flip {flip!r}: expected one of {', '.join(FLIP_LAYOUTS)}")
    return flip


def image_rows(meta: IJBMeta, embeddings: Embeddings) -> np.ndarray:
    """Row of each template/media line's image in `embeddings`; `InputFileError` naming a missing one."""
    rows = embeddings.rows(meta.media.names)
    if (rows < 0).any():
        missing = np.flatnonzero(rows < 0)
        first = int(missing[0])
        raise InputFileError(
            meta.media.path,
            f"image {meta.media.names[first]!r} has no embedding ({missing.size} of {rows.size} images missing; "
            "the embeddings must be keyed by the image names of this file)",
            line=int(meta.media.lines[first]),
        )
    return rows


def ijb_template_features(meta: IJBMeta, embeddings: Embeddings, mode: TestMode, *,
                          landmarks: Landmarks | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`(template_ids, unit template features)` of every template of `meta` under `mode`."""
    rows = image_rows(meta, embeddings)
    faceness = None
    if mode.detector:
        if landmarks is None:
            raise FaceverError("test mode D1 needs the faceness scores of the landmarks file")
        faceness = landmarks.faceness[landmarks.rows(meta.media.names, where=meta.media.where)]
    raw = embeddings.embeddings if np.array_equal(rows, np.arange(len(embeddings))) else embeddings.embeddings[rows]
    try:
        feats = image_features(raw, mode=mode, flip_layout=flip_layout_of(embeddings), faceness=faceness)
    except ValueError as exc:
        raise FaceverError(f"test mode {mode.label}: {exc}") from None
    return template_features(feats, meta.media.templates, meta.media.medias)


def evaluate_ijb(meta: IJBMeta, embeddings: Embeddings, mode: TestMode, *, landmarks: Landmarks | None = None,
                 fars: Sequence[float] = FARS, template_feats: tuple[np.ndarray, np.ndarray] | None = None) -> IJBResult:
    """The 1:1 protocol of `meta` scored from per-image `embeddings` in test `mode` (module docstring)."""
    ids, feats = template_feats or ijb_template_features(meta, embeddings, mode, landmarks=landmarks)
    scores = pair_scores(feats, template_rows(ids, meta.pairs.t1), template_rows(ids, meta.pairs.t2))
    result = score_result(meta.set_name, mode, scores, meta.pairs.labels, n_templates=int(ids.size),
                          n_images=len(set(meta.media.names)), fars=fars)
    result.settings.update({
        "pairs_file": str(meta.pairs.path), "templates_file": str(meta.media.path),
        "template_feature": "per media: mean of image features; template: sum of media features, L2-normalised",
        "pair_score": "cosine of the two template features (same iff score >= threshold)",
        "flip_layout": flip_layout_of(embeddings),
    })
    return result


def evaluate_search(template_ids: np.ndarray, feats: np.ndarray, galleries: Sequence[tuple[str, SearchSet]],
                    probes: SearchSet, *, ranks: Sequence[int] = RANKS,
                    fpirs: Sequence[float] = FPIRS) -> tuple[list[SearchResult], dict[str, Any]]:
    """1:N: the mixed probes searched in each gallery, and the average over the galleries."""
    results = []
    for name, gallery in galleries:
        try:
            g_rows = template_rows(template_ids, gallery.templates)
            p_rows = template_rows(template_ids, probes.templates)
        except ValueError as exc:
            raise FaceverError(f"1:N gallery {name} ({gallery.path}) or probes ({probes.path}): {exc}") from None
        in_gallery = np.isin(probes.templates, gallery.templates)
        keep = ~in_gallery  # a gallery template is never searched for itself
        try:
            results.append(search_metrics(name, feats[p_rows[keep]], probes.subjects[keep], feats[g_rows],
                                          gallery.subjects, ranks=ranks, fpirs=fpirs))
        except ValueError as exc:
            raise FaceverError(str(exc)) from None
    return results, average_search(results)
