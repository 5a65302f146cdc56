"""Model ensembles: fuse several models' embeddings of the same items and evaluate each model and the fusion.

Two fusions:

- `concat` (default): each model's embeddings are L2-normalised, multiplied by `sqrt(w_i)` (weights
  normalised to sum to 1) and concatenated. Every fused vector then has norm 1, and the dot product of
  two fused vectors is `sum_i w_i cos_i`: **the fused cosine is the weighted mean of the models'
  cosines** (and the fused squared L2 distance, `2 - 2 cos`, the weighted mean of their distances).
  So the fused file can be scored, saved and ensembled again by any tool that compares embeddings.
- `score-mean`: the weighted mean of the per-model scores, each computed as the engine computes it for
  that model alone. Without mean subtraction it equals `concat`; with `subtract_mean` it differs,
  since each model's mean is then subtracted in its own space rather than in the concatenated one.

Everything is keyed by the protocol's items (image paths, or video ids for YTF), so any `PairProtocol`
(LFW, FGLFW, CALFW/CPLFW, YTF, InsightFace .bin) with per-model `Embeddings` over its items works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from facever.protocols.pair_protocol import PairProtocol
from facever.core.embeddings_file import Embeddings
from facever.core.errors import FaceverError
from facever.core.settings import DEFAULT_CONVENTION

from facever.core.settings import FUSIONS


def normalize_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Weights as floats summing to 1 (equal when None). Negative, non-finite or all-zero weights are errors."""
    if weights is None:
        return [1.0 / n] * n
    weights = [float(w) for w in weights]
    if len(weights) != n:
        raise FaceverError(f"{len(weights)} weights given for {n} models")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise FaceverError(f"weights must be finite and non-negative, got {weights}")
    total = sum(weights)
    if total <= 0:
        raise FaceverError("at least one weight must be positive")
    return [w / total for w in weights]


def check_model_names(names: Sequence[str]) -> None:
    """Names become file names (a per-model embeddings cache): each one plain name, never a path."""
    for name in names:
        if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
            raise FaceverError(f"model name {name!r} must be a plain name (no '/', no leading '.')")


def _names(names: Sequence[str] | None, n: int) -> list[str]:
    names = [f"model{i + 1}" for i in range(n)] if names is None else [str(s) for s in names]
    if len(names) != n:
        raise FaceverError(f"{len(names)} names given for {n} models")
    check_model_names(names)
    if len(set(names)) != n:
        raise FaceverError(f"model names must be distinct, got {names}")
    if "ensemble" in names:
        raise FaceverError("'ensemble' is reserved for the fused result; choose another model name")
    return names


def common_paths(embeddings: Sequence[Embeddings]) -> list[str]:
    """Paths present in every file, in the first file's order."""
    if not embeddings:
        return []
    shared = set(embeddings[0].paths)
    for emb in embeddings[1:]:
        shared &= set(emb.paths)
    return [p for p in embeddings[0].paths if p in shared]


def check_coverage(embeddings: Sequence[Embeddings], items: Sequence[str], names: Sequence[str]) -> None:
    """Raise `FaceverError` naming, per model, the items it has no embedding for."""
    problems = []
    for emb, name in zip(embeddings, names):
        missing = [item for item, row in zip(items, emb.rows(items)) if row < 0]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            problems.append(f"{name} lacks {len(missing)} of {len(items)} ({shown})")
    if problems:
        raise FaceverError("models must embed the same images: " + "; ".join(problems))


def _unit_rows(emb: Embeddings, items: Sequence[str], name: str) -> np.ndarray:
    x = emb.embeddings[emb.rows(items)]
    if not np.all(np.isfinite(x)):
        raise FaceverError(f"{name}: embeddings contain NaN or infinite values")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    if np.any(norms == 0):
        bad = [items[i] for i in np.flatnonzero(norms == 0)[:5]]
        raise FaceverError(f"{name}: embeddings of norm zero have no direction ({', '.join(bad)})")
    return (x / norms[:, None]).astype(np.float32)


