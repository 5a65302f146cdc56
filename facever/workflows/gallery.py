"""1:N search over your own people: `enroll` a gallery of identity folders, `identify` photos against it.

**Enrol.** Every image of every person (one sub-folder per person) goes through the one cached
embedding loop (`embed_items_cached`: raw photos aligned with a `FaceAligner`, or aligned crops); a
person's template is the mean of the L2-normalised embeddings of their images, L2-normalised again,
as IJB templates are pooled (`verification.ijb.template_features`, each image its own media). Images
that fail (unreadable, no face) are listed; a person all of whose images fail is listed too, never
dropped in silence. Two folders whose names differ only by case or Unicode form are one person named
twice and are refused, as is the same name under two gallery folders.

The gallery file is an embeddings file (`core.embeddings_file`): `paths` are the people's names,
`embeddings` their unit templates, and the metadata says it is a gallery (`kind`), the images per
person, the people and images left out, and the model and settings that made it. `identify` refuses a
gallery made by another model or with another flip mode: templates and probes must be comparable.

**Identify.** Probe photos are embedded the same way and searched exactly (`verification.search`:
numpy blocks, or FAISS's flat index); the best k people are listed with their cosine. With a threshold
the best one is the answer when its cosine is above it, else "unknown". A calibrated threshold (FAR
bound b for one comparison) bounds the chance that someone who is not enrolled is matched to one of G
people by G x b (`open_set_fpir_bound`); templates pool several images, so their scores are not
distributed exactly like the image pairs the calibration measured.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from facever.core.embeddings_file import load_embeddings, save_embeddings
from facever.core.errors import FaceverError, InputFileError
from facever.core.settings import (
    DEFAULT_AMP, DEFAULT_DEVICE, DEFAULT_FLIP, DEFAULT_MIN_FACE, DEFAULT_SEARCH_BACKEND, DEFAULT_SELECT, DEFAULT_TOP_K,
    EMBED_BATCH_SIZE,
)

GALLERY_KIND = "facever-gallery"
TEMPLATE_RULE = "mean of the L2-normalised embeddings of the person's images, L2-normalised (IJB template pooling)"
UNKNOWN = "unknown"


def person_key(name: str) -> str:
    """What makes two names the same person: Unicode NFC form, case folded, outer spaces removed."""
    return unicodedata.normalize("NFC", name).casefold().strip()


@dataclass
class Gallery:
    names: list[str]
    templates: np.ndarray  # G x D float32, unit rows
    images: np.ndarray  # images pooled per person
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class EnrollResult:
    gallery: Gallery
    failed_people: dict[str, list[str]]  # person -> "image: reason" of every image
    bad_images: list[str]  # "person/image: reason" of images left out of enrolled people


def gallery_people(roots: Sequence[str | Path]) -> list[tuple[Path, str, list[str]]]:
    """`(root, person, images relative to root)` of every person sub-folder of every root, in order.

    Raises FaceverError naming both folders when two people are the same name (`person_key`).
    """
    from facever.protocols.pair_lists import identity_images

    seen: dict[str, Path] = {}
    out = []
    for root in map(Path, roots):
        for person, rels in identity_images(root).items():
            key = person_key(person)
            if key in seen:
                raise FaceverError(f"person {person!r} is enrolled twice: {seen[key]} and {root / person} (names "
                                   "differing only by case or accents are one person); rename or merge them")
            seen[key] = root / person
            out.append((root, person, rels))
    return out


def pool_templates(embeddings: np.ndarray, person_of: np.ndarray, n_people: int) -> np.ndarray:
    """Unit templates, one per person id 0..n_people-1 (every id must have a row): IJB's template pooling."""
    from facever.verification.ijb import template_features
    from facever.verification.scores import l2_normalize

    try:
        unit = l2_normalize(embeddings)
    except ValueError as exc:
        raise FaceverError(f"cannot pool templates: {exc}") from None
    ids, feats = template_features(unit, np.asarray(person_of), np.arange(len(person_of)))
    if ids.size != n_people:
        raise ValueError(f"expected rows for {n_people} people, got {ids.size}")
    return feats


