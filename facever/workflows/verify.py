"""`facever verify`: are these two photos the same person? Align, embed, compare, decide.

Each distinct photo is decoded once, aligned (MTCNN + the model's five-point template, the rule of
`facever align`) or, for already aligned crops, fitted to the model's input with the crop policy
(`fit_to_input`); the crops go through the one forward loop of `facever embed` (`ForwardLoop`) in
batches; the score is the cosine similarity of the L2-normalised
embeddings, the engine's `cosine` metric, and the decision is "same person" iff score > threshold,
as in every report facever writes.

A threshold can come from a `report.json` of `facever eval-*`: the mean of its folds' thresholds
(a squared-L2 threshold t is turned into the cosine 1 - t/2, exact for normalised embeddings), and
with it every setting the threshold was chosen under: the flip (`ReportThreshold.flip_for`: the
report's unless the caller asks for another) and the convention's scoring (insightface's f(x) +
f(mirror x)); thresholds of mean-subtracted scores are refused. Or from a calibration (`facever
calibrate`): the calibrated threshold for a target FAR, with its bound on the false-accept rate
(`calibrated_threshold`). Only the latter states how many false accepts to expect.

Pairs files: a CSV/TSV with columns `a,b` (a header naming them, or the first two columns), or the
path-based list `facever pairs` writes (its `same` column is kept as the expected answer). Relative
paths start from `root` (by default the pairs file's folder).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facever.core.errors import FaceverError, InputFileError
from facever.core.json_files import read_json_file
from facever.core.progress import Hooks
from facever.core.settings import DEFAULT_AMP, DEFAULT_FLIP, DEFAULT_MIN_FACE, DEFAULT_SELECT, EMBED_BATCH_SIZE, FLIP_MODES, check_choice
from facever.core.text_files import read_text


@dataclass(frozen=True)
class ReportThreshold:
    """A cosine threshold taken from a report, with where it came from."""

    threshold: float
    protocol: str
    accuracy: float
    accuracy_std: float
    folds: int
    metric: str
    source: str
    model: str | None = None
    model_sha256: str | None = None
    flip: str | None = None
    convention: str = "facever"

    def flip_for(self, requested: str | None) -> tuple[str, str | None]:
        """The flip to verify with: `requested` when given, else the report's (what its threshold was
        chosen on), else the default; and a warning when `requested` overrides a different report flip."""
        from facever.core.settings import DEFAULT_FLIP

        if requested is None:
            return self.flip or DEFAULT_FLIP, None
        if self.flip and requested != self.flip:
            return requested, (f"{self.source} chose its threshold on embeddings with flip {self.flip}; "
                               f"this run uses flip {requested}, so the threshold may not fit")
        return requested, None

    def describe(self) -> str:
        return (f"{self.threshold:.4f} = mean of {self.folds} fold thresholds of {self.protocol} "
                f"({self.metric}, accuracy {100 * self.accuracy:.2f}% +- {100 * self.accuracy_std:.2f}) from {self.source}")


def threshold_from_report(path: str | Path) -> ReportThreshold:
    """The mean of the fold thresholds in `report.json` (eval-lfw, eval-fglfw, eval-ytf, eval-bin), as a cosine."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise FaceverError(f"{path}: no such report")
    data = read_json_file(path)
    try:
        folds = data["folds"]
        thresholds = [float(f["threshold"]) for f in folds]
        settings = data.get("settings", {})
        metric = str(settings.get("metric", "cosine"))
        accuracy = data["accuracy"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"not a facever report.json (no per-fold thresholds: {type(exc).__name__} {exc})") from None
    if not thresholds or not all(math.isfinite(t) for t in thresholds):
        raise InputFileError(path, "the report has no finite fold thresholds")
    if settings.get("subtract_mean"):
        raise InputFileError(path, "its thresholds apply to mean-subtracted embeddings, which a single pair does not have")
    mean = float(np.mean(thresholds))
    if metric == "l2":
        mean = 1.0 - mean / 2.0  # |a - b|^2 = 2 - 2 cos for unit vectors; same iff d < t <=> cos > 1 - t/2
    elif metric == "arccos":
        mean = math.cos(math.pi * mean)  # facenet's distance arccos(cos) / pi: same iff d < t <=> cos > cos(pi t)
    elif metric != "cosine":
        raise InputFileError(path, f"unknown metric {metric!r} in the report")
    emb_meta = settings.get("embeddings_metadata") or {}
    convention = settings.get("convention") or {}
    conv_name = str(convention.get("name", "facever")) if isinstance(convention, dict) else "facever"
    # The flip the threshold was chosen on: the convention's (insightface scores f(x) + f(mirror x) from a
    # concat file), else the embeddings file's.
    conv_flip = convention.get("flip") if isinstance(convention, dict) else None
    flip = conv_flip if conv_flip in ("none", "concat", "sum") else emb_meta.get("flip")
    return ReportThreshold(
        threshold=mean, protocol=str(data.get("protocol", "?")), accuracy=float(accuracy["mean"]),
        accuracy_std=float(accuracy.get("std", 0.0)), folds=len(thresholds), metric=metric, source=str(path),
        model=emb_meta.get("model"), model_sha256=emb_meta.get("model_sha256"), flip=flip, convention=conv_name,
    )


