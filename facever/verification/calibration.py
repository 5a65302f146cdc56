"""Thresholds a user can deploy: the threshold for a target false-accept rate, with an exact bound on the
false-accept rate it will have on new pairs, and an optional score-to-probability map.

Decision rule, as everywhere in facever: "same person" iff score > threshold (scores are cosines).

**Threshold at a target FAR.** On n impostor (different-person) pairs a threshold t lets k(t) of them
through. Seen as a binomial draw, the false-accept rate p of t on new pairs of the same kind has the
exact one-sided Clopper-Pearson upper bound U(k, n) at confidence c: the p at which seeing k or fewer
false accepts has probability 1 - c, i.e. the c-quantile of Beta(k + 1, n - k) (1 when k = n). The
calibrated threshold for a target FAR f is the lowest threshold whose bound is at most f: U(k(t), n) <= f.
That choice keeps its promise: if the threshold's true FAR exceeded f, the threshold would lie below t0,
the one whose true FAR is exactly f, so k(t0) <= k(t) and U(k(t0), n) <= f, i.e. the bound at the fixed
t0 failed to cover, which happens with probability at most 1 - c. So P(FAR on new pairs > f) <= 1 - c.

Within one step of the ROC every threshold lets the same pairs through; the threshold is the midpoint
between that step's lowest accepted score and the next lower score of any pair (facever's convention
for thresholds, `tenfold.py`). With no false accept allowed U(0, n) = 1 - (1 - c)^(1/n), so a target f
needs at least ln(1 - c) / ln(1 - f) impostor pairs (about 3 / f at 95%): targets the pairs cannot
resolve are refused with that number (`impostor_pairs_needed`).

The binomial model assumes independent pairs. Pairs that reuse the same photos or people are not
independent, and the bound is then optimistic: calibrate on pairs of many people, as many as the use.

**Score to probability.** `fit_isotonic` (pool-adjacent-violators, with linear interpolation between
the fitted scores, as scikit-learn's `IsotonicRegression(out_of_bounds="clip")`) and `fit_logistic`
(Platt scaling: a logistic curve in the score, fitted on Platt's smoothed targets (N+ + 1)/(N+ + 2) and
1/(N- + 2) so that separable scores still give a finite fit) map a score to P(same | score). Both give
the probability under the calibration pairs' own share of same-person pairs (the prior, `prior_same`);
`with_prior` moves a probability to another prior through Bayes' rule on the odds. `compare_maps` fits
each on all folds but one and scores the held-out fold (log loss, Brier score).

Written here rather than taken from scikit-learn: a 2-parameter Newton fit and a 20-line PAV, where
importing scikit-learn would cost more than a whole `facever verify` (docs/development.md); the tests
check both against scikit-learn.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facever.core.errors import FaceverError, InputFileError
from facever.core.settings import CALIBRATION_CONFIDENCE, PROBABILITY_MAPS
from facever.verification.roc import binary_counts, check_scores

CALIBRATION_FORMAT = "facever-calibration"
CALIBRATION_FORMAT_VERSION = 1
# Held-out probabilities are clipped to [EPS, 1 - EPS] in the log loss: a map that says 0 or 1 and is
# wrong costs -ln(EPS) = 27.6 nats for that pair instead of infinity.
LOG_LOSS_EPS = 1e-12


# ---------------------------------------------------------------------------------------------------
# Exact binomial bounds


def _check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    return confidence


def clopper_pearson_upper(k, n: int, *, confidence: float = CALIBRATION_CONFIDENCE):
    """One-sided exact upper bound on a binomial rate after `k` successes in `n` trials.

    The p with P(X <= k | n, p) = 1 - confidence: `Beta(k + 1, n - k).ppf(confidence)`, and 1 when k = n.
    `k` may be an array (a bound per entry).
    """
    from scipy.stats import beta

    confidence = _check_confidence(confidence)
    k_arr = np.asarray(k, dtype=np.int64)
    if n < 1 or np.any(k_arr < 0) or np.any(k_arr > n):
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k!r}, n={n}")
    below = k_arr < n
    out = np.ones(k_arr.shape, dtype=np.float64)
    out[below] = beta.ppf(confidence, k_arr[below] + 1, n - k_arr[below])
    return float(out) if np.ndim(k) == 0 else out


def clopper_pearson_interval(k: int, n: int, *, confidence: float = CALIBRATION_CONFIDENCE) -> tuple[float, float]:
    """Two-sided exact interval on a binomial rate (each tail (1 - confidence) / 2)."""
    from scipy.stats import beta

    confidence = _check_confidence(confidence)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    tail = (1.0 - confidence) / 2.0
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1.0 - tail, k + 1, n - k))
    return low, high


def impostor_pairs_needed(far: float, *, confidence: float = CALIBRATION_CONFIDENCE) -> int:
    """The fewest impostor pairs for which zero false accepts bound the FAR at `far`: U(0, n) <= far."""
    confidence = _check_confidence(confidence)
    if not 0.0 < far < 1.0:
        raise ValueError(f"a target FAR must be between 0 and 1 (exclusive), got {far}")
    # U(0, n) = 1 - (1 - c)^(1/n) <= f  <=>  n >= ln(1 - c) / ln(1 - f); then step to the exact integer.
    n = max(1, math.ceil(math.log1p(-confidence) / math.log1p(-far)))
    while n > 1 and clopper_pearson_upper(0, n - 1, confidence=confidence) <= far:
        n -= 1
    while clopper_pearson_upper(0, n, confidence=confidence) > far:
        n += 1
    return n


# ---------------------------------------------------------------------------------------------------
# Thresholds at target FARs


@dataclass(frozen=True)
class OperatingPoint:
    """The calibrated threshold for one target FAR and what it did on the calibration pairs."""

    far_target: float
    threshold: float
    false_accepts: int
    impostor_pairs: int
    far_observed: float
    far_bound: float  # one-sided Clopper-Pearson upper bound at `confidence`; <= far_target
    true_accepts: int
    genuine_pairs: int
    tar: float
    tar_interval: tuple[float, float]  # two-sided Clopper-Pearson at `confidence`

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tar_interval"] = list(self.tar_interval)
        return d


@dataclass(frozen=True)
class Refusal:
    """A target FAR the impostor pairs cannot bound: `impostor_pairs_needed` would."""

    far_target: float
    impostor_pairs: int
    impostor_pairs_needed: int

    def message(self) -> str:
        return (f"FAR {self.far_target:g} needs at least {self.impostor_pairs_needed} different-person pairs to "
                f"bound (zero false accepts among them); there are {self.impostor_pairs}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_fars(fars: Sequence[float]) -> list[float]:
    """Target FARs as distinct floats in (0, 1), in the order given (ValueError otherwise)."""
    out: list[float] = []
    for f in fars:
        f = float(f)
        if not 0.0 < f < 1.0 or not math.isfinite(f):
            raise ValueError(f"a target FAR must be between 0 and 1 (exclusive), got {f:g}")
        if f not in out:
            out.append(f)
    if not out:
        raise ValueError("no target FAR given")
    return out


def thresholds_at_far(scores, labels, fars: Sequence[float], *, confidence: float = CALIBRATION_CONFIDENCE
                      ) -> list[OperatingPoint | Refusal]:
    """For each target FAR, the lowest threshold whose FAR bound is at most the target (module doc), or a
    `Refusal` when the impostor pairs are too few for any threshold to be bounded there.

    Args:
        scores: cosine similarities (higher = more alike), one per pair.
        labels: True for same-person pairs.
        fars: target false-accept rates in (0, 1).
    """
    scores, labels = check_scores(scores, labels, needs="calibration")
    fars = check_fars(fars)
    confidence = _check_confidence(confidence)
    # The one ROC core: at distinct score d[i] (descending), fps[i] / tps[i] pairs score >= d[i], which
    # under "same iff score > t" is what any t in [d[i+1], d[i]) accepts.
    fps, tps, distinct = binary_counts(scores, labels)
    n_imp, n_gen = int(fps[-1]), int(tps[-1])
    bounds = clopper_pearson_upper(fps, n_imp, confidence=confidence)
    out: list[OperatingPoint | Refusal] = []
    for far in fars:
        need = impostor_pairs_needed(far, confidence=confidence)
        if n_imp < need:
            out.append(Refusal(far_target=far, impostor_pairs=n_imp, impostor_pairs_needed=need))
            continue
        ok = int(np.count_nonzero(bounds <= far))  # fps only grows along the steps: a prefix is within
        if ok == 0:  # even the top step lets a false accept through: accept nothing
            threshold, k, tp = float(distinct[0]), 0, 0
        else:
            i = ok - 1
            lower = distinct[i + 1] if i + 1 < distinct.size else distinct[i] - 1.0
            threshold, k, tp = float((distinct[i] + lower) / 2.0), int(fps[i]), int(tps[i])
        out.append(OperatingPoint(
            far_target=far, threshold=threshold, false_accepts=k, impostor_pairs=n_imp, far_observed=k / n_imp,
            far_bound=float(clopper_pearson_upper(k, n_imp, confidence=confidence)), true_accepts=tp,
            genuine_pairs=n_gen, tar=tp / n_gen, tar_interval=clopper_pearson_interval(tp, n_gen, confidence=confidence),
        ))
    return out


# ---------------------------------------------------------------------------------------------------
# Score -> probability maps


@dataclass(frozen=True)
class IsotonicMap:
    """A non-decreasing map: linear interpolation through (`x[i]`, `y[i]`), constant beyond the ends."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    method: str = "isotonic"

    def __call__(self, scores) -> np.ndarray:
        return np.interp(np.asarray(scores, dtype=np.float64), np.asarray(self.x), np.asarray(self.y))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "x": list(self.x), "y": list(self.y)}