def enroll(
    model,
    roots: Sequence[str | Path],
    *,
    align=None,
    flip: str = DEFAULT_FLIP,
    batch_size: int = EMBED_BATCH_SIZE,
    device=DEFAULT_DEVICE,
    amp: str = DEFAULT_AMP,
    cache: str | Path | None = None,
    people: Sequence[tuple[Path, str, list[str]]] | None = None,
    progress: Callable[[int], None] | None = None,
) -> EnrollResult:
    """Templates of the people in the identity folders `roots` (module doc), or of `people` when given
    (`gallery_people(roots)`, e.g. to count the images first). With `cache` (a folder) embeddings are kept
    there as they are made, so an interrupted enrolment resumes. Raises FaceverError when nobody can be
    enrolled."""
    from facever.embedding.cache import embed_items_cached
    from facever.embedding.extract import NoImageEmbeddedError

    people = list(people) if people is not None else gallery_people(roots)
    by_root: dict[Path, list[int]] = {}
    for i, (root, _, _) in enumerate(people):
        by_root.setdefault(root, []).append(i)
    rows: dict[int, list[np.ndarray]] = {i: [] for i in range(len(people))}
    reasons: dict[int, list[str]] = {i: [] for i in range(len(people))}
    meta: dict[str, Any] = {}
    for root, members in by_root.items():
        owner = {rel: i for i in members for rel in people[i][2]}
        try:
            emb, bad, _ = embed_items_cached(model, root, list(owner), cache=cache, flip=flip, batch_size=batch_size,
                                             device=device, amp=amp, align=align, skip_bad=True, progress=progress)
            meta = emb.metadata
            for rel, row in zip(emb.paths, emb.embeddings):
                rows[owner[rel]].append(row)
        except NoImageEmbeddedError as exc:
            bad = exc.bad
        for b in bad:
            reasons[owner[b.path]].append(f"{b.path}: {b.reason}")
    kept = [i for i in range(len(people)) if rows[i]]
    failed = {people[i][1]: reasons[i] for i in range(len(people)) if not rows[i]}
    if not kept:
        shown = "; ".join(f"{name} ({r[0] if r else 'no images'})" for name, r in list(failed.items())[:3])
        raise FaceverError(f"nobody could be enrolled: every image of all {len(people)} people failed ({shown})")
    person_of = np.concatenate([np.full(len(rows[i]), k) for k, i in enumerate(kept)])
    templates = pool_templates(np.stack([r for i in kept for r in rows[i]]), person_of, len(kept))
    bad_images = [r for i in kept for r in reasons[i]]
    metadata = {
        **{k: v for k, v in meta.items() if k not in ("images", "bad_images", "reused", "cache")},
        "kind": GALLERY_KIND,
        "template": TEMPLATE_RULE,
        "people": len(kept),
        "images_per_person": [len(rows[i]) for i in kept],
        "failed_people": failed,
        "bad_images": bad_images,
        "roots": [str(Path(r).resolve()) for r in roots],
    }
    gallery = Gallery(names=[people[i][1] for i in kept], templates=templates,
                      images=np.array([len(rows[i]) for i in kept]), metadata=metadata)
    return EnrollResult(gallery=gallery, failed_people=failed, bad_images=bad_images)


def save_gallery(path: str | Path, gallery: Gallery) -> Path:
    return save_embeddings(path, gallery.names, gallery.templates, gallery.metadata)


def load_gallery(path: str | Path) -> Gallery:
    """A gallery written by `save_gallery` (InputFileError for anything else, an empty file included)."""
    emb = load_embeddings(path)
    meta = emb.metadata
    if meta.get("kind") != GALLERY_KIND:
        raise InputFileError(path, "not a gallery (an embeddings file of images? make one with `facever enroll`)")
    counts = meta.get("images_per_person")
    if not isinstance(counts, list) or len(counts) != len(emb):
        raise InputFileError(path, "gallery metadata lacks the images of each person (a damaged or edited file?)")
    norms = np.linalg.norm(emb.embeddings, axis=1)
    if not np.all(np.isfinite(norms)) or np.any(np.abs(norms - 1.0) > 1e-3):
        raise InputFileError(path, "gallery templates are not unit vectors (a damaged or edited file?)")
    return Gallery(names=emb.paths, templates=emb.embeddings, images=np.asarray(counts), metadata=meta)


