"""`facever check`: is this model fed the way it was trained? Score the user's pairs with the model's
declared preprocessing and with the usual mistakes, and say when a mistake separates them clearly better.

Variants, each differing from the declared contract in one thing:

- channels: RGB <-> BGR;
- normalisation: each common convention the model does not declare (`CONVENTIONS`: insightface's
  (x - 127.5) / 127.5, facenet's (x - 127.5) / 128, ImageNet's mean and std, x / 255, raw 0..255),
  skipping any within 2% of the declared one (insightface's and facenet's differ by 0.4%);
- alignment template: the crop as the other five-point template would have placed the face (112x112,
  ArcFace's, for a 112x96 model and the other way round; other sizes likewise, the template scaled),
  resized to the model's input, the way a crop of the other template gets fed by a plain resize. The
  two templates are the same reference scaled and shifted (`data_prep.templates`), so the other
  template's crop is an exact similarity warp of this one (borders it did not see are black);
- flip: each flip mode other than the run's (`none`, `concat`, `sum`).

Every variant runs through the one forward loop (`embed_pixels`) on the same crops; a pair's score is
the cosine of the normalised embeddings, the rule of every facever report. Each variant's AUC is
compared with the declared contract's on the same pairs: `delta` and a paired bootstrap over the pairs
(the same resampled pairs for both). A variant is **clearly better** when its AUC is higher by at least
`MARGIN` and the bootstrap's lower 2.5% quantile of the difference is above zero. Pairs that share
photos are not independent, so the bootstrap interval is on the narrow side; the margin is there for
that.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from facever.core.errors import FaceverError
from facever.core.settings import (
    DEFAULT_AMP, DEFAULT_DEVICE, DEFAULT_FLIP, DEFAULT_MIN_FACE, DEFAULT_SELECT, EMBED_BATCH_SIZE, FLIP_MODES,
)

# (key, label, mean, std) on the 0..1 scale: x = (pixels / 255 - mean) / std.
CONVENTIONS = (
    ("insightface", "(x - 127.5) / 127.5 (insightface, arcface_torch)", (0.5,) * 3, (0.5,) * 3),
    ("facenet", "(x - 127.5) / 128 (facenet)", (127.5 / 255.0,) * 3, (128.0 / 255.0,) * 3),
    ("imagenet", "ImageNet mean and std", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("unit", "x / 255 (0..1)", (0.0,) * 3, (1.0,) * 3),
    ("pixels", "raw 0..255 pixels", (0.0,) * 3, (1.0 / 255.0,) * 3),
)
# A variant is clearly better when its AUC exceeds the declared one's by this much, and the paired
# bootstrap's lower 2.5% quantile of the difference is above zero.
MARGIN = 0.01
BOOTSTRAP = 1000


@dataclass(frozen=True)
class Variant:
    key: str  # "declared", "channels", "norm:facenet", "template", "flip:none"
    kind: str  # declared, channels, normalisation, template, flip
    label: str
    color: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: str
    other_template: tuple[int, int] | None = None  # crops re-placed on this template, resized back
    verdict: str = ""  # what it means when this variant is clearly better


def _close(a, b, rel: float = 0.02) -> bool:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(np.all(np.abs(a - b) <= rel * np.maximum(np.abs(b), 0.05)))


def other_template_size(size: tuple[int, int]) -> tuple[int, int]:
    """The other alignment template at the same height: 112x96 <-> 112x112 (and scaled for other sizes)."""
    h, w = int(size[0]), int(size[1])
    return (h, int(round(h * 96 / 112))) if w == h else (h, h)


def variants(model, flip: str) -> list[Variant]:
    """The declared contract of `model` with `flip`, then each one-thing-different variant (module doc)."""
    mean, std, color = tuple(model.mean), tuple(model.std), model.color
    h, w = (int(v) for v in model.input_size)
    out = [Variant("declared", "declared", f"as declared: {model.preprocessing}, flip {flip}", color, mean, std, flip)]
    swapped = "BGR" if color == "RGB" else "RGB"
    out.append(Variant("channels", "channels", f"channels {swapped}", swapped, mean, std, flip,
                       verdict=f"this model looks like it expects {swapped} input (it declares {color})"))
    for key, label, m, s in CONVENTIONS:
        if _close(m, mean) and _close(s, std):
            continue
        out.append(Variant(f"norm:{key}", "normalisation", f"normalised as {label}", color, m, s, flip,
                           verdict=f"this model looks like it expects pixels normalised as {label}, not as declared"))
    oh, ow = other_template_size((h, w))
    out.append(Variant("template", "template", f"crops of the {oh}x{ow} template resized to {h}x{w}", color, mean, std,
                       flip, other_template=(oh, ow),
                       verdict=f"this model looks like it was trained on faces aligned on the {oh}x{ow} template "
                               f"and resized to {h}x{w}, not on the {h}x{w} template"))
    for f in FLIP_MODES:
        if f != flip:
            out.append(Variant(f"flip:{f}", "flip", f"flip {f}", color, mean, std, f,
                               verdict=f"flip {f} separates these pairs better than flip {flip}"))
    return out


def retemplate(crops: np.ndarray, size: tuple[int, int], other: tuple[int, int]) -> np.ndarray:
    """Crops aligned on the template of `size` re-placed as the template of `other` places the face (a
    similarity warp between the two templates), then resized back to `size`."""
    from facever.core.opencv_guard import opencv
    from facever.data_prep.templates import template_for_size

    cv2 = opencv()
    src, dst = template_for_size(size), template_for_size(other)
    # Both templates are the reference scaled and shifted: dst = src * k + t exactly.
    k = float(np.linalg.norm(dst[1] - dst[0]) / np.linalg.norm(src[1] - src[0]))
    t = dst.mean(axis=0) - k * src.mean(axis=0)
    matrix = np.array([[k, 0.0, t[0]], [0.0, k, t[1]]])
    h, w = size
    out = np.empty_like(crops)
    for i, crop in enumerate(crops):
        placed = cv2.warpAffine(crop, matrix, (other[1], other[0]), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out[i] = cv2.resize(placed, (w, h), interpolation=cv2.INTER_AREA if other[1] > w else cv2.INTER_LINEAR)
    return out


def weighted_aucs(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC (ties count half, as Mann-Whitney) of `scores` with each row of `weights` (B x N pair counts)."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], labels[order]
    w = np.asarray(weights, dtype=np.float64)[:, order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]  # groups of equal scores
    gen = np.add.reduceat(w * y, starts, axis=1)
    imp = np.add.reduceat(w * ~y, starts, axis=1)
    below = np.cumsum(imp, axis=1) - imp
    total = gen.sum(axis=1) * imp.sum(axis=1)
    return (gen * (below + 0.5 * imp)).sum(axis=1) / total


@dataclass
class VariantResult:
    variant: Variant
    auc: float
    eer: float
    delta: float  # AUC minus the declared contract's
    delta_low: float  # paired bootstrap 2.5% and 97.5% quantiles of delta
    delta_high: float
    clearly_better: bool

    def to_dict(self) -> dict[str, Any]:
        v = self.variant
        return {"variant": v.key, "kind": v.kind, "label": v.label, "auc": self.auc, "eer": self.eer,
                "delta_auc": self.delta, "delta_auc_95": [self.delta_low, self.delta_high],
                "clearly_better": self.clearly_better,
                "preprocessing": {"color": v.color, "mean": list(v.mean), "std": list(v.std), "flip": v.flip,
                                  "other_template": list(v.other_template) if v.other_template else None}}


@dataclass
class CheckResult:
    results: list[VariantResult]
    pairs: int
    same: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def findings(self) -> list[str]:
        """The verdict of every clearly better variant, best first."""
        better = sorted((r for r in self.results if r.clearly_better), key=lambda r: -r.delta)
        return [f"{r.variant.verdict}: AUC {r.auc:.4f} against {self.results[0].auc:.4f} as declared "
                f"(+{r.delta:.4f}, 95% bootstrap {r.delta_low:+.4f} to {r.delta_high:+.4f})" for r in better]

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "same": self.same,
                "rule": f"clearly better: AUC higher by >= {MARGIN} and the paired bootstrap's 2.5% quantile of the "
                        "difference above 0", "findings": self.findings,
                "variants": [r.to_dict() for r in self.results], "settings": self.settings}


def compare_variants(scores: dict[str, np.ndarray], labels: np.ndarray, variant_list: Sequence[Variant], *,
                     bootstrap: int = BOOTSTRAP, seed: int = 0, margin: float = MARGIN) -> list[VariantResult]:
    """AUC, EER and the paired bootstrap of each variant's scores against `scores["declared"]` (module doc)."""
    from facever.verification import roc

    labels = np.asarray(labels, dtype=bool)
    rng = np.random.default_rng(seed)
    # Resample within each class (sizes kept), so every resample has both and an AUC.
    counts = np.zeros((bootstrap, labels.size))
    for cls in (True, False):
        idx = np.flatnonzero(labels == cls)
        counts[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), size=bootstrap)
    base = weighted_aucs(scores["declared"], labels, counts)
    base_auc = roc.auc(*roc.roc_curve(scores["declared"], labels)[:2])
    out = []
    for v in variant_list:
        s = scores[v.key]
        fpr, tpr, _ = roc.roc_curve(s, labels)
        auc = roc.auc(fpr, tpr)
        diffs = weighted_aucs(s, labels, counts) - base
        low, high = (float(q) for q in np.quantile(diffs, [0.025, 0.975]))
        delta = auc - base_auc
        better = v.key != "declared" and delta >= margin and low > 0
        out.append(VariantResult(v, auc, roc.equal_error_rate(fpr, tpr), delta, low, high, better))
    return out