def fuse_embeddings(
    embeddings: Sequence[Embeddings],
    *,
    weights: Sequence[float] | None = None,
    method: str = "concat",
    items: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
) -> Embeddings:
    """One `Embeddings` whose cosine is the weighted mean of the models' cosines (module docstring).

    Args:
        embeddings: two or more models' embeddings of the same items.
        weights: one non-negative weight per model (normalised to sum 1; equal by default).
        method: "concat" or "score-mean"; the two give the same fused vectors (their cosines are the
            weighted mean of the models' cosines); they differ only in `evaluate_ensemble` with mean
            subtraction.
        items: rows of the result; each must be in every model (`FaceverError` naming the missing
            ones otherwise). Default: the first model's paths, which every other model must hold.
        names: model names for messages and metadata.
    """
    if method not in FUSIONS:
        raise FaceverError(f"unknown fusion {method!r}; use one of: {', '.join(FUSIONS)}")
    n = len(embeddings)
    if n < 1:
        raise FaceverError("no embeddings to fuse")
    names = _names(names, n)
    w = normalize_weights(weights, n)
    items = list(embeddings[0].paths if items is None else items)
    check_coverage(embeddings, items, names)
    parts = [_unit_rows(emb, items, name) * np.float32(math.sqrt(wi)) for emb, name, wi in zip(embeddings, names, w)]
    fused = np.concatenate(parts, axis=1)
    metadata: dict[str, Any] = {
        "model": "ensemble(" + ", ".join(names) + ")",
        "fusion": "concat of L2-normalised embeddings x sqrt(weight): cosine = weighted mean of cosines",
        "ensemble_method": method,
        "ensemble_of": [
            {"name": name, "weight": wi, "dim": emb.dim, "metadata": emb.metadata}
            for emb, name, wi in zip(embeddings, names, w)
        ],
    }
    return Embeddings(paths=items, embeddings=fused, metadata=metadata)


@dataclass
class EnsembleResult:
    """Each model alone and the fusion, every one a `VerificationResult` on the same pairs."""

    names: list[str]
    models: dict[str, Any]  # name -> VerificationResult
    ensemble: Any  # VerificationResult
    fusion: str
    weights: list[float]
    fused: Embeddings | None = None  # the concat-fused embeddings over the protocol's items

    def results(self) -> list[tuple[str, Any]]:
        """(name, result) for each model in order, then ("ensemble", result)."""
        return [(name, self.models[name]) for name in self.names] + [("ensemble", self.ensemble)]

    def to_dict(self) -> dict[str, Any]:
        """report.json: `models[name]` and `ensemble` each have eval-lfw's report keys (`accuracy.mean` ...)."""
        return {
            "format": "facever-ensemble-report",
            "protocol": self.ensemble.protocol,
            "fusion": self.fusion,
            "names": list(self.names),
            "weights": dict(zip(self.names, self.weights)),
            "models": {name: self.models[name].to_dict() for name in self.names},
            "ensemble": self.ensemble.to_dict(),
        }


def _restrict(protocol: PairProtocol, keep: np.ndarray) -> PairProtocol:
    idx = np.flatnonzero(keep)
    return PairProtocol(
        name=protocol.name,
        first=[protocol.first[i] for i in idx],
        second=[protocol.second[i] for i in idx],
        labels=protocol.labels[idx],
        folds=protocol.folds[idx],
        source=protocol.source,
        line_numbers=[protocol.line_numbers[i] for i in idx] if protocol.line_numbers else None,
    )


def evaluate_ensemble(
    protocol: PairProtocol,
    embeddings: Sequence[Embeddings],
    names: Sequence[str] | None = None,
    *,
    fusion: str = "concat",
    weights: Sequence[float] | None = None,
    **eval_opts: Any,
) -> EnsembleResult:
    """Evaluate each model and their fusion on `protocol` with the same engine and settings.

    Args:
        protocol: any `PairProtocol`; the embeddings are keyed by its items.
        embeddings: one `Embeddings` per model (two or more).
        names: one name per model (default model1, model2, ...).
        fusion: "concat" (default) or "score-mean" (module docstring).
        weights: one non-negative weight per model (default equal).
        eval_opts: passed to `evaluate_protocol` (`metric`, `thresholds`, `subtract_mean`,
            `allow_missing`, `convention`: a peer's convention applies to each model alone; the fused
            row is always facever's, as no peer script fuses models). With `allow_missing`, pairs missing from ANY model are dropped for all, so
            every row of the comparison uses the same pairs.

    Raises:
        FaceverError: an item the protocol needs is missing from a model (naming them), unless
        `allow_missing`; bad weights or names; fewer than two models.
    """
    from facever.verification.evaluate import evaluate_protocol

    if fusion not in FUSIONS:
        raise FaceverError(f"unknown fusion {fusion!r}; use one of: {', '.join(FUSIONS)}")
    if len(embeddings) < 2:
        raise FaceverError(f"an ensemble needs at least two models, got {len(embeddings)}")
    names = _names(names, len(embeddings))
    w = normalize_weights(weights, len(embeddings))
    eval_opts.pop("embeddings_source", None)  # each model is named by its own name in messages

    dropped = 0
    if eval_opts.get("allow_missing"):
        keep = np.ones(len(protocol), dtype=bool)
        for emb in embeddings:
            keep &= (emb.rows(protocol.first) >= 0) & (emb.rows(protocol.second) >= 0)
        dropped = int((~keep).sum())
        if dropped:
            protocol = _restrict(protocol, keep)
    items = protocol.items()
    check_coverage(embeddings, items, names)

    # A peer's convention scores each model as that peer's script would; no peer script fuses models,
    # so the fused row is facever's own (its report says so under settings.convention).
    convention = eval_opts.pop("convention", None) or DEFAULT_CONVENTION
    per_model = {}
    for emb, name in zip(embeddings, names):
        per_model[name] = evaluate_protocol(protocol, emb, embeddings_source=name, convention=convention, **eval_opts)
    fused = fuse_embeddings(embeddings, weights=w, method=fusion, items=items, names=names)
    if fusion == "concat":
        ensemble = evaluate_protocol(protocol, fused, embeddings_source="the fused embeddings", **eval_opts)
    else:
        ensemble = _score_mean_result(protocol, embeddings, w, per_model[names[0]].settings, **eval_opts)
    results = list(per_model.values()) + [ensemble]
    for res in results:
        res.dropped_pairs += dropped
    ensemble.settings.update({"fusion": fusion, "weights": dict(zip(names, w)), "models": list(names)})
    return EnsembleResult(names=names, models=per_model, ensemble=ensemble, fusion=fusion, weights=w, fused=fused)


