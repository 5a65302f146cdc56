"""A protocol plus embeddings in, a verification result out: the one engine behind every benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facever import __version__
from facever.protocols.pair_protocol import PairProtocol, check_folds
from facever.core.embeddings_file import Embeddings
from facever.core.errors import FaceverError
from facever.core.settings import CONVENTIONS, DEFAULT_CONVENTION, check_choice
from facever.verification import roc
from facever.verification.scores import greater_is_same, indexed_pair_scores, row_norms
from facever.verification.tenfold import KFoldResult, facenet_val_at_far, kfold_accuracy

FARS = (1e-3, 1e-2, 1e-1)


def get_facever_convention() -> dict[str, Any]:
    """What a report made with facever's own convention records under `settings.convention`."""
    from facever.verification.conventions import get_convention

    return get_convention("facever").to_dict()


# Below this norm float32 squares underflow (1e-22 squared is 0): the direction is lost.
_TINY_NORM = 1e-15

@dataclass
class VerificationResult:
    """Everything the 10-fold protocol measured; `to_dict()` is the content of report.json."""

    protocol: str
    kfold: KFoldResult
    fpr: np.ndarray
    tpr: np.ndarray
    roc_thresholds: np.ndarray
    auc: float
    eer: float
    tar_at_far: dict[str, float]
    val_at_far: dict[str, float]
    n_pairs: int
    n_same: int
    dropped_pairs: int
    settings: dict[str, Any] = field(default_factory=dict)
    #: The numbers the convention's script prints (`conventions.peer_table`); None for facever's own.
    peer: dict[str, Any] | None = None
    #: The out-of-fold score of every pair the ROC was drawn from, and its label (True: same person);
    #: kept for the report's score histogram, not written to report.json.
    scores: np.ndarray | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)

    @property
    def accuracy_mean(self) -> float:
        return self.kfold.mean

    @property
    def threshold(self) -> float:
        """The mean of the fold thresholds, in the metric's units (cosine: same iff score > threshold):
        the threshold `facever verify --threshold-from` takes from this result's report."""
        return float(np.mean(self.kfold.thresholds))

    def to_dict(self) -> dict[str, Any]:
        kf = self.kfold
        return {
            "protocol": self.protocol,
            "accuracy": {"mean": kf.mean, "std": kf.std, "stderr": kf.stderr},
            "folds": [
                {
                    "fold": int(f),
                    "accuracy": float(a),
                    "threshold": float(t),
                    "train_accuracy": float(ta),
                    "pairs": int(s),
                }
                for f, a, t, ta, s in zip(kf.fold_ids, kf.accuracies, kf.thresholds, kf.train_accuracies, kf.sizes)
            ],
            "auc": self.auc,
            "eer": self.eer,
            "tar_at_far": dict(self.tar_at_far),
            "val_at_far": dict(self.val_at_far),
            "pairs": {"total": self.n_pairs, "same": self.n_same, "different": self.n_pairs - self.n_same,
                      "dropped": self.dropped_pairs},
            "settings": dict(self.settings),
            **({"peer": dict(self.peer)} if self.peer is not None else {}),
            "facever_version": __version__,
        }


def _missing_message(protocol: PairProtocol, embeddings: Embeddings, missing_items: list[str], n_pairs_missing: int,
                     source: str) -> str:
    shown = ", ".join(missing_items[:5]) + (" ..." if len(missing_items) > 5 else "")
    msg = (
        f"{n_pairs_missing} of {len(protocol)} pairs need images with no embedding in {source} "
        f"({len(missing_items)} images: {shown}); use `allow_missing` to drop those pairs (folds stay as in the file)"
    )
    # The usual cause: aligned crops saved as .png while pairs.txt is read with .jpg.
    stems = {p.rsplit(".", 1)[0]: p for p in embeddings.paths}
    hit = next((stems[m.rsplit(".", 1)[0]] for m in missing_items if m.rsplit(".", 1)[0] in stems), None)
    if hit is not None and protocol.name == "pairs":
        # A path list names each image with its own extension: `ext` does not apply to it.
        msg += (f"; the embeddings have {hit!r}: the pairs file and the embeddings were made from different "
                "folders (crops saved in another format?): write the pairs from the folder that was embedded")
    elif hit is not None:
        msg += f"; the embeddings have {hit!r}: is the image extension right (`ext`)?"
    elif n_pairs_missing == len(protocol) and protocol.name == "lfw":
        example = embeddings.paths[0] if embeddings.paths else "nothing"
        msg += (f"; no pair's image is in the file (it holds e.g. {example!r}): LFW pairs name images "
                "Name/Name_0001.jpg relative to the LFW folder, so embed that folder itself")
    return msg


