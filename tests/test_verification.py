"""The verification engine against slow, obviously-correct reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from facever.verification import roc, tenfold
from facever.verification.scores import l2_normalize, pair_scores
from tests.helpers.references import brute_best_threshold, brute_kfold, facenet_calculate_roc_accuracy

def random_case(seed, n=None, ties=False, n_folds=10):
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(30, 250))
    labels = rng.random(n) < rng.uniform(0.3, 0.7)
    labels[:2] = [True, False]
    scores = rng.normal(size=n) + 1.2 * labels
    if ties:
        scores = np.round(scores, 1)  # many exact ties, within and across classes
    folds = np.sort(rng.integers(0, n_folds, size=n))
    folds[:n_folds] = np.arange(n_folds)  # every fold non-empty; sizes unequal and not divisible by 10
    folds = np.sort(folds)
    return scores, labels, folds


# ---------------------------------------------------------------- threshold search


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("ties", [False, True])
def test_exact_threshold_matches_brute_force(seed, ties):
    scores, labels, _ = random_case(seed, ties=ties)
    for greater in (True, False):
        s = scores if greater else -scores
        t, acc = tenfold.best_threshold_exact(s, labels, greater_is_same=greater)
        bt, bacc = brute_best_threshold(s, labels, greater)
        assert acc == pytest.approx(bacc, abs=1e-12)
        assert t == pytest.approx(bt, abs=1e-12)


def test_exact_threshold_hand_case():
    # scores 0.1 (diff), 0.4 (same), 0.4 (diff), 0.9 (same): candidates -0.9, 0.25, 0.65, 1.9
    # accuracies: 0.5, 0.75, 0.75, 0.5 -> tie between 0.25 and 0.65 -> the smallest, 0.25.
    t, acc = tenfold.best_threshold_exact([0.1, 0.4, 0.4, 0.9], [False, True, False, True])
    assert (t, acc) == (pytest.approx(0.25), 0.75)
    # As distances (same iff d < t): d < 0.25 and d < 0.65 are both right 3 times -> the smallest, 0.25.
    t, acc = tenfold.best_threshold_exact([0.9, 0.4, 0.4, 0.1], [False, True, False, True], greater_is_same=False)
    assert (t, acc) == (pytest.approx(0.25), 0.75)


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("ties", [False, True])
def test_kfold_exact_matches_brute_force(seed, ties):
    scores, labels, folds = random_case(seed, ties=ties, n_folds=int(np.random.default_rng(seed).integers(2, 11)))
    for greater in (True, False):
        s = scores if greater else -scores
        res = tenfold.kfold_accuracy(s, labels, folds, greater_is_same=greater)
        ts, accs = brute_kfold(s, labels, folds, greater)
        np.testing.assert_allclose(res.thresholds, ts, atol=1e-12)
        np.testing.assert_allclose(res.accuracies, accs, atol=1e-12)
        assert res.sizes.sum() == labels.size
        assert res.std == pytest.approx(np.std(accs))
        assert res.stderr == pytest.approx(np.std(accs, ddof=1) / np.sqrt(accs.size))


@pytest.mark.parametrize("seed", range(6))
def test_grid_mode_reproduces_facenet_loop(seed):
    rng = np.random.default_rng(seed)
    n = 600 if seed % 2 else 1234  # 1234 is not divisible by 10: unequal contiguous folds
    labels = rng.random(n) < 0.5
    emb1 = rng.normal(size=(n, 16)).astype(np.float32)
    emb2 = (emb1 * labels[:, None] + rng.normal(size=(n, 16)) * rng.uniform(0.5, 2.0)).astype(np.float32)
    dist = pair_scores(emb1, emb2, metric="l2")
    folds = np.concatenate([np.full(len(c), i) for i, c in enumerate(np.array_split(np.arange(n), 10))])
    res = tenfold.kfold_accuracy(dist, labels, folds, thresholds="grid", greater_is_same=False)
    chosen, accuracy = facenet_calculate_roc_accuracy(dist, labels)
    np.testing.assert_array_equal(res.thresholds, chosen)
    np.testing.assert_array_equal(res.accuracies, accuracy)


def test_grid_mode_refuses_similarities():
    with pytest.raises(ValueError, match="distances"):
        tenfold.kfold_accuracy([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0], [0, 0, 1, 1], thresholds="grid")


def test_kfold_per_fold_scores_use_their_own_row():
    scores, labels, folds = random_case(3, n=120, n_folds=4)
    rows = np.stack([scores + k for k in range(4)])  # fold k's scores shifted by k
    res = tenfold.kfold_accuracy(rows, labels, folds)
    for k in range(4):
        t, _ = brute_best_threshold(rows[k][folds != k], labels[folds != k])
        assert res.thresholds[k] == pytest.approx(t)


def test_kfold_input_errors():
    with pytest.raises(ValueError, match="at least two folds"):
        tenfold.kfold_accuracy([0.1, 0.2], [1, 0], [0, 0])
    with pytest.raises(ValueError, match="NaN"):
        tenfold.best_threshold_exact([0.1, np.nan], [1, 0])
    with pytest.raises(ValueError, match="one id per pair"):
        tenfold.kfold_accuracy([0.1, 0.2, 0.3], [1, 0, 1], [0, 1])


# ---------------------------------------------------------------- ROC family


@pytest.mark.parametrize("seed", range(30))
def test_roc_matches_sklearn(seed):
    scores, labels, _ = random_case(seed, ties=bool(seed % 2))
    fpr, tpr, thr = roc.roc_curve(scores, labels)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    assert roc.auc(fpr, tpr) == pytest.approx(roc_auc_score(labels, scores))
    # distances: the same curve with the sign flipped
    dfpr, dtpr, dthr = roc.roc_curve(-scores, labels, greater_is_same=False)
    np.testing.assert_allclose(dfpr, fpr)
    np.testing.assert_allclose(dtpr, tpr)
    np.testing.assert_allclose(dthr[1:], -thr[1:])
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)


@pytest.mark.parametrize("seed", range(30))
def test_tar_at_far_and_eer_brute_force(seed):
    scores, labels, _ = random_case(seed, ties=bool(seed % 2))
    fpr, tpr, _ = roc.roc_curve(scores, labels)
    pos, neg = scores[labels], scores[~labels]
    for far in (1e-3, 1e-2, 1e-1, 0.3):
        best = 0.0
        for t in np.r_[np.inf, np.unique(scores)]:
            if np.mean(neg >= t) <= far:
                best = max(best, np.mean(pos >= t))
        assert roc.tar_at_far(fpr, tpr, far) == pytest.approx(best)
    eer = roc.equal_error_rate(fpr, tpr)
    # brute force: walk the piecewise-linear curve densely and take the point where FPR and FNR meet
    w = np.linspace(0, 1, 2001)[None, :]
    x = (fpr[:-1, None] + w * np.diff(fpr)[:, None]).ravel()
    fnr = (1 - (tpr[:-1, None] + w * np.diff(tpr)[:, None])).ravel()
    j = np.argmin(np.abs(x - fnr))
    assert abs(x[j] - fnr[j]) < 1e-3
    assert eer == pytest.approx(x[j], abs=1e-3)


def test_roc_one_class_is_an_error():
    with pytest.raises(ValueError, match="one class"):
        roc.roc_curve([0.1, 0.2], [True, True])


def test_hand_computed_roc():
    fpr, tpr, thr = roc.roc_curve([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert roc.auc(fpr, tpr) == pytest.approx(0.75)
    assert roc.equal_error_rate(fpr, tpr) == pytest.approx(0.5)
    assert roc.tar_at_far(fpr, tpr, 0.0) == 0.5


# facenet VAL@FAR: tests/test_peer_numbers.py (against facenet calculate_val under SciPy 1.8).


# ---------------------------------------------------------------- scores


def test_pair_scores():
    a = np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
    b = np.array([[6.0, 8.0], [0.0, 2.0]], dtype=np.float32)
    np.testing.assert_allclose(pair_scores(a, b), [1.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(pair_scores(a, b, metric="l2"), [0.0, 2.0], atol=1e-6)
    with pytest.raises(ValueError, match="norm zero"):
        l2_normalize(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        pair_scores(np.array([[np.nan, 1.0]]), np.array([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="same shape"):
        pair_scores(np.ones((2, 3)), np.ones((2, 4)))