def check_model(
    model,
    protocol,
    images: str | Path,
    *,
    flip: str = DEFAULT_FLIP,
    align=None,
    batch_size: int = EMBED_BATCH_SIZE,
    device=DEFAULT_DEVICE,
    amp: str = DEFAULT_AMP,
    bootstrap: int = BOOTSTRAP,
    progress: Callable[[int], None] | None = None,
) -> CheckResult:
    """Score `protocol`'s pairs of images under `images` with `model` as declared and with each variant."""
    from facever.embedding.extract import array_batches, embed_pixels
    from facever.verification.scores import pair_scores

    if flip not in FLIP_MODES:
        raise FaceverError(f"unknown flip mode {flip!r}; use one of: {', '.join(FLIP_MODES)}")
    labels = np.asarray(protocol.labels, dtype=bool)
    if labels.all() or not labels.any():
        raise FaceverError("the check needs same-person and different-person pairs; the pairs have only one kind")
    items = protocol.items()
    size = tuple(int(v) for v in model.input_size)
    crops = read_crops(Path(images), items, size, align=align)
    plan = variants(model, flip)
    runs = [v for v in plan if v.kind != "flip"]
    index = {p: i for i, p in enumerate(items)}
    a = np.array([index[p] for p in protocol.first])
    b = np.array([index[p] for p in protocol.second])
    scores: dict[str, np.ndarray] = {}
    for v in runs:
        fed = dataclasses.replace(model, color=v.color, mean=v.mean, std=v.std)
        pixels = retemplate(crops, size, v.other_template) if v.other_template else crops
        emb, _ = embed_pixels(fed, array_batches(pixels, batch_size), flip="concat" if v.key == "declared" else v.flip,
                              device=device, amp=amp, count=len(items), progress=progress)
        if v.key == "declared":  # every flip mode from f(x) and f(mirror x)
            half = emb.shape[1] // 2
            by_flip = {"none": emb[:, :half], "concat": emb, "sum": emb[:, :half] + emb[:, half:]}
            for f, e in by_flip.items():
                scores["declared" if f == flip else f"flip:{f}"] = pair_scores(e[a], e[b])
        else:
            scores[v.key] = pair_scores(emb[a], emb[b])
    results = compare_variants(scores, labels, plan, bootstrap=bootstrap)
    return CheckResult(results=results, pairs=int(labels.size), same=int(labels.sum()),
                       settings={"model": model.model_id, "declared": model.preprocessing, "flip": flip,
                                 "images": str(images), "margin": MARGIN, "bootstrap": bootstrap})


