"""ROC analysis from one core: cumulative true/false positive counts at every distinct score.

Convention (as scikit-learn's `roc_curve`): at threshold `t` a pair is predicted "same" iff
`score >= t` (for similarities) or iff `distance <= t` (for distances, `greater_is_same=False`).
The curve starts at (FPR, TPR) = (0, 0) with an infinite threshold and ends at (1, 1).
"""

from __future__ import annotations

import numpy as np


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must be 1-D of equal length, got {scores.shape} and {labels.shape}")
    if labels.dtype != bool:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be boolean or 0/1")
        labels = labels.astype(bool)
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size:
        raise ValueError(
            f"ROC is undefined with one class only ({n_pos} same and {labels.size - n_pos} different pairs)"
        )
    return scores, labels


def binary_counts(scores: np.ndarray, labels: np.ndarray, *, greater_is_same: bool = True):
    """Cumulative counts at each distinct score, from the most to the least "same"-looking.

    Returns `(fps, tps, thresholds)`: `tps[i]`/`fps[i]` are the numbers of positive/negative pairs
    predicted "same" when the threshold is `thresholds[i]` (inclusive, see module docstring).
    Accumulation is done on integer counts, so there is no floating-point drift however many pairs.
    """
    scores, labels = _check(scores, labels)
    keyed = scores if greater_is_same else -scores
    # Any sort will do: only the last index of each run of equal scores is used, and the counts there
    # include every tied pair whatever their order (the default introsort is ~2x mergesort on 15M scores).
    order = np.argsort(keyed)[::-1]
    keyed = keyed[order]
    sorted_labels = labels[order]
    # Last index of each run of equal scores: the counts there include every tied pair.
    distinct = np.flatnonzero(np.diff(keyed)) if keyed.size > 1 else np.zeros(0, dtype=np.int64)
    ends = np.r_[distinct, keyed.size - 1]
    tps = np.cumsum(sorted_labels, dtype=np.int64)[ends]
    fps = (ends + 1) - tps
    thresholds = keyed[ends] if greater_is_same else -keyed[ends]
    return fps, tps, thresholds


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
