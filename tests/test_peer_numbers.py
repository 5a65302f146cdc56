"""Where facever names a peer's number, it is that peer's number: each test runs a transcription of the
peer's own lines (insightface's IJB scripts, facenet's / insightface's calculate_val, SphereFace's
evaluation.m, ...) on inputs built so that a difference would show (vertical ROC steps, ties at the
target, targets below 1 / impostors and above every FAR, runs of equal FARs, small sets), and
requires the same number to float precision."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from facever.verification import ijb, tenfold

DATA = Path(__file__).parent / "data"


# ---------------------------------------------------------------------------------------------------
# IJB TAR@FAR: insightface's ijb_11.py / arcface_torch/eval_ijbc.py


def insightface_ijb_row(label, score, x_labels):
    """ijb_11.py's table row (Step 5), its lines kept: roc_curve, np.flipud of both arrays, then the
    first index of the smallest |fpr - x|. Returns [(tpr, fpr)] per target."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(label, score)
    fpr = np.flipud(fpr)
    tpr = np.flipud(tpr)  # select largest tpr at same fpr
    row = []
    for fpr_iter in np.arange(len(x_labels)):
        _, min_index = min(list(zip(abs(fpr - x_labels[fpr_iter]), range(len(fpr)))))
        row.append((float(tpr[min_index]), float(fpr[min_index])))
    return row