def check(model: str, bench, *, embed=None, preprocessing: dict[str, Any] | None = None, align: bool = False,
          select: str = DEFAULT_SELECT, min_face: int = DEFAULT_MIN_FACE, bootstrap: int = BOOTSTRAP,
          out: str | Path | None = None, hooks=None) -> CheckResult:
    """`facever check`: the model `model` (any `load_embedding_model` spec, `preprocessing` overriding what an
    ONNX/TorchScript file declares) on the pairs of `bench` (`workflows.evaluate.open_benchmark`, an image
    benchmark with its folder), with the `EmbedSettings` `embed` (its flip is the declared row's). Raw
    photos are aligned first when `align` (MTCNN, the `select` face of at least `min_face` pixels). The
    result is written to `out` (JSON) when given, which must not be one of the inputs."""
    from facever.core.paths import check_output_is_not_an_input
    from facever.core.progress import Hooks
    from facever.embedding.loading import model_files
    from facever.workflows.evaluate import EmbedSettings, load_model

    embed = embed or EmbedSettings()
    hooks = hooks or Hooks()
    if bench.kind != "images" or bench.data is None:
        raise FaceverError(f"the check embeds image pairs from a folder; {bench.name} pairs with their images "
                           "folder are needed", options=("images",))
    if out is not None:
        check_output_is_not_an_input(out, [bench.path, *model_files(model, weights=embed.weights),
                                           *(bench.data / p for p in bench.protocol.items())])
    net = load_model(model, embed, **(preprocessing or {}))
    aligner = None
    if align:
        from facever.data_prep.align import FaceAligner

        aligner = FaceAligner(size=tuple(net.input_size), select=select, min_face=min_face, device=embed.device)
    total = len(bench.protocol.items()) * (len(variants(net, embed.flip)) - len(FLIP_MODES) + 1)
    with hooks.progress("checking", total) as advance:
        result = check_model(net, bench.protocol, bench.data, flip=embed.flip, align=aligner,
                             batch_size=embed.batch_size, device=embed.device, amp=embed.amp, bootstrap=bootstrap,
                             progress=advance)
    hooks.message(f"{result.pairs} pairs ({result.same} same-person) scored with {net.model_id}")
    if out is not None:
        from facever.verification.report import write_json

        write_json(out, result.to_dict())
        hooks.message(f"wrote {out}")
    return result


