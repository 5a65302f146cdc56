"""Calibrated thresholds (verification/calibration.py) against brute force: the Clopper-Pearson bound from
binomial sums, the threshold from every candidate, a held-out check that the promised FAR holds on new
pairs, the probability maps against scikit-learn, and the refusals."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from facever.core.errors import FaceverError, InputFileError
from facever.verification import calibration as cal


# -- references ------------------------------------------------------------------------------------


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed term by term."""
    return math.fsum(math.comb(n, i) * p ** i * (1.0 - p) ** (n - i) for i in range(k + 1))


@functools.lru_cache(maxsize=None)
def brute_upper(k: int, n: int, confidence: float) -> float:
    """The p where P(X <= k | n, p) = 1 - confidence, by bisection on the binomial sum (1 when k = n)."""
    if k == n:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if binom_cdf(k, n, mid) > 1.0 - confidence:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def brute_thresholds(scores, labels, far, confidence):
    """Every candidate threshold (the top score, each midpoint between distinct scores, one below all),
    counted by direct comparison: the smallest whose brute-force bound is at most `far`."""
    d = np.unique(scores)[::-1]
    candidates = [d[0]] + [(a + b) / 2 for a, b in zip(d[:-1], d[1:])] + [d[-1] - 1.0]
    n_imp = int((~labels).sum())
    best = None
    for t in candidates:  # descending: keep the last (smallest) that qualifies
        k = int(np.sum(scores[~labels] > t))
        if brute_upper(k, n_imp, confidence) <= far:
            best = (t, k, int(np.sum(scores[labels] > t)))
        elif k > 0:
            break  # k only grows from here, and the bound with it
    return best


# -- the bound ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 7, 30, 200])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_upper_equals_the_binomial_sum_inversion(n, confidence):
    ks = sorted({0, 1, n // 3, n // 2, n - 1, n} & set(range(n + 1)))
    got = cal.clopper_pearson_upper(np.array(ks), n, confidence=confidence)
    want = [brute_upper(k, n, confidence) for k in ks]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert cal.clopper_pearson_upper(0, n, confidence=confidence) == pytest.approx(1 - (1 - confidence) ** (1 / n))


def test_two_sided_interval_equals_the_binomial_sum_inversion():
    k, n = 17, 40
    low, high = cal.clopper_pearson_interval(k, n, confidence=0.95)
    assert high == pytest.approx(brute_upper(k, n, 0.975), rel=1e-9)
    # lower end: P(X >= k | p_low) = 0.025  <=>  P(X <= k - 1 | p_low) = 0.975
    assert binom_cdf(k - 1, n, low) == pytest.approx(0.975, abs=1e-9)
    assert cal.clopper_pearson_interval(0, n)[0] == 0.0 and cal.clopper_pearson_interval(n, n)[1] == 1.0


def test_impostor_pairs_needed_by_hand_and_by_brute_force():
    # ln(0.05) / ln(1 - f): 298.07 -> 299, 2994.23 -> 2995, 29955.8 -> 29956 (the "rule of three": ~3 / f)
    assert cal.impostor_pairs_needed(1e-2) == 299
    assert cal.impostor_pairs_needed(1e-3) == 2995
    assert cal.impostor_pairs_needed(1e-4) == 29956
    for far in (0.2, 0.05, 1e-2):
        n = next(n for n in range(1, 10_000) if brute_upper(0, n, 0.95) <= far)
        assert cal.impostor_pairs_needed(far) == n


# -- thresholds at target FARs --------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_thresholds_equal_brute_force_over_every_candidate(seed):
    rng = np.random.default_rng(seed)
    n_imp, n_gen = 900 + 37 * seed, 300
    scores = np.r_[rng.normal(0.1, 0.15, n_imp), rng.normal(0.6, 0.2, n_gen)]
    if seed % 2:  # ties across and within classes
        scores = np.round(scores, 2)
    labels = np.r_[np.zeros(n_imp, bool), np.ones(n_gen, bool)]
    order = rng.permutation(scores.size)
    scores, labels = scores[order], labels[order]
    fars = (0.05, 0.02, 0.01)
    points = cal.thresholds_at_far(scores, labels, fars)
    for far, point in zip(fars, points):
        t, k, tp = brute_thresholds(scores, labels, far, 0.95)
        assert isinstance(point, cal.OperatingPoint)
        assert point.threshold == pytest.approx(t, abs=1e-12)
        assert (point.false_accepts, point.true_accepts) == (k, tp)
        assert point.far_bound == pytest.approx(brute_upper(k, n_imp, 0.95), rel=1e-9)
        assert point.far_bound <= far
        assert point.tar == tp / n_gen and point.far_observed == k / n_imp


def test_hand_case_with_a_known_answer():
    # 299 impostors at 0.0 .. 0.298 and 3 genuine at 0.5, 0.25, 0.1. FAR 0.01 needs 299 impostors with
    # zero accepted (U(0, 299) = 0.00997; U(1, 299) = 0.0158), so the threshold sits between the top
    # impostor 0.298 and the next higher score 0.5: 0.399, accepting one genuine pair of three.
    impostors = np.arange(299) / 1000.0
    scores = np.r_[impostors, 0.5, 0.25, 0.1]
    labels = np.r_[np.zeros(299, bool), np.ones(3, bool)]
    (point,) = cal.thresholds_at_far(scores, labels, [0.01])
    assert point.threshold == pytest.approx(0.399)
    assert (point.false_accepts, point.true_accepts, point.tar) == (0, 1, pytest.approx(1 / 3))
    assert point.far_bound == pytest.approx(1 - 0.05 ** (1 / 299))


def test_too_few_impostors_are_refused_with_the_number_needed():
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0, 1, 1000), rng.normal(3, 1, 200)]
    labels = np.r_[np.zeros(1000, bool), np.ones(200, bool)]
    p2, p3, p4 = cal.thresholds_at_far(scores, labels, [1e-2, 1e-3, 1e-4])
    assert isinstance(p2, cal.OperatingPoint)
    assert p3 == cal.Refusal(far_target=1e-3, impostor_pairs=1000, impostor_pairs_needed=2995)
    assert p4.impostor_pairs_needed == 29956
    assert "needs at least 2995 different-person pairs" in p3.message() and "there are 1000" in p3.message()


