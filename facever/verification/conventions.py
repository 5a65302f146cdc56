"""Conventions: "the number that peer's script would print", as one named setting of a whole report.

A pair-protocol report's numbers depend on choices the field made differently: how the mirrored face
joins the embedding, the distance, mean subtraction, how folds are cut, how the threshold is chosen and
ties broken, which VAL@FAR rule. A `Convention` fixes all of them to one peer's evaluation script:

| convention | script (the lines transcribed) | embedding | score | folds | threshold |
|---|---|---|---|---|---|
| `facever` | facever's engine (`evaluate.py`) | as embedded (`concat` by default), whole vector L2-normalised | cosine (or `metric`) | the pairs file's | exact midpoints (or `thresholds`) |
| `insightface` | `recognition/arcface_torch/eval/verification.py` `test()` + `evaluate()` | f(x) + f(mirror x), float64, `sklearn.preprocessing.normalize` | squared L2 | sklearn `KFold(10)` blocks | grid `0:4:0.01`, same iff d < t, first best |
| `facenet` | davidsandberg/facenet `validate_on_lfw.py` with its wiki's flags `--distance_metric 1 --use_flipped_images --subtract_mean` (`lfw.evaluate`, `facenet.calculate_roc` / `calculate_val`) | [f(x), f(mirror x)] as output, float64 | arccos(cosine) / pi after subtracting the training folds' mean | sklearn `KFold(10)` blocks | grid `0:4:0.01`, same iff d < t, first best |
| `sphereface` | SphereFace `test/code/evaluation.m` | [f(x); f(mirror x)], double | cosine after subtracting the training folds' mean, then L2-normalising | the pairs file's (600 per fold in LFW's) | grid `-1:1e-4:1`, the mean of every best threshold; a pair at the threshold counts wrong |

VAL@FAR (insightface, facenet) is `tenfold.facenet_val_at_far`'s (SciPy <= 1.8's interpolation, as the
scripts ran). Each report records its convention and the settings it implies (`Convention.to_dict`),
and `peer` holds the numbers the script prints, formatted as it prints them. facever's own ROC, AUC,
EER and TAR@FAR are computed from the convention's scores as usual, beside them.

IJB (`eval-ijb`): `insightface` means test mode F1 N1 D1 and insightface's 1:N numbers (`ijb_1n.py`)
beside NIST's; `facever` means F1 N0 D0 and NIST's 1:N only. facenet and SphereFace define no IJB
protocol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facever.core.embeddings_file import Embeddings
from facever.core.errors import FaceverError
from facever.core.settings import CONVENTIONS, DEFAULT_CONVENTION, IJB_SETS, check_choice
from facever.protocols.pair_protocol import PairProtocol
from facever.verification import roc
from facever.verification.tenfold import (
    FACENET_GRID, KFoldResult, best_threshold_grid, facenet_val_at_far, kfold_blocks,
)

SPHEREFACE_THRESHOLDS = np.arange(-10000, 10001) / 10000.0  # MATLAB's (-thrNum:thrNum) / thrNum


@dataclass(frozen=True)
class Convention:
    """Every setting a pair-protocol number depends on, fixed to one peer's script (module docstring)."""

    name: str
    script: str
    flip: str | None  # the embedding the script scores: none | concat | sum; None: as the file holds it
    score: str | None  # l2 (squared), arccos (facenet's distance_metric 1), cosine; None: the user's metric
    subtract_mean: bool | None  # None: the user's choice
    folds: str  # "file" (the pairs file's folds) or "kfold" (sklearn KFold(10) blocks of the pair order)
    thresholds: str | None  # "grid" (0:4:0.01), "sphereface" (-1:1e-4:1); None: the user's choice
    precision: str
    val_rule: str
    printed: tuple[str, ...]  # what the script prints, in its order
    ijb_mode: str | None = None  # the IJB test mode the script uses
    ijb_one_to_n: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def is_peer(self) -> bool:
        return self.name != "facever"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "script": self.script,
            "flip": self.flip or "as embedded",
            "score": self.score or "the metric setting",
            "subtract_mean": "the subtract_mean setting" if self.subtract_mean is None else self.subtract_mean,
            "folds": {"file": "the pairs file's folds",
                      "kfold": "scikit-learn KFold(n_splits=10, shuffle=False): 10 consecutive blocks of the pairs in "
                               "file order, the first n % 10 one pair longer"}[self.folds],
            "thresholds": {None: "the thresholds setting",
                           "grid": "np.arange(0, 4, 0.01); same iff distance < t; the first best on the training folds",
                           "sphereface": "(-10000:10000)/10000; same iff cosine > t, different iff cosine < t (a pair "
                                         "at t counts wrong); the mean of every best threshold"}[self.thresholds],
            "precision": self.precision,
            "val_at_far": self.val_rule,
            "printed": list(self.printed),
            "ijb_test_mode": self.ijb_mode,
            "ijb_one_to_n": list(self.ijb_one_to_n),
            "notes": list(self.notes),
        }