@dataclass(frozen=True)
class LogisticMap:
    """P(same | s) = 1 / (1 + exp(-(a s + b)))."""

    a: float
    b: float
    method: str = "logistic"

    def __call__(self, scores) -> np.ndarray:
        z = self.a * np.asarray(scores, dtype=np.float64) + self.b
        return _sigmoid(z)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "a": self.a, "b": self.b}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def fit_isotonic(scores, labels) -> IsotonicMap:
    """The least-squares non-decreasing fit of the labels (0/1) on the scores (pool adjacent violators).

    Equal scores are first merged into one point carrying their mean label and their count as weight;
    the map interpolates linearly between the merged scores' fitted values (scikit-learn's rule).
    """
    scores, labels = check_scores(scores, labels, needs="calibration")
    ux, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=labels.astype(np.float64), minlength=ux.size)
    # PAV on blocks (value, weight): merge while a block's mean is below its predecessor's.
    values: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for s, w in zip(sums, counts.astype(np.float64)):
        v, size = s / w, 1
        while values and values[-1] >= v:
            pv, pw, ps = values.pop(), weights.pop(), sizes.pop()
            v = (pv * pw + v * w) / (pw + w)
            w += pw
            size += ps
        values.append(v)
        weights.append(w)
        sizes.append(size)
    fitted = np.repeat(np.asarray(values), sizes)
    return IsotonicMap(x=tuple(float(v) for v in ux), y=tuple(float(v) for v in np.clip(fitted, 0.0, 1.0)))