def pair_rows(protocol: PairProtocol, embeddings: Embeddings, *, allow_missing: bool = False,
              embeddings_source: str = "the embeddings") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(rows1, rows2, keep)`: each pair's two rows in `embeddings` and the mask of pairs that have both.
    Pairs with a missing item raise `FaceverError` unless `allow_missing`; a protocol of one fold, an
    `InputFileError` naming its file (k-fold needs two: `check_folds`)."""
    check_folds(protocol)
    rows1 = embeddings.rows(protocol.first)
    rows2 = embeddings.rows(protocol.second)
    missing = (rows1 < 0) | (rows2 < 0)
    dropped = int(missing.sum())
    if dropped and not allow_missing:
        missing_items = [p for p, r in zip(protocol.first + protocol.second, np.r_[rows1, rows2]) if r < 0]
        missing_items = list(dict.fromkeys(missing_items))
        raise FaceverError(_missing_message(protocol, embeddings, missing_items, dropped, embeddings_source),
                           options=("allow_missing", "ext"))
    return rows1, rows2, ~missing


@dataclass
class ProtocolScores:
    """The scores of a protocol's pairs, ready for the k-fold procedure.

    `by_fold` is (N,) or, with mean subtraction, (K, N): row k scores every pair with the mean of
    the folds other than the k-th, and is used when fold k is tested. `out_of_fold` scores each pair
    as its own fold's test saw it (for ROC); `l2_out_of_fold` are the matching squared distances
    (for facenet's VAL@FAR). Pairs dropped for missing images are already removed.
    """

    metric: str
    by_fold: np.ndarray
    out_of_fold: np.ndarray
    l2_out_of_fold: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    dropped: int = 0


def score_protocol(
    protocol: PairProtocol,
    embeddings: Embeddings,
    *,
    metric: str = "cosine",
    subtract_mean: bool = False,
    allow_missing: bool = False,
    embeddings_source: str = "the embeddings",
) -> ProtocolScores:
    """Look up both items of every pair, validate their embeddings, and score the pairs."""
    rows1, rows2, keep = pair_rows(protocol, embeddings, allow_missing=allow_missing,
                                   embeddings_source=embeddings_source)
    dropped = int((~keep).sum())
    labels = protocol.labels[keep]
    folds = protocol.folds[keep]
    if dropped:
        emptied = sorted(set(np.unique(protocol.folds)) - set(np.unique(folds)))
        if emptied:
            shown = ", ".join(str(int(f) + 1) for f in emptied)
            raise FaceverError(f"after dropping pairs with missing images, fold(s) {shown} have no pairs left")
    # Validate each image's embedding once (an image appears in many pairs): one pass of norms finds
    # NaN/inf rows (non-finite norm) and all-zero rows (norm 0).
    x = embeddings.embeddings
    idx1, idx2 = rows1[keep], rows2[keep]
    used_mask = np.zeros(x.shape[0], dtype=bool)
    used_mask[idx1] = True
    used_mask[idx2] = True
    used = np.flatnonzero(used_mask)  # sorted, like np.unique, without its sort
    norms = np.zeros(x.shape[0], dtype=np.float32)
    norms[used] = row_norms(x[used]) if used.size < x.shape[0] // 2 else row_norms(x)[used]
    bad = ~np.isfinite(norms[used])
    if bad.any():
        names = [embeddings.paths[i] for i in used[bad][:5]]
        raise FaceverError(f"{int(bad.sum())} embeddings contain NaN, infinite or overflowing values "
                           f"(e.g. {', '.join(names)})")
    zero = norms[used] < _TINY_NORM
    if zero.any():
        rows = used[zero]
        names = [embeddings.paths[i] for i in rows[:5]]
        if np.any(x[rows], axis=1).any():  # not zeros: too small for float32 (squares underflow)
            raise FaceverError(f"{int(zero.sum())} embeddings are too small to score in float32 (norm below "
                               f"{_TINY_NORM:g}; e.g. {', '.join(names)}): rescale them")
        raise FaceverError(f"{int(zero.sum())} embeddings are all zeros and have no direction (e.g. {', '.join(names)})")
    n = labels.size

    fold_ids = np.unique(folds)
    if subtract_mean:
        table_rows, inverse = used, np.searchsorted(used, np.r_[idx1, idx2])
        table = x[table_rows]
        t1, t2 = inverse[:n], inverse[n:]
        cos_rows, l2_rows = [], []
        for fold in fold_ids:
            train = folds != fold
            # Both images of every training pair, duplicates included, as SphereFace and facenet do;
            # float64 sums so the mean of ~10k rows does not drift.
            mean = (table[t1[train]].sum(axis=0, dtype=np.float64)
                    + table[t2[train]].sum(axis=0, dtype=np.float64)) / (2 * int(train.sum()))
            centred = (table - mean).astype(np.float32)
            c_norms = row_norms(centred)
            if np.any(c_norms < _TINY_NORM):
                raise FaceverError(
                    f"{int(np.sum(c_norms < _TINY_NORM))} embeddings equal the mean of the other folds' embeddings "
                    "(identical embeddings?): they have no direction once the mean is subtracted; "
                    "score without subtracting the mean"
                )
            cos_rows.append(indexed_pair_scores(centred, c_norms, t1, t2, metric="cosine"))
            l2_rows.append(indexed_pair_scores(centred, c_norms, t1, t2, metric="l2"))
        cos_by_fold, l2_by_fold = np.array(cos_rows), np.array(l2_rows)
        # Out-of-fold scores: each pair scored with the mean of the folds it was not part of.
        pick = np.searchsorted(fold_ids, folds)
        cos_oof = cos_by_fold[pick, np.arange(n)]
        l2_oof = l2_by_fold[pick, np.arange(n)]
    else:
        cos_oof = indexed_pair_scores(x, norms, idx1, idx2, metric="cosine")
        # facenet's distance formula where it decides anything (grid mode); 2 - 2cos where it only
        # feeds VAL@FAR, which saves a second pass over the embeddings.
        l2_oof = (indexed_pair_scores(x, norms, idx1, idx2, metric="l2") if metric == "l2"
                  else np.maximum(2.0 - 2.0 * cos_oof, 0.0))
        cos_by_fold, l2_by_fold = cos_oof, l2_oof
    if metric == "cosine":
        return ProtocolScores(metric, cos_by_fold, cos_oof, l2_oof, labels, folds, dropped)
    return ProtocolScores(metric, l2_by_fold, l2_oof, l2_oof, labels, folds, dropped)


def evaluate_scores(scores: ProtocolScores, *, thresholds: str = "exact", protocol_name: str = "pairs",
                    settings: dict[str, Any] | None = None) -> VerificationResult:
    """The k-fold accuracy, ROC, AUC, EER, TAR@FAR and VAL@FAR of scored pairs."""
    labels, folds = scores.labels, scores.folds
    if labels.all() or not labels.any():
        raise FaceverError(f"the protocol has only {'same' if labels.all() else 'different'}-person pairs; "
                           "accuracy and ROC need both")
    bigger_same = greater_is_same(scores.metric)
    kf = kfold_accuracy(scores.by_fold, labels, folds, thresholds=thresholds, greater_is_same=bigger_same)
    fpr, tpr, roc_t = roc.roc_curve(scores.out_of_fold, labels, greater_is_same=bigger_same)
    return VerificationResult(
        protocol=protocol_name,
        kfold=kf,
        fpr=fpr,
        tpr=tpr,
        roc_thresholds=roc_t,
        auc=roc.auc(fpr, tpr),
        eer=roc.equal_error_rate(fpr, tpr),
        tar_at_far={str(f): roc.tar_at_far(fpr, tpr, f) for f in FARS},
        val_at_far=facenet_val_at_far(scores.l2_out_of_fold, labels, folds, far_target=1e-3),
        n_pairs=int(labels.size),
        n_same=int(labels.sum()),
        dropped_pairs=scores.dropped,
        settings={
            "metric": scores.metric,
            "thresholds": thresholds,
            "decision": ("same iff cosine > threshold" if bigger_same
                         else "same iff squared L2 distance < threshold"),
            "folds": int(kf.fold_ids.size),
            **(settings or {}),
        },
        scores=np.asarray(scores.out_of_fold),
        labels=np.asarray(labels, dtype=bool),
    )


def evaluate_peer(protocol: PairProtocol, embeddings: Embeddings, convention, *, allow_missing: bool = False,
                  embeddings_source: str = "the embeddings") -> VerificationResult:
    """The k-fold protocol of `protocol` scored as `convention`'s script scores it (`conventions` module):
    its accuracy, fold thresholds and printed table (`peer`), with facever's ROC, AUC, EER, TAR@FAR from
    the same scores."""
    from facever.verification.conventions import get_convention, peer_kfold, peer_scores, peer_table

    conv = get_convention(convention)
    rows1, rows2, keep = pair_rows(protocol, embeddings, allow_missing=allow_missing,
                                   embeddings_source=embeddings_source)
    scores = peer_scores(protocol, embeddings, conv, rows1, rows2, keep)
    labels, folds = scores.labels, scores.folds
    if labels.all() or not labels.any():
        raise FaceverError(f"the protocol has only {'same' if labels.all() else 'different'}-person pairs; "
                           "accuracy and ROC need both")
    kf = peer_kfold(scores)
    pick = np.searchsorted(kf.fold_ids, folds)
    oof = scores.by_fold[pick, np.arange(labels.size)]
    fpr, tpr, roc_t = roc.roc_curve(oof, labels, greater_is_same=scores.greater_is_same)
    val_distances = 2.0 - 2.0 * scores.by_fold if scores.greater_is_same else scores.by_fold
    decision = {"l2": "same iff squared L2 distance < threshold",
                "arccos": "same iff arccos(cosine) / pi < threshold",
                "cosine": "same iff cosine > threshold (and different iff cosine < threshold)"}[conv.score]
    return VerificationResult(
        protocol=protocol.name, kfold=kf, fpr=fpr, tpr=tpr, roc_thresholds=roc_t, auc=roc.auc(fpr, tpr),
        eer=roc.equal_error_rate(fpr, tpr), tar_at_far={str(f): roc.tar_at_far(fpr, tpr, f) for f in FARS},
        val_at_far=facenet_val_at_far(val_distances, labels, folds, far_target=1e-3),
        n_pairs=int(labels.size), n_same=int(labels.sum()), dropped_pairs=scores.dropped,
        settings={"convention": conv.to_dict(), "metric": conv.score, "thresholds": conv.thresholds,
                  "decision": decision, "subtract_mean": conv.subtract_mean, "folds": int(kf.fold_ids.size),
                  "allow_missing": allow_missing},
        peer=peer_table(scores, kf),
        scores=np.asarray(oof),
        labels=np.asarray(labels, dtype=bool),
    )


def evaluate_protocol(
    protocol: PairProtocol,
    embeddings: Embeddings,
    *,
    metric: str | None = None,
    thresholds: str = "exact",
    subtract_mean: bool = False,
    allow_missing: bool = False,
    embeddings_source: str = "the embeddings",
    convention: str = DEFAULT_CONVENTION,
) -> VerificationResult:
    """Run the k-fold protocol of `protocol` on `embeddings` (matched by item path).

    `metric` defaults to "cosine" in exact mode and "l2" (squared distance) in grid mode.
    With `subtract_mean`, for each test fold the mean embedding of the other folds' pairs (both
    images of every training pair, as SphereFace and facenet) is subtracted before normalising.
    Pairs whose items have no embedding raise `FaceverError`, or with `allow_missing` are dropped
    without moving any other pair to another fold. A `convention` other than "facever" scores as
    that peer's script (`facever.verification.conventions`), which fixes metric, thresholds and mean
    subtraction itself.
    """
    check_choice("convention", convention, CONVENTIONS)
    if convention != "facever":
        given = [name for name, value, default in (("metric", metric, None), ("thresholds", thresholds, "exact"),
                                                   ("subtract_mean", subtract_mean, False)) if value != default]
        if given:
            raise FaceverError(f"the {convention} convention sets {', '.join(given)} itself (as its script does); "
                               "leave them out or use the facever convention", options=tuple(given) + ("convention",))
        return evaluate_peer(protocol, embeddings, convention, allow_missing=allow_missing,
                             embeddings_source=embeddings_source)
    metric = metric or ("l2" if thresholds == "grid" else "cosine")
    if thresholds == "grid" and metric != "l2":
        raise FaceverError("grid thresholds reproduce facenet/insightface and use `metric` l2 (squared L2 distance)", options=('metric',))
    greater_is_same(metric)  # validates the name
    scores = score_protocol(protocol, embeddings, metric=metric, subtract_mean=subtract_mean,
                            allow_missing=allow_missing, embeddings_source=embeddings_source)
    return evaluate_scores(scores, thresholds=thresholds, protocol_name=protocol.name,
                           settings={"subtract_mean": subtract_mean, "allow_missing": allow_missing,
                                     "convention": get_facever_convention()})