def made_with(model, sha256: str | None) -> bool:
    """True when `model` is the model file of fingerprint `sha256`, or that file with a calibration
    attached since (`facever calibrate --attach` rewrites the file; the weights stay)."""
    if not sha256 or model.fingerprint == sha256:
        return True
    cal = getattr(model, "calibration", None)
    return cal is not None and cal.model.get("model_sha256") == sha256


def check_gallery_model(gallery: Gallery, model, *, flip: str, source: str = "the gallery") -> None:
    """Refuse to search `gallery` with probes of another model or flip mode (FaceverError)."""
    meta = gallery.metadata
    if not made_with(model, meta.get("model_sha256")):
        raise FaceverError(f"{source} was enrolled with another model ({meta.get('model')}, sha256 "
                           f"{str(meta.get('model_sha256'))[:12]}...) than {model.model_id}; enrol again with it")
    if meta.get("flip") and meta["flip"] != flip:
        raise FaceverError(f"{source} was enrolled with flip {meta['flip']}, not {flip}: use the same flip mode",
                           options=("flip",))


@dataclass
class Identification:
    photo: str
    matches: list[tuple[str, float]]  # best first
    decision: str | None  # a name, UNKNOWN, or None without a threshold
    error: str | None = None  # a photo that could not be embedded (no face, unreadable)

    def to_dict(self) -> dict[str, Any]:
        return {"photo": self.photo, "decision": self.decision, "error": self.error,
                "matches": [{"person": n, "cosine": s} for n, s in self.matches]}


@dataclass
class IdentifyResult:
    rows: list[Identification]
    threshold: float | None
    gallery_size: int
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "decision": "the best person iff cosine > threshold, else unknown",
                "gallery_people": self.gallery_size, **self.settings, "photos": [r.to_dict() for r in self.rows]}


def identify(
    model,
    gallery: Gallery,
    photos: Sequence[tuple[str | Path, Sequence[str]]],
    *,
    k: int = DEFAULT_TOP_K,
    threshold: float | None = None,
    align=None,
    backend: str = DEFAULT_SEARCH_BACKEND,
    flip: str = DEFAULT_FLIP,
    batch_size: int = EMBED_BATCH_SIZE,
    device=DEFAULT_DEVICE,
    amp: str = DEFAULT_AMP,
    cache: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> IdentifyResult:
    """The best `k` gallery people for each photo (`photos`: `(root, relative paths)` groups), and the
    decision at `threshold` (module doc). Photos that cannot be embedded get an `error`, not a match.
    With `cache` (a folder) the photos' embeddings are kept there, so an interrupted run resumes."""
    from facever.embedding.cache import embed_items_cached
    from facever.embedding.extract import NoImageEmbeddedError
    from facever.verification.scores import l2_normalize
    from facever.verification.search import top_k

    if len(gallery) == 0:
        raise FaceverError("the gallery is empty: nobody to identify against")
    check_gallery_model(gallery, model, flip=flip)
    found: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    order: list[str] = []
    for root, rels in photos:
        root = Path(root)
        names = {rel: str(root / rel) for rel in rels}
        order += [names[r] for r in rels]
        try:
            emb, bad, _ = embed_items_cached(model, root, list(rels), cache=cache, flip=flip, batch_size=batch_size,
                                             device=device, amp=amp, align=align, skip_bad=True, progress=progress)
            found.update((names[p], row) for p, row in zip(emb.paths, emb.embeddings))
        except NoImageEmbeddedError as exc:
            bad = exc.bad
        errors.update((names[b.path], b.reason) for b in bad)
    probes = [p for p in order if p in found]
    scores = rows = np.zeros((0, 0))
    if probes:
        try:
            unit = l2_normalize(np.stack([found[p] for p in probes]))
        except ValueError as exc:
            raise FaceverError(f"cannot search: {exc}") from None
        if unit.shape[1] != gallery.templates.shape[1]:
            raise FaceverError(f"probe embeddings have {unit.shape[1]} dimensions, the gallery's templates "
                               f"{gallery.templates.shape[1]}")
        scores, rows = top_k(gallery.templates, unit, k, backend=backend)
    at = {p: i for i, p in enumerate(probes)}
    out = []
    for photo in order:
        if photo not in at:
            out.append(Identification(photo, [], None, error=errors.get(photo, "not embedded")))
            continue
        i = at[photo]
        matches = [(gallery.names[int(r)], float(s)) for s, r in zip(scores[i], rows[i])]
        decision = None if threshold is None else (matches[0][0] if matches[0][1] > threshold else UNKNOWN)
        out.append(Identification(photo, matches, decision))
    return IdentifyResult(rows=out, threshold=threshold, gallery_size=len(gallery),
                          settings={"k": int(k), "backend": backend, "flip": flip})


def model_spec_of(gallery: Gallery, source: str | Path = "the gallery") -> str:
    """The model spec that enrolled `gallery` (for `load_embedding_model`), from its metadata."""
    meta = gallery.metadata
    model_id, path = str(meta.get("model", "")), meta.get("model_source")
    if not path:
        raise FaceverError(f"{source} does not say which model enrolled it: give the model", options=("model",))
    if model_id.startswith(("facenet:", "arcface:")):
        return f"{model_id}={path}"
    return str(path)


def write_answers(path: str | Path, result: IdentifyResult) -> Path:
    """The answers as JSON (`to_dict()`) or CSV (one row per photo: photo, decision, error, then person_1,
    cosine_1 ... person_k, cosine_k), atomically."""
    import csv
    import io

    from facever.core.atomic import write_text_atomic
    from facever.verification.report import write_json

    path = Path(path)
    if path.suffix.lower() == ".json":
        return write_json(path, result.to_dict())
    k = max((len(r.matches) for r in result.rows), default=0)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["photo", "decision", "error"] + [c for i in range(1, k + 1) for c in (f"person_{i}", f"cosine_{i}")])
    for r in result.rows:
        cells = [c for n, s in r.matches for c in (n, f"{s:.6f}")]
        writer.writerow([r.photo, r.decision or "", r.error or ""] + cells + [""] * (2 * k - len(cells)))
    write_text_atomic(path, buf.getvalue())
    return path


