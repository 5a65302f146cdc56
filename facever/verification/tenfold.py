"""Threshold selection and the k-fold verification protocol (LFW's 10 folds, YTF's 10 splits).

For each fold k the threshold is chosen on the pairs of the other folds and accuracy is measured on
fold k. Decision rule: a pair is "same" iff `score > threshold` for similarities, or iff
`distance < threshold` for distances (`greater_is_same=False`).

Two ways to choose the threshold:

- `exact` (default): candidates are the midpoints between consecutive distinct training scores, plus
  one candidate 1.0 below the lowest and one 1.0 above the highest score (predict all "same" / all
  "different"). The candidate with the highest training accuracy wins; ties go to the smallest
  threshold value (in the score's own units, also for distances). Every distinct partition of the
  training pairs is tried once, so no finer grid can do better on the training folds.
- `grid`: davidsandberg/facenet's and insightface's procedure, reproduced exactly: squared L2
  distances, thresholds `np.arange(0, 4, 0.01)`, same iff `d < t`, ties to the smallest threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FACENET_GRID = np.arange(0, 4, 0.01)
FACENET_VAL_GRID = np.arange(0, 4, 0.001)


def _as_arrays(scores, labels):
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must be 1-D of equal length, got {scores.shape} and {labels.shape}")
    if scores.size == 0:
        raise ValueError("no pairs")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    return scores, labels.astype(bool, copy=False)


def predict_same(scores: np.ndarray, threshold: float, *, greater_is_same: bool = True) -> np.ndarray:
    """The decision rule: `score > threshold`, or `distance < threshold` for distances."""
    scores = np.asarray(scores)
    return scores > threshold if greater_is_same else scores < threshold


def accuracy_at(scores, labels, threshold: float, *, greater_is_same: bool = True) -> float:
    """Fraction of pairs whose decision at `threshold` matches the label."""
    scores, labels = _as_arrays(scores, labels)
    return float(np.mean(predict_same(scores, threshold, greater_is_same=greater_is_same) == labels))


def _best_exact_sorted(keyed: np.ndarray, lab: np.ndarray, greater_is_same: bool) -> tuple[float, float]:
    """Exact search on similarity keys already sorted ascending (labels in the same order)."""
    n = keyed.size
    starts = np.r_[0, np.flatnonzero(np.diff(keyed)) + 1]  # first index of each distinct value
    # Candidate j (0..m) predicts "same" for keys >= keyed[starts[j]]; j = m predicts none. Right
    # below cut c: c pairs, pos_cum[c] of them positive, so correct = (c - pos_cum[c]) + (P - pos_cum[c]).
    cut = np.r_[starts, n]
    pos_cum = np.r_[0, np.cumsum(lab, dtype=np.int64)]
    correct = cut + pos_cum[-1] - 2 * pos_cum[cut]
    if greater_is_same:
        j = int(np.argmax(correct))  # first maximum = smallest threshold
    else:
        # In distance units the threshold is -candidate: the smallest distance is the last maximum here.
        j = correct.size - 1 - int(np.argmax(correct[::-1]))
    m = starts.size
    if j == 0:
        candidate = keyed[0] - 1.0
    elif j == m:
        candidate = keyed[-1] + 1.0
    else:
        candidate = (keyed[starts[j - 1]] + keyed[starts[j]]) / 2.0
    threshold = candidate if greater_is_same else -candidate
    return float(threshold), float(correct[j] / n)


def best_threshold_exact(scores, labels, *, greater_is_same: bool = True) -> tuple[float, float]:
    """The exact best threshold on `scores` (see module docstring). Returns `(threshold, accuracy)`."""
    scores, labels = _as_arrays(scores, labels)
    # Work on "similarity" keys so one code path serves both directions.
    keyed = scores if greater_is_same else -scores
    order = np.argsort(keyed, kind="stable")
    return _best_exact_sorted(keyed[order], labels[order], greater_is_same)


def best_threshold_grid(distances, labels, *, grid: np.ndarray = FACENET_GRID) -> tuple[float, float]:
    """facenet's grid search on distances (same iff d < t; ties to the smallest). Returns `(threshold, accuracy)`."""
    distances, labels = _as_arrays(distances, labels)
    pos = np.sort(distances[labels])
    neg = np.sort(distances[~labels])
    # Counting with searchsorted gives exactly np.less(dist, t) for every t, without the 400-step loop.
    tp = np.searchsorted(pos, grid, side="left")
    tn = neg.size - np.searchsorted(neg, grid, side="left")
    correct = tp + tn
    j = int(np.argmax(correct))
    return float(grid[j]), float(correct[j] / distances.size)


