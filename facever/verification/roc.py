"""ROC analysis and exact thresholds from one core: cumulative true/false positive counts at every
distinct score (`counts_sorted`).

Convention (as scikit-learn's `roc_curve`): at threshold `t` a pair is predicted "same" iff
`score >= t` (for similarities) or iff `distance <= t` (for distances, `greater_is_same=False`).
The curve starts at (FPR, TPR) = (0, 0) with an infinite threshold and ends at (1, 1).
"""

from __future__ import annotations

import numpy as np


def check_scores(scores, labels, *, needs: str = "a ROC") -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 scores and bool labels (True = same person): 1-D, equal length, finite, both
    classes present; a ValueError saying which rule failed otherwise. `needs` names what needs both
    classes, for its message."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must be 1-D of equal length, got {scores.shape} and {labels.shape}")
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be boolean or 0/1")
        labels = labels.astype(bool)
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} scores are NaN or infinite (e.g. pair {int(np.flatnonzero(bad)[0]) + 1})")
    n_same = int(labels.sum())
    if n_same == 0 or n_same == labels.size:
        raise ValueError(f"{needs} needs same-person and different-person pairs; there are {n_same} same and "
                         f"{labels.size - n_same} different (one class only)")
    return scores, labels


def counts_sorted(keys_desc: np.ndarray, labels_desc: np.ndarray):
    """The one cumulative-counts core (as scikit-learn's `_binary_clf_curve`), on keys already sorted in
    decreasing order ("most same-looking" first) with their labels in the same order.

    Returns `(ends, fps, tps)`: for each run of equal keys, the index of its last element and the
    numbers of negative/positive pairs whose key is >= that run's key (every tied pair counted, whatever
    their order inside the run). Integer counts: no floating-point drift however many pairs.
    Both the ROC (`binary_counts`) and the exact threshold search (`best_threshold_from_counts`) read it.
    """
    distinct = np.flatnonzero(np.diff(keys_desc)) if keys_desc.size > 1 else np.zeros(0, dtype=np.int64)
    ends = np.r_[distinct, keys_desc.size - 1]
    tps = np.cumsum(labels_desc, dtype=np.int64)[ends]
    fps = (ends + 1) - tps
    return ends, fps, tps


def binary_counts(scores: np.ndarray, labels: np.ndarray, *, greater_is_same: bool = True):
    """Cumulative counts at each distinct score, from the most to the least "same"-looking.

    Returns `(fps, tps, thresholds)`: `tps[i]`/`fps[i]` are the numbers of positive/negative pairs
    predicted "same" when the threshold is `thresholds[i]` (inclusive, see module docstring).
    """
    scores, labels = check_scores(scores, labels)
    keyed = scores if greater_is_same else -scores
    # Any sort will do: only the last index of each run of equal scores is used, and the counts there
    # include every tied pair whatever their order (the default introsort is ~2x mergesort on 15M scores).
    order = np.argsort(keyed)[::-1]
    keyed = keyed[order]
    ends, fps, tps = counts_sorted(keyed, labels[order])
    thresholds = keyed[ends] if greater_is_same else -keyed[ends]
    return fps, tps, thresholds


def best_threshold_from_counts(keys_desc: np.ndarray, labels_desc: np.ndarray, *,
                               greater_is_same: bool = True) -> tuple[float, float]:
    """The exact best threshold on keys sorted in decreasing order (`facever.verification.tenfold`'s rule).

    Candidate j = 0..m (m distinct keys) predicts "same" for the j largest distinct keys: j = 0 none
    (threshold 1.0 above the largest key), j = m all (1.0 below the smallest), else the midpoint of the
    j-th and (j+1)-th distinct keys. Correct decisions = tps + (negatives - fps). Ties go to the
    smallest threshold in the score's own units: the most "same" predictions for similarities, the
    fewest for distances (keys = -distances). Returns `(threshold in score units, accuracy)`.
    """
    n = keys_desc.size
    ends, fps, tps = counts_sorted(keys_desc, labels_desc)
    n_neg = int(fps[-1])
    correct = np.r_[n_neg, tps + (n_neg - fps)]
    j = correct.size - 1 - int(np.argmax(correct[::-1])) if greater_is_same else int(np.argmax(correct))
    distinct = keys_desc[ends]
    if j == 0:
        candidate = distinct[0] + 1.0
    elif j == distinct.size:
        candidate = distinct[-1] - 1.0
    else:
        candidate = (distinct[j - 1] + distinct[j]) / 2.0
    threshold = candidate if greater_is_same else -candidate
    return float(threshold), float(correct[j] / n)


def roc_curve(scores: np.ndarray, labels: np.ndarray, *, greater_is_same: bool = True):
    """Return `(fpr, tpr, thresholds)` with a leading (0, 0) point at threshold +inf (-inf for distances)."""
    fps, tps, thresholds = binary_counts(scores, labels, greater_is_same=greater_is_same)
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    thresholds = np.r_[np.inf if greater_is_same else -np.inf, thresholds]
    return fpr, tpr, thresholds


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under a ROC curve by the trapezoidal rule (ties between classes count half, as Mann-Whitney)."""
    return float(np.trapezoid(tpr, fpr))


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The error rate where FPR equals FNR (= 1 - TPR), linearly interpolated between ROC points."""
    fpr = np.asarray(fpr, dtype=np.float64)
    fnr = 1.0 - np.asarray(tpr, dtype=np.float64)
    diff = fpr - fnr  # increasing along the curve: -1 at the start, +1 at the end
    i = int(np.argmax(diff >= 0))
    if i == 0 or diff[i] == 0:
        return float(fpr[i])
    w = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    """The highest TPR (true accept rate) among ROC points whose FPR <= `far` (no interpolation)."""
    fpr = np.asarray(fpr)
    ok = fpr <= far
    return float(np.max(np.asarray(tpr)[ok])) if ok.any() else 0.0


def det_curve(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The DET curve of a ROC curve: `(far, frr)` = `(fpr, 1 - tpr)` at every ROC point, the false accept
    rate against the false reject rate (the miss rate), as NIST's DET plots and the field's papers show."""
    return np.asarray(fpr, dtype=np.float64), 1.0 - np.asarray(tpr, dtype=np.float64)