def read_crops(root: Path, items: Sequence[str], size: tuple[int, int], *, align=None) -> np.ndarray:
    """uint8 N x h x w x 3 crops of `items` under `root`: aligned crops fitted to `size` (the crop policy),
    or with `align` (a `FaceAligner` at `size`) raw photos aligned. A missing or faceless image is an error."""
    from facever.core.crop import fit_to_input
    from facever.core.images import read_image_rgb

    if not root.is_dir():
        raise FaceverError(f"{root}: image folder not found")
    missing = [p for p in items if not (root / p).is_file()]
    if missing:
        raise FaceverError(f"{len(missing)} of {len(items)} images of the pairs are missing under {root}: "
                           + ", ".join(missing[:5]))
    out = np.empty((len(items), *size, 3), dtype=np.uint8)
    step = 32  # photos decoded and aligned at a time (the detector runs batched)
    for start in range(0, len(items), step):
        names = items[start:start + step]
        photos = [read_image_rgb(root / rel) for rel in names]
        if align is not None:
            aligned = align.align_batch(photos)
            for rel, faces in zip(names, aligned):
                if not faces.crops:
                    raise FaceverError(f"{root / rel}: {faces.error or 'no face found'}")
            photos = [np.asarray(faces.crops[0], dtype=np.uint8) for faces in aligned]
        for i, rgb in enumerate(photos, start=start):
            out[i] = fit_to_input(rgb, size)
    return out