@dataclass(frozen=True)
class KFoldResult:
    """Per-fold outcome of the k-fold protocol (arrays indexed by fold, in ascending fold id)."""

    fold_ids: np.ndarray
    thresholds: np.ndarray
    accuracies: np.ndarray
    train_accuracies: np.ndarray
    sizes: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Population standard deviation over folds (ddof=0), as davidsandberg/facenet reports it."""
        return float(np.std(self.accuracies))

    @property
    def stderr(self) -> float:
        """Standard error of the mean: sample std (ddof=1) / sqrt(number of folds)."""
        k = self.accuracies.size
        return float(np.std(self.accuracies, ddof=1) / np.sqrt(k)) if k > 1 else float("nan")


def kfold_accuracy(
    scores,
    labels,
    folds,
    *,
    thresholds: str = "exact",
    greater_is_same: bool = True,
    grid: np.ndarray | None = None,
) -> KFoldResult:
    """Accuracy of each fold with its threshold chosen on all the other folds.

    Args:
        scores: float array (N,), similarities (or distances with `greater_is_same=False`). A 2-D
            array (K, N) gives fold-specific scores: row k is used when fold k (k-th smallest id) is
            the test fold (used for mean subtraction, where scores depend on the training folds).
        labels: bool array (N,), True for same-person pairs.
        folds: int array (N,) of fold ids (any integers; at least two distinct).
        thresholds: "exact" or "grid" (grid requires distances: `greater_is_same=False`).
        grid: thresholds for grid mode (default: facenet's `np.arange(0, 4, 0.01)`).

    Returns:
        `KFoldResult` with, per fold: threshold, test accuracy, training accuracy, size.
    """
    labels = np.asarray(labels).astype(bool)
    folds = np.asarray(folds)
    scores = np.asarray(scores, dtype=np.float64)
    n = labels.size
    if folds.shape != (n,):
        raise ValueError(f"folds must have one id per pair ({n}), got shape {folds.shape}")
    fold_ids = np.unique(folds)
    if fold_ids.size < 2:
        raise ValueError("the k-fold protocol needs at least two folds")
    shared_scores = scores.ndim == 1
    if shared_scores:
        scores = np.broadcast_to(scores, (fold_ids.size, n))
    if scores.shape != (fold_ids.size, n):
        raise ValueError(f"scores must be ({n},) or ({fold_ids.size}, {n}), got {scores.shape}")
    if thresholds not in ("exact", "grid"):
        raise ValueError(f"thresholds must be 'exact' or 'grid', got {thresholds!r}")
    if thresholds == "grid" and greater_is_same:
        raise ValueError("grid mode reproduces facenet/insightface and works on distances (greater_is_same=False)")

    k = fold_ids.size
    out_t = np.empty(k)
    out_acc = np.empty(k)
    out_train = np.empty(k)
    sizes = np.empty(k, dtype=np.int64)
    if thresholds == "exact" and shared_scores:
        # One sort for all folds: masking a sorted array keeps it sorted.
        keyed = scores[0] if greater_is_same else -scores[0]
        order = np.argsort(keyed, kind="stable")
        keyed_sorted, labels_sorted, folds_sorted = keyed[order], labels[order], folds[order]
    for i, fold in enumerate(fold_ids):
        test = folds == fold
        if thresholds == "exact" and shared_scores:
            train_sorted = folds_sorted != fold
            t, train_acc = _best_exact_sorted(keyed_sorted[train_sorted], labels_sorted[train_sorted], greater_is_same)
        elif thresholds == "exact":
            t, train_acc = best_threshold_exact(scores[i][~test], labels[~test], greater_is_same=greater_is_same)
        else:
            t, train_acc = best_threshold_grid(scores[i][~test], labels[~test], grid=FACENET_GRID if grid is None else grid)
        pred = predict_same(scores[i][test], t, greater_is_same=greater_is_same)
        out_t[i] = t
        out_acc[i] = np.mean(pred == labels[test])
        out_train[i] = train_acc
        sizes[i] = int(test.sum())
    return KFoldResult(fold_ids=fold_ids, thresholds=out_t, accuracies=out_acc, train_accuracies=out_train, sizes=sizes)


def facenet_val_at_far(distances, labels, folds, *, far_target: float = 1e-3) -> dict:
    """davidsandberg/facenet's VAL@FAR: per fold, the threshold where the training FAR reaches
    `far_target` (linear interpolation over thresholds `np.arange(0, 4, 0.001)`; 0.0 when the
    training FAR never reaches it), then VAL (true accept rate) and FAR on the test fold.

    facenet interpolates with `scipy.interpolate.interp1d(far_train, thresholds, kind="slinear")`;
    current SciPy refuses the repeated FAR values that curve always has, so repeated FARs are
    collapsed to their smallest threshold before the (identical) linear interpolation.

    Returns `{"val_mean", "val_std", "far_mean", "far_target"}` (std over folds, ddof=0).
    """
    distances, labels = _as_arrays(distances, labels)
    folds = np.asarray(folds)
    vals, fars = [], []
    grid = FACENET_VAL_GRID
    # Training negatives below each threshold = all negatives below it - the test fold's: one search
    # over all pairs plus a small one per fold, instead of sorting the training set ten times.
    negatives = ~labels
    below_all = np.searchsorted(np.sort(distances[negatives]), grid, side="left")
    for fold in np.unique(folds):
        test = folds == fold
        fold_neg = np.sort(distances[test & negatives])
        n_train_neg = int(negatives.sum()) - fold_neg.size
        far_train = (below_all - np.searchsorted(fold_neg, grid, side="left")) / max(n_train_neg, 1)
        if far_train.max() >= far_target:
            far_unique, first = np.unique(far_train, return_index=True)
            threshold = float(np.interp(far_target, far_unique, grid[first]))
        else:
            threshold = 0.0
        d_test, y_test = distances[test], labels[test]
        pred = d_test < threshold
        n_same, n_diff = int(y_test.sum()), int((~y_test).sum())
        vals.append(np.sum(pred & y_test) / n_same if n_same else 0.0)
        fars.append(np.sum(pred & ~y_test) / n_diff if n_diff else 0.0)
    return {
        "far_target": far_target,
        "val_mean": float(np.mean(vals)),
        "val_std": float(np.std(vals)),
        "far_mean": float(np.mean(fars)),
    }