def platt_targets(labels: np.ndarray) -> np.ndarray:
    """Platt's smoothed targets: (N+ + 1)/(N+ + 2) for same-person pairs, 1/(N- + 2) for the others."""
    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    return np.where(labels, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))


def fit_logistic(scores, labels, *, max_iter: int = 100, tol: float = 1e-12) -> LogisticMap:
    """Platt scaling: the maximum-likelihood logistic curve on Platt's targets (module doc).

    Newton's method with step halving on the standardised score (2 parameters: each step solves a 2x2
    system); converges to machine precision in a few steps because the smoothed targets keep the
    optimum finite.
    """
    scores, labels = check_scores(scores, labels, needs="calibration")
    t = platt_targets(labels)
    mu, sd = float(scores.mean()), float(scores.std())
    z = (scores - mu) / (sd if sd > 0 else 1.0)
    w = np.zeros(2)  # slope, intercept on z

    def loss(params: np.ndarray) -> float:
        u = params[0] * z + params[1]
        # -[t log s(u) + (1 - t) log(1 - s(u))] = log(1 + e^u) - t u, computed without overflow
        return float(np.sum(np.logaddexp(0.0, u) - t * u))

    current = loss(w)
    for _ in range(max_iter):
        p = _sigmoid(w[0] * z + w[1])
        r = p - t
        grad = np.array([np.dot(r, z), r.sum()])
        h = p * (1.0 - p)
        hess = np.array([[np.dot(h, z * z), np.dot(h, z)], [np.dot(h, z), h.sum()]])
        try:
            step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        except np.linalg.LinAlgError:
            step = grad
        scale = 1.0
        while True:
            candidate = w - scale * step
            value = loss(candidate)
            if value <= current or scale < 1e-10:
                break
            scale /= 2.0
        converged = abs(current - value) <= tol * max(1.0, abs(current)) and np.max(np.abs(scale * step)) < 1e-10
        w, current = candidate, value
        if converged:
            break
    slope = w[0] / (sd if sd > 0 else 1.0)
    return LogisticMap(a=float(slope), b=float(w[1] - slope * mu))