# -- the commands, end to end ------------------------------------------------------------------------------


def _aligner(aligned: bool, model, select: str, min_face: int, device):
    if aligned:
        return None
    from facever.data_prep.align import FaceAligner

    return FaceAligner(size=tuple(model.input_size), select=select, min_face=min_face, device=device)


def enroll_gallery(model: str, roots: Sequence[str | Path], out: str | Path, *, embed=None, aligned: bool = False,
                   select: str = DEFAULT_SELECT, min_face: int = DEFAULT_MIN_FACE, hooks=None) -> EnrollResult:
    """`facever enroll`: the people of `roots` enrolled with the model `model` (any `load_embedding_model`
    spec, with the `EmbedSettings` `embed`) into the gallery file `out`. Photos are aligned (MTCNN, the
    `select` face of at least `min_face` pixels) unless `aligned`. Embeddings are kept in a hidden folder
    next to `out` until the gallery is written, so an interrupted enrolment resumes. `hooks` hears about
    progress, the images left out and the people not enrolled."""
    import shutil

    from facever.core.progress import Hooks
    from facever.workflows.evaluate import EmbedSettings, load_model

    from facever.core.paths import check_output_is_not_an_input
    from facever.embedding.loading import model_files

    embed = embed or EmbedSettings()
    hooks = hooks or Hooks()
    out = Path(out)
    people = gallery_people(roots)
    check_output_is_not_an_input(out, [*model_files(model, weights=embed.weights),
                                       *(root / rel for root, _, rels in people for rel in rels)])
    net = load_model(model, embed)
    partial = out.parent / f".{out.stem}.partial"
    with hooks.progress("enrolling", sum(len(rels) for _, _, rels in people)) as advance:
        result = enroll(net, roots, people=people, cache=partial, align=_aligner(aligned, net, select, min_face,
                        embed.device), flip=embed.flip, batch_size=embed.batch_size, device=embed.device,
                        amp=embed.amp, progress=advance)
    for name, reasons in result.failed_people.items():
        hooks.warning(f"{name}: not enrolled, none of their {len(reasons)} images could be used ("
                      + "; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else "") + ")")
    for reason in result.bad_images[:20]:
        hooks.warning(f"left out {reason}")
    if len(result.bad_images) > 20:
        hooks.warning(f"... and {len(result.bad_images) - 20} more images left out")
    save_gallery(out, result.gallery)
    shutil.rmtree(partial, ignore_errors=True)
    g = result.gallery
    hooks.message(f"wrote {out}: {len(g)} people from {int(g.images.sum())} images ({net.model_id}, flip {embed.flip})"
                  + (f"; {len(result.failed_people)} people not enrolled" if result.failed_people else ""))
    return result


