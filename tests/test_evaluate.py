"""The evaluator on protocols + embeddings: mean subtraction, missing images, bad embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from facever.protocols.pair_protocol import PairProtocol
from facever.core.embeddings_file import Embeddings
from facever.core.errors import FaceverError
from facever.verification.evaluate import evaluate_protocol
from tests.helpers.references import brute_best_threshold, hand_auc


def make_case(seed=0, n_people=60, per_person=4, dim=8, n_pairs=200, noise=1.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, dim)) + 0.7  # a shared offset, which mean subtraction removes
    paths, rows = [], []
    for p in range(n_people):
        for k in range(per_person):
            paths.append(f"P{p}/P{p}_{k + 1:04d}.jpg")
            rows.append(centres[p] + noise * rng.normal(size=dim))
    emb = Embeddings(paths, np.array(rows, dtype=np.float32))
    first, second, labels = [], [], []
    for i in range(n_pairs):
        a = int(rng.integers(n_people))
        if i % 2 == 0:
            k1, k2 = rng.choice(per_person, 2, replace=False)
            b = a
        else:
            b = (a + 1 + int(rng.integers(n_people - 1))) % n_people
            k1, k2 = rng.integers(per_person, size=2)
        first.append(f"P{a}/P{a}_{k1 + 1:04d}.jpg")
        second.append(f"P{b}/P{b}_{k2 + 1:04d}.jpg")
        labels.append(a == b)
    folds = np.repeat(np.arange(10), n_pairs // 10)
    return PairProtocol("test", first, second, np.array(labels), folds), emb


def cosine(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("seed", range(3))
def test_matches_hand_computed_scores(seed):
    protocol, emb = make_case(seed)
    res = evaluate_protocol(protocol, emb)
    idx = emb.index()
    scores = np.array([cosine(emb.embeddings[idx[a]], emb.embeddings[idx[b]])
                       for a, b in zip(protocol.first, protocol.second)])
    for k in range(10):
        train = protocol.folds != k
        t, _ = brute_best_threshold(scores[train], protocol.labels[train])
        assert res.kfold.thresholds[k] == pytest.approx(t, abs=1e-6)
        acc = np.mean((scores[~train] > t) == protocol.labels[~train])
        assert res.kfold.accuracies[k] == pytest.approx(acc)
    d = res.to_dict()
    assert d["accuracy"]["mean"] == pytest.approx(np.mean(res.kfold.accuracies))
    assert set(d["tar_at_far"]) == {"0.001", "0.01", "0.1"}
    assert len(d["folds"]) == 10 and {"accuracy", "threshold"} <= set(d["folds"][0])
    assert d["pairs"] == {"total": 200, "same": 100, "different": 100, "dropped": 0}
    assert d["auc"] == pytest.approx(hand_auc(scores, protocol.labels), abs=1e-9)


def test_subtract_mean_against_hand_computation():
    protocol, emb = make_case(1)
    res = evaluate_protocol(protocol, emb, subtract_mean=True)
    idx = emb.index()
    e1 = np.array([emb.embeddings[idx[a]] for a in protocol.first], dtype=np.float64)
    e2 = np.array([emb.embeddings[idx[b]] for b in protocol.second], dtype=np.float64)
    for k in range(10):
        train = protocol.folds != k
        mean = np.concatenate([e1[train], e2[train]]).mean(axis=0)
        scores = np.array([cosine(a - mean, b - mean) for a, b in zip(e1, e2)])
        t, _ = brute_best_threshold(scores[train], protocol.labels[train])
        assert res.kfold.thresholds[k] == pytest.approx(t, abs=1e-5)
        assert res.kfold.accuracies[k] == pytest.approx(np.mean((scores[~train] > t) == protocol.labels[~train]))


def test_grid_mode_uses_squared_l2():
    protocol, emb = make_case(2)
    res = evaluate_protocol(protocol, emb, thresholds="grid")
    assert res.settings["metric"] == "l2"
    assert all(abs(t * 100 - round(t * 100)) < 1e-9 for t in res.kfold.thresholds)  # on the 0.01 grid
    with pytest.raises(FaceverError, match="grid"):
        evaluate_protocol(protocol, emb, thresholds="grid", metric="cosine")


def test_missing_images_error_or_dropped_with_folds_kept():
    protocol, emb = make_case(3)
    keep = [i for i, p in enumerate(emb.paths) if p != protocol.first[5]]
    partial = Embeddings([emb.paths[i] for i in keep], emb.embeddings[keep])
    with pytest.raises(FaceverError, match=r"pairs need images with no embedding .*`allow_missing`"):
        evaluate_protocol(protocol, partial)
    res = evaluate_protocol(protocol, partial, allow_missing=True)
    n_missing = sum(protocol.first[5] in (a, b) for a, b in zip(protocol.first, protocol.second))
    assert res.dropped_pairs == n_missing and res.n_pairs == 200 - n_missing
    # the folds of the file are kept: fold 0 loses its pair(s), no pair moves to another fold
    sizes = dict(zip(res.kfold.fold_ids.tolist(), res.kfold.sizes.tolist()))
    expected = np.bincount(protocol.folds[[protocol.first[5] not in (a, b)
                                           for a, b in zip(protocol.first, protocol.second)]])
    assert [sizes[k] for k in range(10)] == expected.tolist()


def test_extension_hint():
    protocol, emb = make_case(4)
    png = Embeddings([p.replace(".jpg", ".png") for p in emb.paths], emb.embeddings)
    with pytest.raises(FaceverError, match=r"is the image extension right \(`ext`\)"):
        evaluate_protocol(protocol, png)


def test_bad_embeddings():
    protocol, emb = make_case(5)
    bad = emb.embeddings.copy()
    bad[emb.index()[protocol.first[0]]] = np.nan
    with pytest.raises(FaceverError, match="NaN"):
        evaluate_protocol(protocol, Embeddings(emb.paths, bad))
    bad = emb.embeddings.copy()
    bad[emb.index()[protocol.second[3]]] = 0
    with pytest.raises(FaceverError, match="all zeros"):
        evaluate_protocol(protocol, Embeddings(emb.paths, bad))
    one_class = PairProtocol("x", protocol.first[:20:2], protocol.second[:20:2], np.ones(10, bool), np.arange(10))
    with pytest.raises(FaceverError, match="only same-person pairs"):
        evaluate_protocol(one_class, emb)


def test_perfect_separation():
    protocol, emb = make_case(6, noise=0.01)
    res = evaluate_protocol(protocol, emb)
    assert res.kfold.mean == 1.0 and res.auc == 1.0 and res.eer == 0.0