_VAL_RULE = ("facenet/insightface calculate_val: per fold, interp1d(far_train, np.arange(0, 4, 0.001), "
             "kind='slinear')(1e-3) as SciPy <= 1.8 computed it (threshold 0 when the training FAR never "
             "reaches the target); VAL and FAR on the test fold; mean, population std")

_CONVENTIONS = {
    "facever": Convention(
        name="facever", script="facever (facever/verification/evaluate.py)", flip=None, score=None,
        subtract_mean=None, folds="file", thresholds=None, precision="float32 scores, float64 thresholds",
        val_rule=_VAL_RULE + "; on squared L2 distances of the normalised embeddings",
        printed=("accuracy mean +- std", "AUC", "EER", "TAR@FAR", "VAL@FAR"),
        ijb_mode="F1N0D0", ijb_one_to_n=("nist",),
    ),
    "insightface": Convention(
        name="insightface", script="deepinsight/insightface recognition/arcface_torch/eval/verification.py "
        "(test, evaluate, calculate_roc, calculate_val); IJB: recognition/_evaluation_/ijb/ijb_11.py, ijb_1n.py",
        flip="sum", score="l2", subtract_mean=False, folds="kfold", thresholds="grid",
        precision="float64 (the script's numpy arrays)", val_rule=_VAL_RULE,
        printed=("Accuracy-Flip: mean+-std (%1.5f)", "XNorm (mean norm of f(x) and f(mirror x))"),
        ijb_mode="F1N1D1", ijb_one_to_n=("nist", "insightface"),
        notes=("XNorm needs f(x) and f(mirror x) apart: given for embeddings made with flip concat only",),
    ),
    "facenet": Convention(
        name="facenet", script="davidsandberg/facenet src/validate_on_lfw.py --distance_metric 1 "
        "--use_flipped_images --subtract_mean (lfw.evaluate, facenet.calculate_roc, facenet.calculate_val)",
        flip="concat", score="arccos", subtract_mean=True, folds="kfold", thresholds="grid",
        precision="float64 (the script's numpy arrays)", val_rule=_VAL_RULE,
        printed=("Accuracy: %2.5f+-%2.5f", "Validation rate: %2.5f+-%2.5f @ FAR=%2.5f",
                 "Area Under Curve (AUC): %1.3f (of the fold-averaged grid ROC)",
                 "Equal Error Rate (EER): %1.3f (brentq on that ROC, np.interp as SciPy 1.8's interp1d)"),
    ),
    "sphereface": Convention(
        name="sphereface", script="wy1iu/sphereface test/code/evaluation.m (getThreshold, getAccuracy)",
        flip="concat", score="cosine", subtract_mean=True, folds="file", thresholds="sphereface",
        precision="float64 (MATLAB doubles)", val_rule=_VAL_RULE + "; on 2 - 2 cos of its scores (SphereFace "
        "reports no VAL)",
        printed=("fold ACC %2.2f%%", "AVE %2.2f%%"),
        notes=("SphereFace cuts folds of 600 pairs in file order (LFW's); facever uses the pairs file's folds",),
    ),
}
assert tuple(_CONVENTIONS) == CONVENTIONS


