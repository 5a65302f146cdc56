"""Writes scipy18_slinear.json: what SciPy 1.8's `interp1d(x, y, kind="slinear")` returned on x with
repeated values (the FAR curves of facenet's and insightface's VAL@FAR), for
tests/test_peer_numbers.py to check facever's transcription against.

Run it under an old SciPy, in a throw-away environment (SciPy >= 1.9 raises on repeated x):
    python3.10 -m venv /tmp/oldscipy && /tmp/oldscipy/bin/pip install "scipy==1.8.1" "numpy<1.23"
    /tmp/oldscipy/bin/python tests/data/make_scipy18_slinear.py
"""

import json
from pathlib import Path

import numpy as np
import scipy
from scipy.interpolate import interp1d

rng = np.random.default_rng(2022)
cases = []
for trial in range(60):
    m = int(rng.integers(2, 30))
    # FAR-like levels: k / n_negatives, each repeated over several thresholds; y increasing thresholds.
    n_neg = int(rng.integers(1, 12))
    x = np.sort(rng.integers(0, n_neg + 1, m)) / n_neg
    y = np.round(np.sort(rng.random(m)) * 4, 3)
    queries = sorted(set(np.unique(x).tolist()) | set(rng.uniform(x.min(), x.max(), 3).tolist()))
    values = [float(interp1d(x, y, kind="slinear")(q)) for q in queries]
    cases.append({"x": x.tolist(), "y": y.tolist(), "queries": queries, "values": values})
out = {"scipy": scipy.__version__, "numpy": np.__version__, "cases": cases}
Path(__file__).with_name("scipy18_slinear.json").write_text(json.dumps(out) + "\n")


# facenet's calculate_val (src/facenet.py, davidsandberg/facenet at 096ed77), its lines kept, on given
# squared distances instead of embeddings (`dist = distance(...)` is the only line replaced), with
# SciPy 1.8's interp1d and scikit-learn's KFold: VAL@FAR as the script printed it.
from sklearn.model_selection import KFold


def calculate_val_far(threshold, dist, actual_issame):
    predict_issame = np.less(dist, threshold)
    true_accept = np.sum(np.logical_and(predict_issame, actual_issame))
    false_accept = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    n_same = np.sum(actual_issame)
    n_diff = np.sum(np.logical_not(actual_issame))
    val = float(true_accept) / float(n_same)
    far = float(false_accept) / float(n_diff)
    return val, far


def calculate_val(thresholds, dist, actual_issame, far_target, nrof_folds=10):
    nrof_pairs = len(actual_issame)
    nrof_thresholds = len(thresholds)
    k_fold = KFold(n_splits=nrof_folds, shuffle=False)
    val = np.zeros(nrof_folds)
    far = np.zeros(nrof_folds)
    indices = np.arange(nrof_pairs)
    for fold_idx, (train_set, test_set) in enumerate(k_fold.split(indices)):
        far_train = np.zeros(nrof_thresholds)
        for threshold_idx, threshold in enumerate(thresholds):
            _, far_train[threshold_idx] = calculate_val_far(threshold, dist[train_set], actual_issame[train_set])
        if np.max(far_train) >= far_target:
            f = interp1d(far_train, thresholds, kind='slinear')
            threshold = f(far_target)
        else:
            threshold = 0.0
        val[fold_idx], far[fold_idx] = calculate_val_far(threshold, dist[test_set], actual_issame[test_set])
    return np.mean(val), np.std(val), np.mean(far)


sets = []
for name, n, gap in (("bin-305", 305, 0.5), ("small-600", 600, 0.7), ("lfw-like-6000", 6000, 0.8)):
    labels = np.zeros(n, bool)
    labels[: n // 2] = True
    rng.shuffle(labels)
    dist = np.where(labels, rng.normal(1.7 - gap, 0.3, n), rng.normal(1.7, 0.2, n))
    dist = np.round(np.clip(dist, 0.0, 3.9), 4)  # 4 decimals: ties between pairs, exact in JSON
    results = {}
    for target in (1e-3, 1e-2):
        v, s, f = calculate_val(np.arange(0, 4, 0.001), dist, labels, target)
        results[repr(target)] = [float(v), float(s), float(f)]
    sets.append({"name": name, "dist": dist.tolist(), "labels": labels.astype(int).tolist(), "val": results})
out["calculate_val"] = sets
Path(__file__).with_name("scipy18_slinear.json").write_text(json.dumps(out) + "\n")