def _ijb_cases():
    rng = np.random.default_rng(7)
    # 1. a vertical step at FAR 0: the best scores are all same pairs (any target below 1/impostors).
    labels = np.r_[np.ones(40, bool), np.zeros(200, bool)]
    scores = np.r_[rng.uniform(0.8, 1.0, 40), rng.uniform(0.0, 0.85, 200)]
    yield "step at FAR 0", labels, scores, (1e-6, 1e-4, 1e-3, 1 / 200, 0.01, 0.1)
    # 2. ties between same and different pairs (diagonal steps) and targets exactly at a FAR level.
    labels = rng.random(300) < 0.3
    scores = np.round(rng.normal(size=300) + 1.2 * labels, 1)
    n_neg = int((~labels).sum())
    yield "ties", labels, scores, (1 / n_neg, 2 / n_neg, 0.05, 0.1, 0.5)
    # 3. a target halfway between two FAR levels (two points equally near) and above every FAR.
    labels = np.array([True] * 4 + [False] * 10)
    scores = np.array([0.95, 0.8, 0.1, 0.05] + [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.0])
    yield "halfway and above", labels, scores, (0.05, 0.15, 1.0, 2.0)
    # 4. random small sets, many ties, the script's own targets.
    for trial in range(25):
        n = int(rng.integers(30, 500))
        labels = rng.random(n) < rng.uniform(0.05, 0.6)
        labels[:2] = [True, False]
        scores = rng.normal(size=n) + labels * rng.uniform(0, 3)
        if trial % 2:
            scores = np.round(scores, 1)
        yield f"random {trial}", labels, scores, (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@pytest.mark.parametrize("case", list(_ijb_cases()), ids=lambda c: c[0])
def test_ijb_insightface_tar_at_far_is_the_scripts_number(case):
    _, labels, scores, targets = case
    fpr, tpr, corners = ijb.roc_with_corners(scores, labels)
    got = ijb.tar_at_far_both(fpr, tpr, targets, corners=corners)["insightface"]
    expected = insightface_ijb_row(labels.astype(int), scores, list(targets))
    assert [(got[f"{t:g}"]["tar"], got[f"{t:g}"]["far"]) for t in targets] == expected


def test_ijb_insightface_rule_takes_the_top_of_the_far0_step():
    # The script prints the top of the FAR-0 step below 1/impostors; the first point in increasing
    # order (facever before) printed 0.00%.
    labels = np.r_[np.ones(5, bool), np.zeros(1000, bool)]
    scores = np.r_[np.linspace(0.9, 0.99, 5), np.linspace(0.0, 0.95, 1000)]
    fpr, tpr, corners = ijb.roc_with_corners(scores, labels)
    got = ijb.tar_at_far_both(fpr, tpr, (1e-6,), corners=corners)
    assert got["insightface"]["1e-06"] == {"tar": 0.4, "far": 0.0}  # 2 of 5 same pairs above every impostor
    assert got["conservative"]["1e-06"] == {"tar": 0.4, "far": 0.0}


# ---------------------------------------------------------------------------------------------------
# VAL@FAR: facenet's / insightface's calculate_val under SciPy <= 1.8


def test_scipy18_slinear_equals_scipy_1_8_on_repeated_x():
    fixture = json.loads((DATA / "scipy18_slinear.json").read_text())
    assert fixture["scipy"].startswith("1.8")
    n = 0
    for case in fixture["cases"]:
        for q, v in zip(case["queries"], case["values"]):
            assert tenfold.scipy18_slinear(case["x"], case["y"], q) == v, (case["x"], case["y"], q)
            n += 1
    assert n > 200


def test_scipy18_slinear_hand_cases():
    x = [0, 0, 0, 0.1, 0.1, 0.2, 0.2, 0.2]
    y = [0, 1, 2, 3, 4, 5, 6, 7]
    f = lambda q: tenfold.scipy18_slinear(x, y, q)  # noqa: E731
    assert f(0.0) == 2.0  # a level: its last point
    assert f(0.05) == 2.5  # last point of the level below to first point of the level above
    assert f(0.1) == 4.0
    assert f(0.15) == 4.5
    assert f(0.2) == 0.0  # the top level repeated: SciPy 1.8's zero-length knot interval
    assert tenfold.scipy18_slinear([0, 0.1, 0.2], [0, 1, 2], 0.2) == 2.0  # the top level once: its y
    with pytest.raises(ValueError, match="outside the interpolation range"):
        f(0.25)


@pytest.mark.parametrize("name", ["bin-305", "small-600", "lfw-like-6000"])
def test_val_at_far_equals_facenet_calculate_val_under_scipy_1_8(name):
    """The numbers facenet's calculate_val printed with SciPy 1.8.1 and scikit-learn's KFold
    (tests/data/make_peer_references.py), on squared distances with ties and runs of equal FARs."""
    fixture = json.loads((DATA / "scipy18_slinear.json").read_text())
    case = next(s for s in fixture["calculate_val"] if s["name"] == name)
    dist = np.array(case["dist"])
    labels = np.array(case["labels"], bool)
    folds = tenfold.kfold_blocks(dist.size, 10)
    for target, (val, val_std, far) in case["val"].items():
        got = tenfold.facenet_val_at_far(dist, labels, folds, far_target=float(target))
        assert (got["val_mean"], got["val_std"], got["far_mean"]) == pytest.approx((val, val_std, far), abs=1e-15)


def calculate_val_reference(thresholds, dist, issame, far_target, folds):
    """facenet's calculate_val (src/facenet.py), every line that decides the number: per fold the
    training FAR at each threshold (same iff dist < t, false accepts over different pairs); the
    threshold from interp1d(far_train, thresholds, kind='slinear') when max(far_train) >= target, else
    0.0; VAL and FAR on the test fold; mean, population std, mean. interp1d is SciPy 1.8's, transcribed
    in `tenfold.scipy18_slinear` and checked against SciPy 1.8.1 above; folds given (KFold blocks)."""

    def rates(t, d, same):
        accepted = d < t
        return (np.count_nonzero(accepted & same) / np.count_nonzero(same),
                np.count_nonzero(accepted & ~same) / np.count_nonzero(~same))

    vals, fars = [], []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        far_train = np.array([rates(t, dist[train], issame[train])[1] for t in thresholds])
        t = tenfold.scipy18_slinear(far_train, thresholds, far_target) if far_train.max() >= far_target else 0.0
        v, f = rates(t, dist[test], issame[test])
        vals.append(v)
        fars.append(f)
    return np.mean(vals), np.std(vals), np.mean(fars)


@pytest.mark.parametrize("seed", range(3))
def test_val_at_far_against_the_transcription_small_sets_and_levels(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(150, 400))
    labels = rng.random(n) < 0.5
    dist = np.round(np.clip(rng.normal(1.5, 0.3, n) - 0.6 * labels, 0, 3.99), 2)  # grid-aligned ties
    folds = tenfold.kfold_blocks(n, 10)
    n_neg_train = (~labels).sum() - np.bincount(folds, weights=~labels).max()
    thresholds = np.arange(0, 4, 0.001)
    # 1e-3 below the first level; a target equal to a level (k / training negatives of fold 0); 0.5.
    level = 3 / ((~labels)[folds != 0].sum())
    for target in (1e-3, 1e-2, level, 0.5, 1.0):
        got = tenfold.facenet_val_at_far(dist, labels, folds, far_target=target)
        ref = calculate_val_reference(thresholds, dist, labels, target, folds)
        assert (got["val_mean"], got["val_std"], got["far_mean"]) == pytest.approx(ref, abs=1e-15), target
    assert n_neg_train > 0


def test_kfold_blocks_are_sklearns_kfold():
    from sklearn.model_selection import KFold

    for n in (20, 305, 6000, 6001, 7):
        k = min(10, n)
        expected = np.empty(n, int)
        for i, (_, test) in enumerate(KFold(n_splits=k, shuffle=False).split(np.arange(n))):
            expected[test] = i
        assert np.array_equal(tenfold.kfold_blocks(n, k), expected)


# ---------------------------------------------------------------------------------------------------
# Conventions: the whole printed table of insightface's verification.py, facenet's validate_on_lfw.py,
# SphereFace's evaluation.m


def _fixture_set(name):
    from facever.core.embeddings_file import Embeddings
    from facever.protocols.pair_protocol import PairProtocol

    meta = json.loads((DATA / "peer_references.json").read_text())
    arrays = np.load(DATA / "peer_references.npz")
    first, second = arrays[f"{name}_first"], arrays[f"{name}_second"]
    labels = arrays[f"{name}_labels"]
    n = labels.size
    paths = [f"a/{i}.jpg" for i in range(n)] + [f"b/{i}.jpg" for i in range(n)]
    emb = Embeddings(paths, np.concatenate([first, second]), metadata={"flip": "concat"})
    protocol = PairProtocol("pairs", paths[:n], paths[n:], labels, tenfold.kfold_blocks(n, 10))
    expected = next(s for s in meta["sets"] if s["name"] == name)
    return protocol, emb, expected


SETS = ["small-300", "ties-400", "lfw-like-1200"]


@pytest.mark.parametrize("name", SETS)
def test_insightface_convention_prints_verification_py_numbers(name):
    """Against insightface's own evaluate() (recognition/arcface_torch/eval/verification.py) run under
    SciPy 1.8.1 and scikit-learn 1.1.3 on the same embeddings (tests/data/make_peer_references.py)."""
    from facever.verification.evaluate import evaluate_protocol

    protocol, emb, expected = _fixture_set(name)
    result = evaluate_protocol(protocol, emb, convention="insightface")
    peer = result.peer
    for key in ("accuracy_mean", "accuracy_std", "val", "val_std", "far", "xnorm"):
        assert peer[key] == pytest.approx(expected["insightface"][key], abs=1e-12), key
    assert peer["lines"][-1] == (f"Accuracy-Flip: {expected['insightface']['accuracy_mean']:1.5f}+-"
                                 f"{expected['insightface']['accuracy_std']:1.5f}")
    assert result.to_dict()["settings"]["convention"]["name"] == "insightface"


@pytest.mark.parametrize("name", SETS)
def test_facenet_convention_prints_validate_on_lfw_numbers(name):
    """Against facenet's own lfw.evaluate / calculate_roc / calculate_val with --distance_metric 1
    --use_flipped_images --subtract_mean, and validate_on_lfw.py's AUC and EER lines, under SciPy 1.8.1."""
    from facever.verification.evaluate import evaluate_protocol

    protocol, emb, expected = _fixture_set(name)
    peer = evaluate_protocol(protocol, emb, convention="facenet").peer
    for key in ("accuracy_mean", "accuracy_std", "val", "val_std", "far", "auc", "eer"):
        assert peer[key] == pytest.approx(expected["facenet"][key], abs=1e-12), key


def sphereface_reference(first, second, labels, folds):
    """SphereFace's test/code/evaluation.m, its 10-fold loop, getThreshold and getAccuracy in numpy
    (MATLAB columns are rows here): per fold mu = mean of the training folds' left and right features,
    subtract, divide each by its norm, scores = sum(L .* R); thresholds (-10000:10000)/10000, the mean of
    those with the highest accuracy; accuracy = (#same > t + #different < t) / #pairs."""
    fl, fr = first.astype(np.float64), second.astype(np.float64)
    accs = []
    for i in np.unique(folds):
        val, test = folds != i, folds == i
        mu = np.concatenate([fl[val], fr[val]]).mean(axis=0)
        L, R = fl - mu, fr - mu
        L = L / np.sqrt((L ** 2).sum(axis=1, keepdims=True))
        R = R / np.sqrt((R ** 2).sum(axis=1, keepdims=True))
        scores = (L * R).sum(axis=1)

        def accuracy(s, flags, t):
            return ((s[flags] > t).sum() + (s[~flags] < t).sum()) / s.size

        thresholds = np.arange(-10000, 10001) / 10000
        acc = np.array([accuracy(scores[val], labels[val], t) for t in thresholds])
        best = thresholds[acc == acc.max()].mean()
        accs.append(accuracy(scores[test], labels[test], best))
    return np.array(accs)


@pytest.mark.parametrize("name", SETS[:2])
def test_sphereface_convention_prints_evaluation_m_numbers(name):
    from facever.verification.evaluate import evaluate_protocol

    protocol, emb, _ = _fixture_set(name)
    n = len(protocol)
    first, second = emb.embeddings[:n], emb.embeddings[n:]
    result = evaluate_protocol(protocol, emb, convention="sphereface")
    expected = sphereface_reference(first, second, protocol.labels, protocol.folds)
    np.testing.assert_allclose(result.peer["fold_accuracies"], expected, rtol=0, atol=1e-12)
    assert result.peer["lines"][-1] == f"AVE\t{np.mean(expected) * 100:2.2f}%"


def test_facever_convention_is_the_engine_and_peer_conventions_refuse_their_own_settings():
    from facever.core.errors import FaceverError
    from facever.core.embeddings_file import Embeddings
    from facever.verification.evaluate import evaluate_protocol

    protocol, emb, _ = _fixture_set("small-300")
    default = evaluate_protocol(protocol, emb)
    same = evaluate_protocol(protocol, emb, convention="facever")
    assert default.to_dict() == same.to_dict()
    assert default.to_dict()["settings"]["convention"]["name"] == "facever"
    assert default.peer is None
    with pytest.raises(FaceverError, match="the facenet convention sets metric"):
        evaluate_protocol(protocol, emb, convention="facenet", metric="l2")
    plain = Embeddings(emb.paths, emb.embeddings[:, :8], metadata={"flip": "none"})
    with pytest.raises(FaceverError, match="embed with flip concat"):
        evaluate_protocol(protocol, plain, convention="insightface")
    with pytest.raises(ValueError, match="convention` must be one of"):
        evaluate_protocol(protocol, emb, convention="deepface")


# ---------------------------------------------------------------------------------------------------
# IJB 1:N as insightface's ijb_1n.py computes it


def ijb_1n_reference(template_ids, feats, gallery_sets, probe_templates, probe_subjects):
    """ijb_1n.py's numbers, each line that decides them: galleries concatenated; np.unique of the chosen
    templates with return_index for their subject; gen_mask (exactly one gallery template per probe
    subject); similarity = probes . gallery^T; top-k from argsort(-similarity) (stable here); then
    ceil(q x far)-th largest non-mate similarity and recall = #(mate > th) / q."""
    import heapq

    row = {t: i for i, t in enumerate(template_ids)}
    g_t = np.concatenate([g[0] for g in gallery_sets])
    g_s = np.concatenate([g[1] for g in gallery_sets])
    gu, gi = np.unique(g_t, return_index=True)
    g_ids = g_s[gi]
    pu, pi = np.unique(probe_templates, return_index=True)
    p_ids = probe_subjects[pi]
    mask = []
    for qid in p_ids:
        hits = [i for i, x in enumerate(g_ids) if x == qid]
        assert len(hits) == 1
        mask.append(hits[0])
    gallery = np.array([feats[row[t]] for t in gu], dtype=np.float64)
    query = np.array([feats[row[t]] for t in pu], dtype=np.float64)
    sim = query @ gallery.T
    order = np.argsort(-sim, axis=1, kind="stable")
    q = query.shape[0]
    out = {f"top{k}": sum(mask[i] in order[i, :k] for i in range(q)) / q for k in (1, 5, 10)}
    pos_sims = np.array([sim[i, mask[i]] for i in range(q)])
    neg = [sim[i, j] for i in range(q) for j in range(gallery.shape[0]) if j != mask[i]]
    need = [math.ceil(q * f) for f in (0.01, 0.1)]
    largest = heapq.nlargest(max(need), neg)
    for f, k in zip((0.01, 0.1), need):
        th = largest[k - 1]
        out[f"{f:g}"] = (float(np.sum(pos_sims > th) / q), float(th))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_ijb_insightface_one_to_n_is_ijb_1n_numbers(seed):
    from facever.protocols.ijb import SearchSet

    rng = np.random.default_rng(seed)
    n_subjects, dim = 60, 12
    centers = rng.normal(size=(n_subjects, dim))
    # gallery: one template per subject, split into two galleries; probes: 1-4 templates per subject
    g_ids = np.arange(n_subjects)
    probe_subjects = rng.integers(0, n_subjects, 150)
    template_ids = np.arange(1000, 1000 + n_subjects + probe_subjects.size)
    subj = np.r_[g_ids, probe_subjects]
    feats = centers[subj] + rng.uniform(0.6, 1.6) * rng.normal(size=(subj.size, dim))
    if seed == 2:
        feats = np.round(feats, 1)  # ties between non-mate similarities
    feats = (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)
    g1 = SearchSet(Path("g1.csv"), template_ids[:30], g_ids[:30])
    g2 = SearchSet(Path("g2.csv"), template_ids[30:n_subjects], g_ids[30:])
    # a probe template listed on several rows (the csv has one row per image): np.unique keeps one
    probe_t = np.r_[template_ids[n_subjects:], template_ids[n_subjects:n_subjects + 5]]
    probe_s = np.r_[probe_subjects, probe_subjects[:5]]
    probes = SearchSet(Path("probe.csv"), probe_t, probe_s)
    got = ijb.insightface_search(template_ids, feats, [("G1", g1), ("G2", g2)], probes)
    ref = ijb_1n_reference(template_ids, feats, [(g1.templates, g1.subjects), (g2.templates, g2.subjects)],
                           probe_t, probe_s)
    for k in (1, 5, 10):
        assert got[f"top{k}"] == ref[f"top{k}"]
    for f in ("0.01", "0.1"):
        assert (got["tpr_at_far"][f]["tpr"], got["tpr_at_far"][f]["threshold"]) == ref[f]
    # two gallery templates of one subject: the script's gen_mask stops
    g2_dup = SearchSet(Path("g2.csv"), np.r_[g2.templates, template_ids[n_subjects]], np.r_[g2.subjects, 0])
    with pytest.raises(Exception, match="exactly one gallery template"):
        ijb.insightface_search(template_ids, feats, [("G1", g1), ("G2", g2_dup)], probes)


def test_conventions_refuse_benchmarks_their_scripts_do_not_define():
    from facever.core.errors import FaceverError
    from facever.core.settings import BENCHMARKS
    from facever.verification.conventions import check_benchmark

    for name in BENCHMARKS:
        assert check_benchmark("facever", name).name == "facever"
    for name in ("lfw", "fglfw", "calfw", "cplfw", "bin"):
        for conv in ("insightface", "facenet", "sphereface"):
            assert check_benchmark(conv, name).name == conv
    assert check_benchmark("insightface", "ijbc").ijb_mode == "F1N1D1"
    for conv, bench in (("facenet", "ytf"), ("insightface", "ytf"), ("facenet", "ijbc"), ("sphereface", "ijbb")):
        with pytest.raises(FaceverError, match="has no"):
            check_benchmark(conv, bench)


def test_ensemble_scores_each_model_by_the_convention_and_fuses_as_facever():
    from facever.core.embeddings_file import Embeddings
    from facever.embedding.ensemble import evaluate_ensemble
    from facever.verification.evaluate import evaluate_protocol

    protocol, emb, _ = _fixture_set("small-300")
    other = Embeddings(emb.paths, emb.embeddings[:, ::-1].copy() + 1.0, metadata={"flip": "concat"})
    ens = evaluate_ensemble(protocol, [emb, other], ["a", "b"], convention="insightface")
    alone = evaluate_protocol(protocol, emb, convention="insightface")
    assert ens.models["a"].peer == alone.peer
    assert ens.ensemble.peer is None and ens.ensemble.settings["convention"]["name"] == "facever"