def check_benchmark(convention: str | Convention | None, benchmark: str) -> Convention:
    """The convention, when its script defines `benchmark` (a name of `settings.BENCHMARKS`); else FaceverError.

    The pair-protocol scripts score any pairs list (LFW, FGLFW, CALFW/CPLFW, .bin sets); none of them
    has a YouTube Faces protocol (video against video), and only insightface's has an IJB one.
    """
    conv = get_convention(convention)
    if not conv.is_peer:
        return conv
    if benchmark == "ytf" or (benchmark in IJB_SETS and conv.ijb_mode is None):
        raise FaceverError(f"the {conv.name} convention has no {benchmark} protocol ({conv.name}'s evaluation "
                           f"scripts define none): use the facever convention", options=("convention",))
    return conv


def get_convention(name: str | Convention | None = None) -> Convention:
    """The `Convention` named `name` (one of `facever.core.settings.CONVENTIONS`; None: the default)."""
    if isinstance(name, Convention):
        return name
    return _CONVENTIONS[check_choice("convention", name or DEFAULT_CONVENTION, CONVENTIONS)]


# ---------------------------------------------------------------------------------------------------
# The scripts' scores, in float64 as their numpy arrays hold them


def peer_embeddings(raw: np.ndarray, flip_layout: str, convention: Convention) -> np.ndarray:
    """The per-image vectors `convention`'s script scores, float64, from a file embedded with `flip_layout`.

    `sum` from a `concat` file adds the halves in float64 (insightface adds its two float64 arrays);
    `concat` needs a `concat` file. Raises FaceverError when the file cannot give the script's view.
    """
    raw = np.asarray(raw)
    if convention.flip == "sum":
        if flip_layout == "concat":
            half = raw.shape[1] // 2
            return raw[:, :half].astype(np.float64) + raw[:, half:].astype(np.float64)
        if flip_layout == "sum":
            return raw.astype(np.float64)
    elif convention.flip == "concat" and flip_layout == "concat":
        return raw.astype(np.float64)
    raise FaceverError(f"the {convention.name} convention scores f(x) {'+' if convention.flip == 'sum' else 'and'} "
                       f"f(mirror x) ({convention.flip}), but these embeddings were made with flip {flip_layout!r}: "
                       "embed with flip concat (it gives every convention)", options=("flip",))


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    """sklearn.preprocessing.normalize (l2): rows divided by their norm, rows of norm 0 left as they are."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0.0] = 1.0
    return x / norms[:, np.newaxis]


def _fold_distances(e1: np.ndarray, e2: np.ndarray, folds: np.ndarray, convention: Convention) -> np.ndarray:
    """(K, N) scores: row k is what the script scores when fold k is tested (mean of the other folds)."""
    fold_ids = np.unique(folds)
    if convention.name == "insightface":
        e1, e2 = _normalize_rows(e1), _normalize_rows(e2)
        dist = np.sum(np.square(np.subtract(e1, e2)), 1)
        return np.broadcast_to(dist, (fold_ids.size, dist.size))
    rows = []
    for fold in fold_ids:
        train = folds != fold
        if convention.name == "facenet":
            # facenet.calculate_roc: mean of np.concatenate([embeddings1[train], embeddings2[train]]); distance 1.
            mean = np.mean(np.concatenate([e1[train], e2[train]]), axis=0)
            a, b = e1 - mean, e2 - mean
            dot = np.sum(np.multiply(a, b), axis=1)
            norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            with np.errstate(invalid="ignore"):
                rows.append(np.arccos(dot / norm) / math.pi)
        else:  # sphereface: mu = mean([featureLs(:, valFold), featureRs(:, valFold)], 2); normalise; cosine
            mean = np.mean(np.concatenate([e1[train], e2[train]]), axis=0)
            a, b = e1 - mean, e2 - mean
            a = a / np.sqrt(np.sum(a ** 2, axis=1))[:, None]
            b = b / np.sqrt(np.sum(b ** 2, axis=1))[:, None]
            rows.append(np.sum(a * b, axis=1))
    return np.array(rows)


def sphereface_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """SphereFace's getThreshold(scores, flags, 10000): `(threshold, training accuracy)`."""
    pos = np.sort(scores[labels])
    neg = np.sort(scores[~labels])
    t = SPHEREFACE_THRESHOLDS
    correct = (pos.size - np.searchsorted(pos, t, side="right")) + np.searchsorted(neg, t, side="left")
    best = correct == correct.max()
    chosen = t[best]
    return float(sum(chosen.tolist()) / chosen.size), float(correct.max() / scores.size)