def check_threshold(threshold: float | None) -> float | None:
    """A cosine threshold that can decide something: finite, within the cosine's range -1..1.

    `same person iff cosine > threshold`: NaN would call every pair "different people" without a word,
    and a value above 1 (a distance threshold, a percentage) likewise; below -1, every pair is "same".
    """
    if threshold is None:
        return None
    t = float(threshold)
    if not math.isfinite(t):
        raise FaceverError(f"`threshold` {threshold}: not a number; give a cosine similarity between -1 and 1",
                           options=("threshold",))
    if not -1.0 <= t <= 1.0:
        verdict = "different people" if t > 1 else "the same person"
        raise FaceverError(f"`threshold` {threshold}: a cosine similarity lies between -1 and 1, so every pair would be "
                           f"called {verdict} (a distance or a percentage? give the cosine, e.g. 0.3)",
                           options=("threshold",))
    return t


def read_pairs_table(path: str | Path) -> tuple[list[tuple[str, str]], list[bool | None]]:
    """The pairs of a CSV/TSV (`a,b` columns) or of `facever pairs`' path list: (pairs, expected same or None)."""
    from facever.protocols.pair_lists import looks_like_path_list, read_path_pairs

    path = Path(path)
    text = read_text(path, what="pairs file")
    if looks_like_path_list(text):
        proto = read_path_pairs(path, text)
        return list(zip(proto.first, proto.second)), [bool(v) for v in proto.labels]
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise InputFileError(path, "no pairs found")
    delimiter = "\t" if "\t" in lines[0][1] else ","
    rows = [(n, [c.strip() for c in next(csv.reader(io.StringIO(line), delimiter=delimiter))]) for n, line in lines]
    header = [c.lower() for c in rows[0][1]]
    ia, ib = 0, 1
    if "a" in header and "b" in header:
        ia, ib = header.index("a"), header.index("b")
        rows = rows[1:]
    pairs: list[tuple[str, str]] = []
    for n, cells in rows:
        if len(cells) <= max(ia, ib) or not cells[ia] or not cells[ib]:
            raise InputFileError(path, f"expected two image paths (columns a,b), got {cells}", line=n)
        pairs.append((cells[ia], cells[ib]))
    if not pairs:
        raise InputFileError(path, "no pairs found (only a header)")
    return pairs, [None] * len(pairs)


@dataclass
class FaceChoice:
    """Which face of a photo was used: `faces` found, the chosen one's box (x1, y1, x2, y2) and score."""

    faces: int
    box: list[float] | None = None
    score: float | None = None


def decision_word(same: bool | None) -> str | None:
    """A decision as one word (a table cell, a JSON value): `same`, `different`, or None (no threshold)."""
    return None if same is None else ("same" if same else "different")


@dataclass
class PairResult:
    a: str
    b: str
    cosine: float
    same: bool | None  # None without a threshold
    expected: bool | None = None

    @property
    def decision(self) -> str | None:
        return decision_word(self.same)


