"""`facever calibrate`: a model's embeddings of labelled pairs in, thresholds a user can deploy out.

The embeddings come through the one evaluation path (`workflows.evaluate.benchmark_embeddings`: an
embeddings file, or a model run over the pairs' images through the one cached embedding loop); the
pairs are scored as every facever report scores them (`score_protocol`: the cosine of the
L2-normalised embeddings, after checking every embedding is finite and non-zero); then, for each target
FAR, the lowest threshold whose exact false-accept bound is within the target
(`verification.calibration.thresholds_at_far`); optionally a score-to-probability map, the better of
the isotonic and logistic fits on held-out folds. The result is a `Calibration`: calibration.json,
and with `attach` also stored in the model file, from where `facever export`, `verify` and `identify`
read it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facever.core.embeddings_file import Embeddings
from facever.core.errors import FaceverError
from facever.core.settings import CALIBRATION_CONFIDENCE, DEFAULT_FARS, PROBABILITY_MAPS
from facever.protocols.pair_protocol import PairProtocol
from facever.verification.calibration import (
    Calibration, OperatingPoint, Refusal, compare_maps, fit_map, thresholds_at_far,
)

# What a calibration keeps of the embeddings' metadata: what made the scores (the model, its input and
# the embedding settings), so `verify` can tell when it is used differently.
MODEL_KEYS = ("model", "model_source", "model_sha256", "input_size", "color", "mean", "std", "preprocessing",
              "flip", "amp", "crop_size", "crop_policy", "aligned_here", "aligner")
# Folds drawn for the held-out comparison of probability maps when the pairs file has none.
RANDOM_FOLDS = 5


@dataclass
class CalibrationRun:
    """A calibration and the scores it was computed from (for the CLI's table and the tests)."""

    calibration: Calibration
    scores: np.ndarray
    labels: np.ndarray

    @property
    def refused(self) -> list[Refusal]:
        return self.calibration.refused


def _folds_for_maps(folds: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    if np.unique(folds).size >= 2:
        return folds, f"the pairs file's {np.unique(folds).size} folds"
    rng = np.random.default_rng(seed)
    return rng.permutation(folds.size) % RANDOM_FOLDS, f"{RANDOM_FOLDS} folds drawn at random (the pairs have none)"


def probability_record(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray,
                       methods: Sequence[str] = PROBABILITY_MAPS) -> dict[str, Any]:
    """Each map's held-out log loss and Brier score, the better one by held-out log loss fitted on every
    pair, and the prior it assumes (the pairs' share of same-person pairs)."""
    use, how = _folds_for_maps(np.asarray(folds))
    try:
        held = compare_maps(scores, labels, use, methods)
    except ValueError as exc:
        raise FaceverError(f"cannot compare probability maps on held-out folds: {exc}") from None
    best = min(held, key=lambda m: (held[m]["log_loss"], m))
    prior = float(np.mean(labels))
    return {
        "method": best,
        "map": fit_map(best, scores, labels).to_dict(),
        "prior_same": prior,
        "prior_note": (f"P(same person | score) where a share {prior:.3g} of the pairs are the same person, as "
                       "among the calibration pairs; for another share q multiply the odds p/(1-p) by "
                       f"(q/(1-q)) / ({prior:.3g}/(1-{prior:.3g}))"),
        "held_out": held,
        "chosen_by": "lowest held-out log loss",
        "folds": how,
    }


def calibrate_scores(
    scores,
    labels,
    folds=None,
    *,
    fars: Sequence[float] = DEFAULT_FARS,
    confidence: float = CALIBRATION_CONFIDENCE,
    probability: bool = False,
    pairs: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
) -> CalibrationRun:
    """The calibration of scored pairs (cosines; labels True for same person; folds or None).

    Raises FaceverError for NaN scores, a missing class, bad targets, and when every target is refused
    (the message says how many different-person pairs each needs).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    try:
        items = thresholds_at_far(scores, labels, fars, confidence=confidence)
    except ValueError as exc:
        raise FaceverError(f"cannot calibrate: {exc}") from None
    labels = labels.astype(bool)
    points = [p for p in items if isinstance(p, OperatingPoint)]
    refused = [p for p in items if isinstance(p, Refusal)]
    if not points:
        raise FaceverError("no target FAR can be calibrated on these pairs: "
                           + "; ".join(r.message() for r in refused))
    folds = np.zeros(scores.size, dtype=np.int64) if folds is None else np.asarray(folds)
    info = {"total": int(scores.size), "same": int(labels.sum()), "different": int((~labels).sum()),
            **(pairs or {})}
    cal = Calibration(
        points=points, refused=refused, confidence=float(confidence), pairs=info,
        model={k: v for k, v in (model or {}).items() if k in MODEL_KEYS},
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        probability=probability_record(scores, labels, folds) if probability else None,
    )
    return CalibrationRun(calibration=cal, scores=scores, labels=labels)


def calibrate_embeddings(
    protocol: PairProtocol,
    embeddings: Embeddings,
    *,
    fars: Sequence[float] = DEFAULT_FARS,
    confidence: float = CALIBRATION_CONFIDENCE,
    probability: bool = False,
    allow_missing: bool = False,
    source: str | None = None,
    embeddings_source: str = "the embeddings",
) -> CalibrationRun:
    """Score `protocol`'s pairs with `embeddings` (as every facever report does) and calibrate them."""
    from facever.verification.evaluate import score_protocol

    scored = score_protocol(protocol, embeddings, metric="cosine", allow_missing=allow_missing,
                            embeddings_source=embeddings_source)
    pairs = {"source": source or (str(protocol.source) if protocol.source else protocol.name),
             "protocol": protocol.name, "folds": int(np.unique(scored.folds).size), "dropped": scored.dropped}
    return calibrate_scores(scored.out_of_fold, scored.labels, scored.folds, fars=fars, confidence=confidence,
                            probability=probability, pairs=pairs, model=embeddings.metadata)


def calibrate(
    bench,
    source,
    *,
    embed=None,
    fars: Sequence[float] = DEFAULT_FARS,
    confidence: float = CALIBRATION_CONFIDENCE,
    probability: bool = False,
    allow_missing: bool = False,
    out: str | Path | None = None,
    attach: bool = False,
    hooks=None,
) -> CalibrationRun:
    """`facever calibrate` end to end: `bench` (`workflows.evaluate.open_benchmark`: labelled pairs and the
    data they name) scored with `source` (`workflows.evaluate.Source`: an embeddings file or a model, run
    with the `EmbedSettings` `embed`), then calibrated (`calibrate_embeddings`). The result is written to
    `out` (calibration.json) and, with `attach`, stored in the model file of `source` (`attach_calibration`);
    `out` is checked not to be one of the inputs before any work."""
    from facever.core.paths import check_output_is_not_an_input
    from facever.core.progress import Hooks
    from facever.embedding.loading import model_files
    from facever.workflows.evaluate import benchmark_embeddings

    hooks = hooks or Hooks()
    if attach and source.model is None:
        raise FaceverError("`attach` stores the calibration in the model file: calibrate with the model",
                           options=("attach", "model"))
    if out is not None:
        inputs = [bench.path, *([source.embeddings] if source.embeddings is not None else []),
                  *(model_files(source.model, weights=getattr(embed, "weights", None)) if source.model else [])]
        check_output_is_not_an_input(out, inputs)
    used = benchmark_embeddings(bench, source, embed=embed, allow_missing=allow_missing, hooks=hooks)
    run = calibrate_embeddings(bench.protocol, used.embeddings, fars=fars, confidence=confidence,
                               probability=probability, allow_missing=allow_missing, source=str(bench.path),
                               embeddings_source=used.label)
    if out is not None:
        from facever.verification.report import write_json

        write_json(out, run.calibration.to_dict())
        hooks.message(f"wrote {out}")
    if attach:
        from facever.embedding.export import attach_calibration

        hooks.message(f"stored the calibration in {attach_calibration(source.model, run.calibration)}")
    for refusal in run.refused:
        hooks.warning(f"refused {refusal.message()}")
    return run