def fit_map(method: str, scores, labels):
    """`fit_isotonic` or `fit_logistic` by name (`PROBABILITY_MAPS`)."""
    if method == "isotonic":
        return fit_isotonic(scores, labels)
    if method == "logistic":
        return fit_logistic(scores, labels)
    raise ValueError(f"unknown probability map {method!r}; known: {', '.join(PROBABILITY_MAPS)}")


def map_from_dict(data: dict[str, Any]):
    """The map a `to_dict()` wrote (ValueError on anything else)."""
    method = data.get("method")
    if method == "isotonic":
        x, y = [float(v) for v in data["x"]], [float(v) for v in data["y"]]
        if len(x) != len(y) or not x or any(b < a for a, b in zip(x, x[1:])) or any(b < a for a, b in zip(y, y[1:])):
            raise ValueError("isotonic map: x and y must be non-decreasing lists of equal length")
        return IsotonicMap(x=tuple(x), y=tuple(y))
    if method == "logistic":
        a, b = float(data["a"]), float(data["b"])
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError("logistic map: a and b must be finite")
        return LogisticMap(a=a, b=b)
    raise ValueError(f"unknown probability map {method!r}")


def with_prior(p, *, prior_from: float, prior_to: float):
    """A probability of "same" made under prior `prior_from`, restated under prior `prior_to` (Bayes on the odds)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    for name, v in (("prior_from", prior_from), ("prior_to", prior_to)):
        if not 0.0 < v < 1.0:
            raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {v}")
    factor = (prior_to / (1.0 - prior_to)) / (prior_from / (1.0 - prior_from))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(p >= 1.0, 1.0, p * factor / (p * factor + (1.0 - p)))
    return float(out) if np.ndim(out) == 0 else out


def log_loss(p, labels) -> float:
    """Mean negative log-likelihood of the labels, probabilities clipped to [EPS, 1 - EPS] (`LOG_LOSS_EPS`)."""
    p = np.clip(np.asarray(p, dtype=np.float64), LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    y = np.asarray(labels, dtype=bool)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def brier(p, labels) -> float:
    """Mean squared difference between the probability and the label (0/1)."""
    return float(np.mean((np.asarray(p, dtype=np.float64) - np.asarray(labels, dtype=np.float64)) ** 2))


def compare_maps(scores, labels, folds, methods: Sequence[str] = PROBABILITY_MAPS) -> dict[str, dict[str, float]]:
    """Held-out log loss and Brier score of each map: fitted on all folds but one, scored on that one,
    pooled over the folds. `{method: {"log_loss", "brier"}}`. Folds without both classes among the
    training pairs raise ValueError."""
    scores, labels = check_scores(scores, labels, needs="calibration")
    folds = np.asarray(folds)
    if folds.shape != scores.shape:
        raise ValueError(f"expected one fold per pair ({scores.size}), got shape {folds.shape}")
    ids = np.unique(folds)
    if ids.size < 2:
        raise ValueError("comparing probability maps on held-out pairs needs at least two folds")
    out: dict[str, dict[str, float]] = {}
    for method in methods:
        held = np.empty(scores.size)
        for f in ids:
            test = folds == f
            held[test] = fit_map(method, scores[~test], labels[~test])(scores[test])
        out[method] = {"log_loss": log_loss(held, labels), "brier": brier(held, labels)}
    return out


# ---------------------------------------------------------------------------------------------------
# The calibration record (calibration.json)


@dataclass
class Calibration:
    """What `facever calibrate` measured, as stored in calibration.json or inside a model file."""

    points: list[OperatingPoint]
    refused: list[Refusal]
    confidence: float
    pairs: dict[str, Any]  # total, same, different, source, protocol, folds
    model: dict[str, Any]  # model, model_sha256, flip, preprocessing ... (the embeddings' metadata)
    created: str  # ISO date and time
    probability: dict[str, Any] | None = None  # {"map": {...}, "prior_same", "held_out": {...}, "chosen_by"}
    metric: str = "cosine"
    extra: dict[str, Any] = field(default_factory=dict)

    def point(self, far: float) -> OperatingPoint:
        """The operating point calibrated for target `far` (FaceverError listing the targets there are)."""
        for p in self.points:
            if math.isclose(p.far_target, float(far), rel_tol=1e-9):
                return p
        for r in self.refused:
            if math.isclose(r.far_target, float(far), rel_tol=1e-9):
                raise FaceverError(f"FAR {far:g} was refused at calibration: {r.message()}")
        have = ", ".join(f"{p.far_target:g}" for p in self.points)
        raise FaceverError(f"no calibrated point for FAR {far:g}; this calibration has: {have}", options=("far",))

    def probability_map(self):
        return map_from_dict(self.probability["map"]) if self.probability else None

    def body(self) -> dict[str, Any]:
        return {
            "format": CALIBRATION_FORMAT,
            "format_version": CALIBRATION_FORMAT_VERSION,
            "created": self.created,
            "metric": self.metric,
            "decision": "same person iff cosine > threshold",
            "confidence": self.confidence,
            "bound": ("far_bound: one-sided exact (Clopper-Pearson) upper bound on the false-accept rate on new pairs "
                      "like the calibration's, at the confidence level; the threshold is the lowest whose bound is "
                      "at most far_target. Assumes independent pairs."),
            "model": dict(self.model),
            "pairs": dict(self.pairs),
            "points": [p.to_dict() for p in self.points],
            "refused": [r.to_dict() for r in self.refused],
            "probability": self.probability,
            **self.extra,
        }

    @property
    def id(self) -> str:
        """A digest of the content: the same calibration attached to a model and kept as a file share it."""
        blob = json.dumps(self.body(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "id": self.id}

    def describe(self, point: OperatingPoint) -> str:
        """One line: the threshold, its FAR bound and what it was calibrated on."""
        return (f"threshold {point.threshold:.4f} calibrated for FAR {point.far_target:g}: FAR on new pairs <= "
                f"{point.far_bound:.2g} ({100 * self.confidence:g}% confidence; {point.false_accepts} of "
                f"{point.impostor_pairs} different-person pairs accepted), TAR {100 * point.tar:.1f}%; calibrated on "
                f"{self.pairs.get('total')} pairs of {self.pairs.get('source', '?')} on {self.created[:10]}")

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path = "calibration") -> "Calibration":
        """Read a `to_dict()`; anything else raises InputFileError naming `source`."""
        if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
            raise InputFileError(source, f"not a facever calibration (no format={CALIBRATION_FORMAT!r} marker)")
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InputFileError(source, f"calibration format version {version!r} is not a version number")
        if version > CALIBRATION_FORMAT_VERSION:
            raise InputFileError(source, f"calibration format version {version} is newer than this facever reads "
                                         f"({CALIBRATION_FORMAT_VERSION}); upgrade facever")
        try:
            points = [OperatingPoint(**{**p, "tar_interval": tuple(p["tar_interval"])}) for p in data["points"]]
            refused = [Refusal(**r) for r in data.get("refused", [])]
            for p in points:
                if not all(math.isfinite(float(v)) for v in (p.threshold, p.far_target, p.far_bound, p.tar)):
                    raise ValueError(f"non-finite value in the point for FAR {p.far_target}")
            probability = data.get("probability")
            if probability is not None:
                map_from_dict(probability["map"])
                if not 0.0 < float(probability["prior_same"]) < 1.0:
                    raise ValueError("prior_same must be between 0 and 1")
            cal = cls(points=points, refused=refused, confidence=float(data["confidence"]), pairs=dict(data["pairs"]),
                      model=dict(data["model"]), created=str(data["created"]), probability=probability,
                      metric=str(data.get("metric", "cosine")))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFileError(source, f"damaged calibration ({type(exc).__name__}: {exc})") from None
        if cal.metric != "cosine":
            raise InputFileError(source, f"calibration metric {cal.metric!r}: facever calibrates cosine scores only")
        if not points:
            raise InputFileError(source, "the calibration holds no operating point")
        return cal


def read_calibration(path: str | Path) -> Calibration:
    """A calibration.json (or a folder holding one)."""
    from facever.core.text_files import read_text

    path = Path(path)
    if path.is_dir():
        path = path / "calibration.json"
    try:
        data = json.loads(read_text(path, what="calibration file"))
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not a JSON calibration ({exc})") from None
    return Calibration.from_dict(data, source=path)