@dataclass(frozen=True)
class CalibratedThreshold:
    """The threshold of a calibrated operating point (`facever calibrate`) and where the calibration came from."""

    calibration: Any  # verification.calibration.Calibration
    point: Any  # its OperatingPoint for the target FAR
    source: str  # "attached to MODEL" or the calibration file

    @property
    def threshold(self) -> float:
        return self.point.threshold

    def describe(self) -> str:
        return self.calibration.describe(self.point) + f" ({self.source})"

    def to_dict(self) -> dict[str, Any]:
        cal, p = self.calibration, self.point
        return {
            "far_target": p.far_target, "threshold": p.threshold, "far_bound": p.far_bound,
            "confidence": cal.confidence, "false_accepts": p.false_accepts, "impostor_pairs": p.impostor_pairs,
            "tar": p.tar, "tar_interval": list(p.tar_interval),
            "calibrated_on": {"pairs": cal.pairs.get("total"), "same": cal.pairs.get("same"),
                              "different": cal.pairs.get("different"), "source": cal.pairs.get("source"),
                              "date": cal.created},
            "calibration": self.source, "calibration_id": cal.id,
        }


def calibrated_threshold(model, far: float, *, calibration: str | Path | None = None,
                         flip: str | None = None) -> tuple[CalibratedThreshold, list[str]]:
    """The calibrated point for target `far`: from the calibration file `calibration`, else from the one
    attached to `model` (an `EmbeddingModel`). Returns it and warnings (a calibration of another model, or
    made with another flip mode than `flip`).

    Raises FaceverError when there is no calibration, or none for `far`.
    """
    from facever.verification.calibration import read_calibration

    warnings: list[str] = []
    if calibration is not None:
        cal, source = read_calibration(calibration), str(calibration)
        attached = getattr(model, "calibration", None)
        same_model = cal.model.get("model_sha256") in (None, model.fingerprint) or (
            attached is not None and attached.id == cal.id)
        if not same_model:
            warnings.append(f"{source} was made with another model ({cal.model.get('model')}, sha256 "
                            f"{str(cal.model.get('model_sha256'))[:12]}...); its thresholds may not fit {model.model_id}")
    elif getattr(model, "calibration", None) is not None:
        cal, source = model.calibration, f"attached to {model.model_id}"
    else:
        raise FaceverError(f"{model.model_id} carries no calibration: calibrate it on pairs of your people "
                           "(`facever calibrate`, attached to the model file) or give its calibration.json as "
                           "`calibration`",
                           options=("calibration",))
    made_with = cal.model.get("flip")
    if flip is not None and made_with and made_with != flip:
        warnings.append(f"the calibration was made with flip {made_with}, this run uses flip {flip}: its "
                        "thresholds and bounds do not carry over")
    return CalibratedThreshold(cal, cal.point(far), source), warnings


@dataclass
class VerifyResult:
    pairs: list[PairResult]
    threshold: float | None
    faces: dict[str, FaceChoice] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    threshold_source: ReportThreshold | None = None
    calibration: CalibratedThreshold | None = None
    calibrated_fars: list[float] = field(default_factory=list)  # the model's calibrated targets, if any

    def probabilities(self) -> list[float] | None:
        """P(same person | cosine) of each pair from the calibration's probability map, or None without one."""
        mapping = self.calibration.calibration.probability_map() if self.calibration is not None else None
        if mapping is None:
            return None
        return [float(v) for v in mapping(np.array([p.cosine for p in self.pairs]))]

    def to_dict(self) -> dict[str, Any]:
        probs = self.probabilities()
        cal = self.calibration
        return {
            "calibrated": cal is not None,
            "calibration": None if cal is None else {
                **cal.to_dict(),
                **({"prior_same": cal.calibration.probability["prior_same"],
                    "probability_map": cal.calibration.probability["method"]} if probs is not None else {})},
            "threshold": self.threshold,
            "decision": "same iff cosine > threshold, else different",
            "threshold_from": None if self.threshold_source is None else {
                "report": self.threshold_source.source, "protocol": self.threshold_source.protocol,
                "accuracy": self.threshold_source.accuracy, "metric": self.threshold_source.metric,
                "folds": self.threshold_source.folds, "flip": self.threshold_source.flip,
                "convention": self.threshold_source.convention},
            "pairs": [{"a": p.a, "b": p.b, "cosine": p.cosine,
                       "decision": p.decision,
                       **({"probability_same": probs[i]} if probs is not None else {}),
                       **({"expected_same": p.expected} if p.expected is not None else {})}
                      for i, p in enumerate(self.pairs)],
            "faces": {k: {"faces": v.faces, "box": v.box, "score": v.score} for k, v in self.faces.items()},
            "model": self.model,
        }