# ---------------------------------------------------------------------------------------------------
# Score-level fusion: the engine's scores per model, averaged, then the engine's k-fold and ROC code.


def _score_mean_result(protocol, embeddings, weights, settings, *, metric=None, thresholds="exact",
                       subtract_mean=False, **_ignored):
    """The weighted mean of the models' scores (each computed by the engine), through the engine's
    k-fold and ROC code."""
    from facever.verification.evaluate import ProtocolScores, evaluate_scores, score_protocol

    metric = metric or ("l2" if thresholds == "grid" else "cosine")
    per_model = [score_protocol(protocol, emb, metric=metric, subtract_mean=subtract_mean) for emb in embeddings]
    first = per_model[0]
    mean = ProtocolScores(
        metric=metric,
        by_fold=sum(w * s.by_fold for w, s in zip(weights, per_model)),
        out_of_fold=sum(w * s.out_of_fold for w, s in zip(weights, per_model)),
        l2_out_of_fold=sum(w * s.l2_out_of_fold for w, s in zip(weights, per_model)),
        labels=first.labels,
        folds=first.folds,
    )
    result = evaluate_scores(mean, thresholds=thresholds, protocol_name=protocol.name)
    result.settings = dict(settings)
    return result


# ---------------------------------------------------------------------------------------------------
# IJB-B / IJB-C: fusion at the template level.


def evaluate_ensemble_ijb(meta, embeddings: Sequence[Embeddings], names: Sequence[str] | None = None, *,
                          weights: Sequence[float] | None = None, mode=None, landmarks=None) -> EnsembleResult:
    """Each model and their fusion on an IJB set's 1:1 protocol (`facever.protocols.ijb.IJBMeta`).

    Each model's templates are pooled on their own (`facever.verification.ijb`, test `mode`); the fused
    pair score is the weighted mean of the models' template cosines, which is what `concat` fusion of
    the unit template features gives (module docstring). `score-mean` is the same number here: there is
    no mean subtraction in the IJB protocol.
    """
    from facever.verification.ijb import TestMode, evaluate_ijb, score_result

    if len(embeddings) < 2:
        raise FaceverError(f"an ensemble needs at least two models, got {len(embeddings)}")
    mode = mode or TestMode()
    names = _names(names, len(embeddings))
    w = normalize_weights(weights, len(embeddings))
    per_model = {name: evaluate_ijb(meta, emb, mode, landmarks=landmarks) for emb, name in zip(embeddings, names)}
    fused = np.zeros(len(meta.pairs), dtype=np.float64)
    for wi, name in zip(w, names):
        fused += wi * per_model[name].scores.astype(np.float64)
    first = per_model[names[0]]
    ensemble = score_result(meta.set_name, mode, fused, meta.pairs.labels, n_templates=first.n_templates,
                            n_images=first.n_images)
    ensemble.settings.update({"fusion": "weighted mean of the models' template cosines", "weights": dict(zip(names, w)),
                              "models": list(names)})
    return EnsembleResult(names=names, models=per_model, ensemble=ensemble, fusion="concat", weights=w)