def sphereface_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """SphereFace's getAccuracy: same pairs above the threshold plus different pairs below it, over all."""
    return float((np.sum(scores[labels] > threshold) + np.sum(scores[~labels] < threshold)) / scores.size)


def _grid_accuracy(dist: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    predict = np.less(dist, threshold)
    return float(np.sum(predict == labels) / dist.size)


def _grid_roc(dist_by_fold: np.ndarray, labels: np.ndarray, folds: np.ndarray, fold_ids) -> tuple[np.ndarray, np.ndarray]:
    """facenet's calculate_roc tpr, fpr: the test folds' rates at each grid threshold, averaged over folds."""
    tprs, fprs = [], []
    for i, fold in enumerate(fold_ids):
        test = folds == fold
        d, y = dist_by_fold[i][test], labels[test]
        pos, neg = np.sort(d[y]), np.sort(d[~y])
        tp = np.searchsorted(pos, FACENET_GRID, side="left")
        fp = np.searchsorted(neg, FACENET_GRID, side="left")
        tprs.append(tp / pos.size if pos.size else np.zeros(FACENET_GRID.size))
        fprs.append(fp / neg.size if neg.size else np.zeros(FACENET_GRID.size))
    return np.mean(tprs, 0), np.mean(fprs, 0)


def _facenet_auc_eer(tpr: np.ndarray, fpr: np.ndarray) -> tuple[float, float | None]:
    """validate_on_lfw.py: `metrics.auc(fpr, tpr)`; `brentq(lambda x: 1. - x - interp1d(fpr, tpr)(x), 0., 1.)`
    with SciPy 1.8's linear interp1d (np.interp on float64). EER None where interp1d would raise (the
    averaged FAR never reaches 1 on the grid)."""
    from scipy.optimize import brentq

    area = float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr))
    if fpr[0] > 0.0 or fpr[-1] < 1.0:
        return area, None
    eer = brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0)
    return area, float(eer)


def _xnorm(raw: np.ndarray, rows: np.ndarray, flip_layout: str) -> float | None:
    """insightface's XNorm: the mean L2 norm of f(x) and f(mirror x) over the pairs' images (one per pair side)."""
    if flip_layout != "concat":
        return None
    half = raw.shape[1] // 2
    x = raw[rows].astype(np.float64)
    norms = np.r_[np.linalg.norm(x[:, :half], axis=1), np.linalg.norm(x[:, half:], axis=1)]
    return float(np.mean(norms))


@dataclass
class PeerScores:
    """A protocol's pairs scored as `convention`'s script scores them (`by_fold`: (K, N), row k for fold k)."""

    convention: Convention
    by_fold: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    greater_is_same: bool
    dropped: int
    xnorm: float | None = None