def _crop_photos(paths: Sequence[Path], names: Sequence[str], size, *, aligner) -> tuple[list[np.ndarray], dict[str, FaceChoice]]:
    from facever.core.crop import fit_to_input
    from facever.core.images import read_image_rgb

    photos = [read_image_rgb(p) for p in paths]  # ImageDecodeError (a FaceverError) names the file
    if aligner is None:
        return [fit_to_input(rgb, size) for rgb in photos], {}
    crops, choices = [], {}
    for name, rgb, det in zip(names, photos, aligner.detect_batch(photos)):
        faces = aligner.align_detected(rgb, det)
        if not faces.crops:
            reason = faces.error or det.error or "no face found"
            raise FaceverError(f"{name}: {reason} (is it a photo of a face? pass aligned crops as such)")
        crops.append(fit_to_input(np.asarray(faces.crops[0], dtype=np.uint8), size))
        choices[name] = FaceChoice(faces=len(det), box=[round(float(v), 1) for v in faces.boxes[0]],
                                   score=float(faces.scores[0]))
    return crops, choices


def verify_pairs(
    model,
    pairs: Sequence[tuple[str, str]],
    *,
    root: str | Path | None = None,
    threshold: float | None = None,
    aligner=None,
    flip: str = DEFAULT_FLIP,
    device=None,
    amp: str = DEFAULT_AMP,
    batch_size: int = EMBED_BATCH_SIZE,
    expected: Sequence[bool | None] | None = None,
) -> VerifyResult:
    """Score each pair of photos with `model` (an `EmbeddingModel`) and decide against `threshold`.

    Args:
        pairs: (a, b) image paths, relative to `root` when relative.
        aligner: a `FaceAligner` for raw photos (its crop size should be the model's input size);
            None for already aligned crops (fitted to the model's input: centre crop, then resize).
        flip: flip fusion as in `facever embed` (`none`, `concat`, `sum`).
        amp: precision, as in `facever embed` (`facever.core.devices.resolve_amp`).

    Raises FaceverError naming a missing or undecodable photo, or a photo without a face.
    """
    from facever.embedding.extract import ForwardLoop, check_model_rows
    from facever.verification.scores import pair_scores

    check_choice("flip", flip, FLIP_MODES)
    if not pairs:
        raise FaceverError("no pairs to verify")
    threshold = check_threshold(threshold)
    base = Path(root) if root is not None else Path(".")
    names = list(dict.fromkeys(name for pair in pairs for name in pair))
    paths = [Path(n) if Path(n).is_absolute() else base / n for n in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FaceverError(f"{missing[0]}: no such image" + (f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""))
    size = tuple(int(v) for v in model.input_size)
    rows: list[np.ndarray] = []
    choices: dict[str, FaceChoice] = {}
    # The one forward loop of `facever embed`: same crop policy, normalisation, flip and AMP rule.
    loop = ForwardLoop(model, device=device if device is not None else "cpu", flip=flip, amp=amp)
    with loop.running():
        for start in range(0, len(names), batch_size):
            crops, chosen = _crop_photos(paths[start:start + batch_size], names[start:start + batch_size], size,
                                         aligner=aligner)
            choices.update(chosen)
            rows.append(check_model_rows(loop(np.stack(crops)).cpu().numpy(), model.model_id))
    emb = np.concatenate(rows)
    index = {name: i for i, name in enumerate(names)}
    idx_a = np.array([index[a] for a, _ in pairs])
    idx_b = np.array([index[b] for _, b in pairs])
    scores = pair_scores(emb[idx_a], emb[idx_b], metric="cosine")
    expected = list(expected) if expected is not None else [None] * len(pairs)
    results = [
        PairResult(a=a, b=b, cosine=float(s), same=None if threshold is None else bool(s > threshold), expected=e)
        for (a, b), s, e in zip(pairs, scores, expected)
    ]
    return VerifyResult(pairs=results, threshold=threshold, faces=choices,
                        model={**model.metadata(), **loop.settings(), "aligned_here": aligner is not None})


def verify(
    model: str,
    pairs: Sequence[tuple[str, str]] | None = None,
    *,
    pairs_file: str | Path | None = None,
    images: str | Path | None = None,
    threshold: float | None = None,
    threshold_from: str | Path | None = None,
    far: float | None = None,
    calibration: str | Path | None = None,
    aligned: bool = False,
    select: str = DEFAULT_SELECT,
    min_face: int = DEFAULT_MIN_FACE,
    preprocessing: dict[str, Any] | None = None,
    embed=None,
    flip_given: bool = True,
    hooks: Hooks | None = None,
) -> VerifyResult:
    """`facever verify` end to end: the photos of `pairs` (or of `pairs_file`, relative to `images`,
    default its folder) scored with `model` and decided against `threshold` or the mean fold threshold
    of the report `threshold_from` (a warning when that report was made with another model or flip), or at
    the threshold calibrated for false-accept rate `far` (`calibrated_threshold`: from the calibration file
    `calibration`, else the model's attached one).

    `aligned`: the photos are crops already (fitted to the model's input); otherwise MTCNN finds the
    `select` face of each (`min_face` pixels at least) and aligns it as `facever align` does.
    `embed`: the `EmbedSettings` of the evaluation workflow (flip, batch size, device, amp, weights);
    `preprocessing`: mean/std/color overrides for graphs that do not state theirs. With `threshold_from`
    (or `far`), the photos are embedded with the flip the report's (or the calibration's) threshold was
    chosen under, unless `flip_given` (the caller chose `embed.flip` on purpose: then a warning when the
    two differ).
    """
    from facever.core.devices import resolve_device
    from facever.workflows.evaluate import EmbedSettings, load_model

    embed = embed or EmbedSettings()
    hooks = hooks or Hooks()
    if (pairs is None) == (pairs_file is None):
        raise FaceverError("give either pairs of photos or a pairs file", options=("pairs",))
    if sum(v is not None for v in (threshold, threshold_from, far)) > 1:
        raise FaceverError("give one of `threshold`, `threshold_from` and `far`", options=("threshold", "threshold_from", "far"))
    if calibration is not None and far is None:
        raise FaceverError("`calibration` applies with `far`", options=("calibration", "far"))
    check_threshold(threshold)  # before any model is loaded
    source = threshold_from_report(threshold_from) if threshold_from is not None else None
    if source is not None:
        threshold = source.threshold
        flip, warning = source.flip_for(embed.flip if flip_given else None)
        if warning:
            hooks.warning(warning)
        embed = dataclasses.replace(embed, flip=flip)
    expected = None
    root = None
    if pairs_file is not None:
        pairs, expected = read_pairs_table(pairs_file)
        root = Path(images) if images is not None else Path(pairs_file).parent
    device = resolve_device(embed.device)
    emb_model = load_model(model, dataclasses.replace(embed, device=device), **(preprocessing or {}))
    calibrated = None
    if far is not None:
        calibrated, problems = calibrated_threshold(emb_model, far, calibration=calibration,
                                                    flip=embed.flip if flip_given else None)
        made_with = calibrated.calibration.model.get("flip")
        if made_with and not flip_given:
            embed = dataclasses.replace(embed, flip=made_with)  # the embeddings the calibration measured
        threshold = calibrated.threshold
        for problem in problems:
            hooks.warning(problem)
    if source is not None:
        if source.model_sha256 and source.model_sha256 != emb_model.fingerprint:
            hooks.warning(f"{source.source} was made with another model ({source.model}); its threshold may not fit "
                          f"{emb_model.model_id}")
    aligner = None
    if not aligned:
        from facever.data_prep.align import FaceAligner

        aligner = FaceAligner(size=tuple(emb_model.input_size), select=select, min_face=min_face, device=embed.device)
    result = verify_pairs(emb_model, pairs, root=root, threshold=threshold, aligner=aligner, flip=embed.flip,
                          device=device, amp=embed.amp, batch_size=embed.batch_size, expected=expected)
    result.threshold_source = source
    result.calibration = calibrated
    attached = getattr(emb_model, "calibration", None)
    result.calibrated_fars = [p.far_target for p in attached.points] if attached is not None else []
    return result