def identify_photos(
    gallery: str | Path,
    photos: Sequence[str | Path],
    *,
    model: str | None = None,
    embed=None,
    flip_given: bool = True,
    far: float | None = None,
    calibration: str | Path | None = None,
    threshold: float | None = None,
    k: int = DEFAULT_TOP_K,
    backend: str = DEFAULT_SEARCH_BACKEND,
    aligned: bool = False,
    select: str = DEFAULT_SELECT,
    min_face: int = DEFAULT_MIN_FACE,
    out: str | Path | None = None,
    hooks=None,
) -> IdentifyResult:
    """`facever identify`: `photos` (files, folders or lists of photos) searched in the gallery file `gallery`
    with `model` (default: the one the gallery names) and decided at `threshold`, or at the threshold
    calibrated for false-accept rate `far` (`calibration` file, else the model's own; its bound and the
    union bound over the gallery go to `hooks.message`). Without `flip_given`, the gallery's flip mode is
    used. With `out` (.csv or .json) the answers are written there, resuming an interrupted run from a
    hidden cache next to it."""
    import dataclasses
    import shutil

    from facever.core.progress import Hooks
    from facever.data_prep.align_dataset import collect_sources
    from facever.verification.search import open_set_fpir_bound
    from facever.workflows.evaluate import EmbedSettings, load_model
    from facever.workflows.verify import calibrated_threshold

    embed = embed or EmbedSettings()
    hooks = hooks or Hooks()
    if far is not None and threshold is not None:
        raise FaceverError("give either `far` or `threshold`, not both", options=("far", "threshold"))
    if calibration is not None and far is None:
        raise FaceverError("`calibration` applies with `far`", options=("calibration", "far"))
    if out is not None and Path(out).suffix.lower() not in (".csv", ".json"):
        raise FaceverError(f"{out}: answers are written to a .csv or a .json file", options=("out",))
    g = load_gallery(gallery)
    if not flip_given and g.metadata.get("flip"):
        embed = dataclasses.replace(embed, flip=g.metadata["flip"])
    spec = model or model_spec_of(g, gallery)
    groups = [(root, [rel for _, rel in items]) for root, items in map(collect_sources, photos)]
    if out is not None:
        from facever.core.paths import check_output_is_not_an_input
        from facever.embedding.loading import model_files

        check_output_is_not_an_input(out, [gallery, *model_files(spec, weights=embed.weights), *photos,
                                           *(Path(root) / rel for root, rels in groups for rel in rels)])
    net = load_model(spec, embed)
    calibrated = None
    if far is not None:
        calibrated, problems = calibrated_threshold(net, far, calibration=calibration, flip=embed.flip)
        threshold = calibrated.threshold
        for problem in problems:
            hooks.warning(problem)
        hooks.message(calibrated.describe())
        hooks.message(f"a person not enrolled is matched to one of the {len(g)} people with probability <= "
                      f"{open_set_fpir_bound(calibrated.point.far_bound, len(g)):.3g} (union bound over the gallery)")
    elif threshold is not None:
        hooks.message(f"threshold {threshold:g} given by hand (uncalibrated: no bound on false matches)")
    else:
        hooks.message("no threshold (`far` or `threshold`): listing the best people without a decision")
    partial = Path(out).parent / f".{Path(out).stem}.partial" if out is not None else None
    with hooks.progress("identifying", sum(len(r) for _, r in groups)) as advance:
        result = identify(net, g, groups, k=k, threshold=threshold, backend=backend, flip=embed.flip,
                          align=_aligner(aligned, net, select, min_face, embed.device), batch_size=embed.batch_size,
                          device=embed.device, amp=embed.amp, cache=partial, progress=advance)
    if calibrated is not None:
        result.settings["calibration"] = calibrated.to_dict()
    if out is not None:
        write_answers(out, result)
        shutil.rmtree(partial, ignore_errors=True)
        hooks.message(f"wrote {out}")
    return result
