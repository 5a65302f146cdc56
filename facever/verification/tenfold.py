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

from facever.verification.roc import best_threshold_from_counts

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


def best_threshold_exact(scores, labels, *, greater_is_same: bool = True) -> tuple[float, float]:
    """The exact best threshold on `scores` (see module docstring). Returns `(threshold, accuracy)`."""
    scores, labels = _as_arrays(scores, labels)
    # Work on "similarity" keys so one code path serves both directions.
    keyed = scores if greater_is_same else -scores
    order = np.argsort(keyed, kind="stable")[::-1]
    return best_threshold_from_counts(keyed[order], labels[order], greater_is_same=greater_is_same)


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


def kfold_blocks(n: int, k: int = 10) -> np.ndarray:
    """Fold id (0..k-1) of each of `n` pairs in order, as scikit-learn's `KFold(n_splits=k, shuffle=False)`
    splits them (facenet, insightface): k consecutive blocks, the first `n % k` one pair longer."""
    if not 2 <= k <= n:
        raise ValueError(f"cannot split {n} pairs into {k} folds")
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[: n % k] += 1
    return np.repeat(np.arange(k), sizes)


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
        order = np.argsort(keyed, kind="stable")[::-1]
        keyed_sorted, labels_sorted, folds_sorted = keyed[order], labels[order], folds[order]
    for i, fold in enumerate(fold_ids):
        test = folds == fold
        if thresholds == "exact" and shared_scores:
            train_sorted = folds_sorted != fold
            t, train_acc = best_threshold_from_counts(keyed_sorted[train_sorted], labels_sorted[train_sorted],
                                                      greater_is_same=greater_is_same)
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


def scipy18_slinear(x, y, x_new: float) -> float:
    """`scipy.interpolate.interp1d(x, y, kind="slinear")(x_new)` as SciPy 0.19 to 1.8 computed it, repeated
    `x` values included (SciPy >= 1.9 raises on them; facenet's and insightface's VAL@FAR always has them).

    Transcribed from those versions: `interp1d` sorts `x` stably (mergesort); `make_interp_spline(x, y,
    k=1)` returns the B-spline with knots `[x0, x0..x_{n-1}, x_{n-1}]` and coefficients `y`; its
    evaluation finds the knot interval `t[l] <= x_new < t[l+1]` (the last `l` with `t[l] <= x_new`,
    capped at the last interval) and runs de Boor's recursion there. Hence:

    - between two levels of `x` it interpolates linearly from the **last** point of the level below
      (for a FAR curve: the largest threshold of that FAR) to the **first** point of the level above;
    - at a value equal to an inner level, it gives the `y` of that level's last point;
    - at the highest level, when that level is repeated, the interval is of zero length and de Boor's
      recursion gives **0.0** (not a point's `y`);
    - outside `[min x, max x]` interp1d raises ValueError (bounds_error); so does this function.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    x, y = x[order], y[order]
    n = x.size
    if n < 2:
        raise ValueError("x and y arrays must have at least 2 entries")
    x_new = float(x_new)
    if x_new < x[0] or x_new > x[-1]:
        raise ValueError(f"{x_new!r} is outside the interpolation range [{x[0]!r}, {x[-1]!r}]")
    interval = min(int(np.searchsorted(x, x_new, side="right")), n - 1)  # knots t[l], t[l+1] = x[l-1], x[l]
    xa, xb = x[interval - 1], x[interval]
    if xb == xa:
        return 0.0
    w = 1.0 / (xb - xa)
    return float(0.0 + y[interval - 1] * (w * (xb - x_new)) + y[interval] * (w * (x_new - xa)))


def facenet_val_at_far(distances, labels, folds, *, far_target: float = 1e-3) -> dict:
    """davidsandberg/facenet's and insightface's VAL@FAR (`calculate_val`), as they computed it.

    Per fold: the FAR of the training folds at every threshold of `np.arange(0, 4, 0.001)` (same iff
    d < t); when it reaches `far_target` somewhere, the threshold is `interp1d(far_train, thresholds,
    kind="slinear")(far_target)` under the SciPy those scripts were written for (<= 1.8: see
    `scipy18_slinear`; SciPy >= 1.9 refuses the repeated FARs), else 0.0 (nothing accepted: VAL 0), as
    the scripts do. Then VAL (true accept rate) and FAR on the test fold; a test fold with no same (or
    no different) pair counts 0 where the scripts would divide by zero.

    `distances` may be (K, N): row k scores the pairs when fold k (k-th smallest id) is tested (mean
    subtraction), as `kfold_accuracy` takes them.

    Returns `{"far_target", "val_mean", "val_std", "far_mean", "thresholds"}` (std over folds, ddof=0;
    `thresholds` per fold in ascending fold id).
    """
    distances = np.asarray(distances, dtype=np.float64)
    by_fold = distances.ndim == 2
    _, labels = _as_arrays(distances[0] if by_fold else distances, labels)
    folds = np.asarray(folds)
    vals, fars, thresholds = [], [], []
    grid = FACENET_VAL_GRID
    negatives = ~labels
    if not by_fold:
        # Training negatives below each threshold = all negatives below it - the test fold's: one search
        # over all pairs plus a small one per fold, instead of sorting the training set ten times.
        below_all = np.searchsorted(np.sort(distances[negatives]), grid, side="left")
    for i, fold in enumerate(np.unique(folds)):
        test = folds == fold
        d = distances[i] if by_fold else distances
        if by_fold:
            far_train = np.searchsorted(np.sort(d[~test & negatives]), grid, side="left") / max(
                int(np.sum(~test & negatives)), 1)
        else:
            fold_neg = np.sort(d[test & negatives])
            n_train_neg = int(negatives.sum()) - fold_neg.size
            far_train = (below_all - np.searchsorted(fold_neg, grid, side="left")) / max(n_train_neg, 1)
        threshold = scipy18_slinear(far_train, grid, far_target) if far_train.max() >= far_target else 0.0
        d_test, y_test = d[test], labels[test]
        pred = d_test < threshold
        n_same, n_diff = int(y_test.sum()), int((~y_test).sum())
        vals.append(np.sum(pred & y_test) / n_same if n_same else 0.0)
        fars.append(np.sum(pred & ~y_test) / n_diff if n_diff else 0.0)
        thresholds.append(float(threshold))
    return {
        "far_target": far_target,
        "val_mean": float(np.mean(vals)),
        "val_std": float(np.std(vals)),
        "far_mean": float(np.mean(fars)),
        "thresholds": thresholds,
    }
