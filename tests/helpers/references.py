"""Independent references the verification engine is checked against: the documented threshold search
done by brute force, and davidsandberg/facenet's own k-fold accuracy loop as written there."""

from __future__ import annotations

import numpy as np


def brute_best_threshold(scores, labels, greater_is_same=True):
    """Enumerate the documented candidates one by one; keep the first best in ascending order
    (ties -> smallest threshold)."""
    values = sorted(set(float(s) for s in scores))
    candidates = [values[0] - 1.0] + [(a + b) / 2.0 for a, b in zip(values[:-1], values[1:])] + [values[-1] + 1.0]
    scores = np.asarray(scores)
    labels = np.asarray(labels, dtype=bool)
    best_t, best_acc = None, -1.0
    for t in sorted(candidates):
        pred = scores > t if greater_is_same else scores < t
        acc = np.mean(pred == labels)
        if acc > best_acc:
            best_t, best_acc = t, acc
    return best_t, best_acc


def brute_kfold(scores, labels, folds, greater_is_same=True):
    accs, ts = [], []
    for f in sorted(set(folds.tolist())):
        train = folds != f
        t, _ = brute_best_threshold(scores[train], labels[train], greater_is_same)
        test = ~train
        pred = scores[test] > t if greater_is_same else scores[test] < t
        accs.append(np.mean(pred == labels[test]))
        ts.append(t)
    return np.array(ts), np.array(accs)


def facenet_calculate_roc_accuracy(dist, actual_issame, nrof_folds=10):
    """davidsandberg/facenet's `calculate_roc` accuracy part, as straightforwardly as it is written there
    (KFold without shuffle = contiguous folds; np.less; argmax; population std)."""
    thresholds = np.arange(0, 4, 0.01)
    n = len(actual_issame)
    indices = np.arange(n)
    fold_bounds = np.array_split(indices, nrof_folds)
    accuracy = np.zeros(nrof_folds)
    chosen = np.zeros(nrof_folds)
    for fold_idx, test_set in enumerate(fold_bounds):
        train_set = np.setdiff1d(indices, test_set)
        acc_train = np.zeros(len(thresholds))
        for threshold_idx, threshold in enumerate(thresholds):
            predict_issame = np.less(dist[train_set], threshold)
            tp = np.sum(np.logical_and(predict_issame, actual_issame[train_set]))
            tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(actual_issame[train_set])))
            acc_train[threshold_idx] = float(tp + tn) / dist[train_set].size
        best = np.argmax(acc_train)
        chosen[fold_idx] = thresholds[best]
        predict_issame = np.less(dist[test_set], thresholds[best])
        tp = np.sum(np.logical_and(predict_issame, actual_issame[test_set]))
        tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(actual_issame[test_set])))
        accuracy[fold_idx] = float(tp + tn) / dist[test_set].size
    return chosen, accuracy


def hand_scores(embeddings, protocol) -> np.ndarray:
    """Cosine similarity of every pair, in float64 by numpy from the embeddings file's rows."""
    index = {p: i for i, p in enumerate(embeddings.paths)}
    rows = np.asarray(embeddings.embeddings, dtype=np.float64)
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    a = rows[[index[p] for p in protocol.first]]
    b = rows[[index[p] for p in protocol.second]]
    return np.sum(a * b, axis=1)


def hand_auc(scores, labels) -> float:
    """The share of (same, different) pairs the scores order correctly, ties counting half."""
    scores, labels = np.asarray(scores), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels][:, None], scores[~labels][None, :]
    return float(np.mean((pos > neg) + 0.5 * (pos == neg)))


def hand_verification(embeddings, protocol) -> tuple[float, float]:
    """`(mean k-fold accuracy, AUC)` of `protocol` on `embeddings` without the engine: cosines by numpy,
    each fold's threshold by brute force on the other folds (cosine, exact thresholds: eval-lfw's defaults)."""
    scores = hand_scores(embeddings, protocol)
    labels = np.asarray(protocol.labels, dtype=bool)
    _, accuracies = brute_kfold(scores, labels, np.asarray(protocol.folds))
    return float(np.mean(accuracies)), hand_auc(scores, labels)


def plain_model_input(crops, model):
    """A model's input written out by hand, independently of the pipeline: each uint8 RGB crop fitted to the
    model's input with the crop policy (`fit_to_input`), then `(x / 255 - mean) / std` per channel in the
    model's colour order, as contiguous NCHW float32."""
    import torch

    from facever.core.crop import fit_to_input

    size = tuple(int(v) for v in model.input_size)
    x = np.stack([fit_to_input(np.asarray(c, dtype=np.uint8), size) for c in crops]).astype(np.float64) / 255.0
    if model.color.upper() == "BGR":
        x = x[..., ::-1]
    x = (x - np.asarray(model.mean, dtype=np.float64)) / np.asarray(model.std, dtype=np.float64)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32))