def peer_scores(protocol: PairProtocol, embeddings: Embeddings, convention: Convention, rows1: np.ndarray,
                rows2: np.ndarray, keep: np.ndarray) -> PeerScores:
    """The pairs `keep` (rows `rows1`, `rows2` of `embeddings`) scored as the convention's script scores them."""
    labels = protocol.labels[keep]
    dropped = int((~keep).sum())
    # The scripts drop pairs whose images are missing, then cut their folds from what is left.
    folds = kfold_blocks(int(keep.sum()), 10) if convention.folds == "kfold" else protocol.folds[keep]
    flip_layout = str(embeddings.metadata.get("flip", "none"))
    raw = embeddings.embeddings
    used = np.unique(np.r_[rows1[keep], rows2[keep]])
    view = peer_embeddings(raw[used], flip_layout, convention)
    if not np.all(np.isfinite(view)):
        raise FaceverError("embeddings contain NaN or infinite values")
    pos = np.searchsorted(used, np.r_[rows1[keep], rows2[keep]])
    n = labels.size
    e1, e2 = view[pos[:n]], view[pos[n:]]
    by_fold = _fold_distances(e1, e2, folds, convention)
    xnorm = _xnorm(raw, np.r_[rows1[keep], rows2[keep]], flip_layout) if convention.name == "insightface" else None
    return PeerScores(convention, by_fold, labels, folds, convention.score == "cosine", dropped, xnorm)


def peer_kfold(scores: PeerScores) -> KFoldResult:
    """The k-fold accuracy as the script computes it (grid: facenet/insightface; sphereface's getThreshold)."""
    labels, folds = scores.labels, scores.folds
    fold_ids = np.unique(folds)
    out = {k: np.empty(fold_ids.size) for k in ("t", "acc", "train")}
    sizes = np.empty(fold_ids.size, dtype=np.int64)
    for i, fold in enumerate(fold_ids):
        test = folds == fold
        s = scores.by_fold[i]
        if scores.convention.thresholds == "sphereface":
            t, train_acc = sphereface_threshold(s[~test], labels[~test])
            acc = sphereface_accuracy(s[test], labels[test], t)
        else:
            t, train_acc = best_threshold_grid(s[~test], labels[~test])
            acc = _grid_accuracy(s[test], labels[test], t)
        out["t"][i], out["acc"][i], out["train"][i], sizes[i] = t, acc, train_acc, int(test.sum())
    return KFoldResult(fold_ids=fold_ids, thresholds=out["t"], accuracies=out["acc"], train_accuracies=out["train"],
                       sizes=sizes)


def peer_table(scores: PeerScores, kfold: KFoldResult) -> dict[str, Any]:
    """The numbers the convention's script prints, and its printed lines."""
    conv = scores.convention
    labels, folds = scores.labels, scores.folds
    acc = kfold.accuracies
    if conv.name == "sphereface":
        lines = ["fold\tACC", "----------------"]
        lines += [f"{int(f) + 1}\t{a * 100:2.2f}%" for f, a in zip(kfold.fold_ids, acc)]
        lines += ["----------------", f"AVE\t{np.mean(acc) * 100:2.2f}%"]
        return {"accuracy_mean": float(np.mean(acc)), "fold_accuracies": acc.tolist(), "lines": lines}
    val = facenet_val_at_far(scores.by_fold, labels, folds, far_target=1e-3)
    out = {"accuracy_mean": float(np.mean(acc)), "accuracy_std": float(np.std(acc)), "val": val["val_mean"],
           "val_std": val["val_std"], "far": val["far_mean"]}
    if conv.name == "insightface":
        out["xnorm"] = scores.xnorm
        lines = ([f"XNorm: {scores.xnorm:f}"] if scores.xnorm is not None else []) + [
            f"Accuracy-Flip: {out['accuracy_mean']:1.5f}+-{out['accuracy_std']:1.5f}"]
    else:
        tpr, fpr = _grid_roc(scores.by_fold, labels, folds, kfold.fold_ids)
        out["auc"], out["eer"] = _facenet_auc_eer(tpr, fpr)
        lines = [f"Accuracy: {out['accuracy_mean']:2.5f}+-{out['accuracy_std']:2.5f}",
                 f"Validation rate: {out['val']:2.5f}+-{out['val_std']:2.5f} @ FAR={out['far']:2.5f}",
                 f"Area Under Curve (AUC): {out['auc']:1.3f}",
                 "Equal Error Rate (EER): " + (f"{out['eer']:1.3f}" if out["eer"] is not None else
                                               "(not defined: the averaged grid ROC never reaches FAR 1)")]
    out["lines"] = lines
    return out