@pytest.mark.parametrize("scores, labels, match", [
    ([0.1, np.nan, 0.3], [0, 1, 1], "1 scores are NaN or infinite"),
    ([0.1, 0.2, np.inf], [0, 1, 0], "NaN or infinite"),
    ([0.1, 0.2, 0.3], [1, 1, 1], "there are 3 same and 0 different"),
    ([0.1, 0.2, 0.3], [0, 0, 0], "there are 0 same and 3 different"),
    ([0.1, 0.2], [0, 1, 1], "equal length"),
])
def test_bad_scores_are_refused(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        cal.thresholds_at_far(np.array(scores), np.array(labels), [0.1])


@pytest.mark.parametrize("fars", [[0.0], [1.0], [-0.1], [float("nan")], []])
def test_bad_targets_are_refused(fars):
    with pytest.raises(ValueError):
        cal.thresholds_at_far(np.r_[0.1, 0.9], np.r_[False, True], fars)


def test_held_out_far_stays_within_the_promise_in_most_seeds():
    """Calibrate on 3000 impostor and 1000 genuine pairs (normal scores), then measure the threshold's FAR
    exactly (the normal tail) and on 200,000 new impostor pairs. The promise: P(FAR > target) <= 5%.
    A threshold set at the observed FAR instead (the ROC's TAR@FAR point) breaks it about half the time."""
    from scipy.stats import norm

    far, seeds = 1e-2, 200
    true_fars, new_fars, bounds, naive = [], [], [], []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        scores = np.r_[rng.normal(0, 1, 3000), rng.normal(3, 1, 1000)]
        labels = np.r_[np.zeros(3000, bool), np.ones(1000, bool)]
        (point,) = cal.thresholds_at_far(scores, labels, [far])
        true_fars.append(norm.sf(point.threshold))
        new_fars.append(np.mean(rng.normal(0, 1, 200_000) > point.threshold))
        bounds.append(point.far_bound)
        imp = np.sort(scores[~labels])[::-1]
        naive.append(norm.sf(imp[int(far * 3000)]))  # observed FAR = target
    true_fars, new_fars, bounds = map(np.array, (true_fars, new_fars, bounds))
    assert np.mean(true_fars <= far) >= 0.92, np.mean(true_fars <= far)
    assert np.mean(new_fars <= far) >= 0.92
    assert np.mean(true_fars <= bounds) >= 0.88  # the per-threshold bound, after choosing the threshold
    assert np.mean(np.array(naive) <= far) < 0.7  # the check can fail: the uncalibrated point breaks it
    assert np.median(true_fars) > far / 3  # and the promise is not bought with a useless threshold


# -- score -> probability maps ---------------------------------------------------------------------


def _classes(seed, n=400, ties=False):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(0.2, 0.2, n), rng.normal(0.6, 0.2, n // 2)]
    if ties:
        s = np.round(s, 1)
    y = np.r_[np.zeros(n, bool), np.ones(n // 2, bool)]
    return s, y


@pytest.mark.parametrize("ties", [False, True])
def test_isotonic_equals_scikit_learn(ties):
    from sklearn.isotonic import IsotonicRegression

    s, y = _classes(1, ties=ties)
    ours = cal.fit_isotonic(s, y)
    ref = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s, y.astype(float))
    grid = np.r_[s, np.linspace(s.min() - 0.5, s.max() + 0.5, 301)]
    np.testing.assert_allclose(ours(grid), ref.predict(grid), atol=1e-12)


def test_logistic_equals_scikit_learn_on_platt_targets():
    from sklearn.linear_model import LogisticRegression

    s, y = _classes(2)
    ours = cal.fit_logistic(s, y)
    t = cal.platt_targets(y)
    # Soft targets as two weighted copies of every pair; C=inf: no penalty.
    X = np.r_[s, s][:, None]
    ref = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(
        X, np.r_[np.ones(s.size), np.zeros(s.size)], sample_weight=np.r_[t, 1 - t])
    assert ours.a == pytest.approx(ref.coef_[0, 0], rel=1e-5)
    assert ours.b == pytest.approx(ref.intercept_[0], rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(ours(s), ref.predict_proba(s[:, None])[:, 1], atol=1e-7)


def test_logistic_fit_is_finite_on_separable_scores():
    s = np.r_[np.linspace(0, 0.3, 50), np.linspace(0.6, 0.9, 50)]
    y = np.r_[np.zeros(50, bool), np.ones(50, bool)]
    m = cal.fit_logistic(s, y)
    assert math.isfinite(m.a) and m.a > 0
    # Platt's targets cap the fit: the most confident prediction stays below (N+ + 1) / (N+ + 2) ... near it
    assert m(np.r_[0.9])[0] < 1.0


def test_compare_maps_equals_a_hand_loop_with_scikit_learn():
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import brier_score_loss

    s, y = _classes(3, n=600)
    folds = np.arange(s.size) % 5
    got = cal.compare_maps(s, y, folds)
    held = np.empty(s.size)
    for f in range(5):
        te = folds == f
        held[te] = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s[~te], y[~te]).predict(s[te])
    assert got["isotonic"]["brier"] == pytest.approx(brier_score_loss(y, held), rel=1e-12)
    p = np.clip(held, 1e-12, 1 - 1e-12)
    assert got["isotonic"]["log_loss"] == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), rel=1e-12)
    # scores that are logistic in truth: the logistic map is better held out, in both measures
    rng = np.random.default_rng(4)
    s2 = rng.uniform(-1, 1, 3000)
    y2 = rng.uniform(size=3000) < 1 / (1 + np.exp(-4 * s2))
    both = cal.compare_maps(s2, y2, np.arange(3000) % 10)
    assert both["logistic"]["log_loss"] < both["isotonic"]["log_loss"]


def test_with_prior_is_bayes_rule_on_the_odds():
    # at prior 0.5 a score says 0.5 (likelihood ratio 1): at prior 0.01 it says 0.01
    assert cal.with_prior(0.5, prior_from=0.5, prior_to=0.01) == pytest.approx(0.01)
    # likelihood ratio 9 (p = 0.9 at prior 0.5); prior 0.1 -> posterior odds 9 * 1/9 = 1 -> 0.5
    assert cal.with_prior(0.9, prior_from=0.5, prior_to=0.1) == pytest.approx(0.5)
    np.testing.assert_allclose(cal.with_prior(np.r_[0.0, 1.0], prior_from=0.3, prior_to=0.7), [0.0, 1.0])


# -- the record ---------------------------------------------------------------------------------------


def _record():
    s, y = _classes(5, n=1200)
    items = cal.thresholds_at_far(s, y, [0.01, 0.001])
    m = cal.fit_logistic(s, y)
    return cal.Calibration(
        points=[p for p in items if isinstance(p, cal.OperatingPoint)],
        refused=[p for p in items if isinstance(p, cal.Refusal)], confidence=0.95,
        pairs={"total": int(s.size), "same": int(y.sum()), "different": int((~y).sum()), "source": "p.txt"},
        model={"model": "facever:sphere20", "model_sha256": "ab" * 32}, created="2026-12-07T10:00:00+00:00",
        probability={"map": m.to_dict(), "prior_same": float(y.mean())})


def test_calibration_round_trips_and_finds_its_points(tmp_path):
    import json

    c = _record()
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(c.to_dict()))
    back = cal.read_calibration(tmp_path)
    assert back.to_dict() == c.to_dict() and back.id == c.id
    assert back.point(0.01) == c.points[0]
    with pytest.raises(FaceverError, match="refused at calibration: FAR 0.001 needs at least 2995"):
        back.point(1e-3)
    with pytest.raises(FaceverError, match="no calibrated point for FAR 0.05; this calibration has: 0.01"):
        back.point(0.05)
    assert back.probability_map()(np.r_[0.3]) == pytest.approx(c.probability_map()(np.r_[0.3]))


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(format="x"), "not a facever calibration"),
    (lambda d: d.update(format_version=99), "newer than this facever reads"),
    (lambda d: d["points"][0].update(threshold=float("nan")), "damaged calibration"),
    (lambda d: d.pop("points"), "damaged calibration"),
    (lambda d: d.update(points=[]), "no operating point"),
    (lambda d: d["probability"]["map"].update(method="spline"), "unknown probability map"),
])
def test_damaged_calibration_files_are_refused(tmp_path, edit, match):
    import json

    data = _record().to_dict()
    edit(data)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputFileError, match=match) as info:
        cal.read_calibration(path)
    assert str(path) in str(info.value)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputFileError, match="not a JSON calibration"):
        cal.read_calibration(tmp_path / "bad.json")
    with pytest.raises(InputFileError, match="none.json: calibration file not found"):
        cal.read_calibration(tmp_path / "none.json")
