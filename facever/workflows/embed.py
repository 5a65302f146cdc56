"""`facever embed` as a library call: a model and a folder (or list) of face images in, an embeddings file
out (`facever.core.embeddings_file`), resumable.

Progress is kept in a hidden cache folder next to OUT (`.OUT.partial/`, the one embedding cache,
keyed by each image's bytes and the settings), so an interrupted run resumes where it stopped and
never reuses a stale row; it is removed once OUT is written.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

from facever.core.errors import FaceverError
from facever.core.settings import DEFAULT_DEVICE, DEFAULT_MIN_FACE, DEFAULT_SELECT


@dataclass
class EmbedHooks:
    """How the caller follows the run: `say(text)`, `warn(text)`, `progress` (a factory
    `progress(description, total)` of context managers yielding `advance(n)`), `bad_images(list)`
    (images without an embedding, each with `.path` and `.reason`)."""

    say: Callable[[str], None] = lambda text: None
    warn: Callable[[str], None] = lambda text: None
    progress: Callable[..., ContextManager[Callable[..., None]]] | None = None
    bad_images: Callable[[list], None] = lambda bad: None


@dataclass
class EmbedOutcome:
    out: Path
    count: int
    dim: int
    bad: list = field(default_factory=list)
    reused: int = 0


def partial_folder(out: Path) -> Path:
    """Where an interrupted run of `embed ... --out OUT` keeps what it has done."""
    return out.parent / f".{out.stem}.partial"


def embed_to_file(
    model: str,
    images: str | Path,
    out: str | Path,
    *,
    weights: str | Path | None = None,
    preprocessing: dict[str, Any] | None = None,
    flip: str,
    align: bool = False,
    size: tuple[int, int] | None = None,
    select: str = DEFAULT_SELECT,
    min_face: int = DEFAULT_MIN_FACE,
    batch_size: int,
    workers: int | None = None,
    device: str = DEFAULT_DEVICE,
    amp: Any = None,
    skip_bad: bool = False,
    hooks: EmbedHooks | None = None,
) -> EmbedOutcome:
    """Embed every image of `images` (folder or list file) with `model` into the embeddings file `out`.

    `align`: the images are photos; detect and align one face each first (crops of `size`, default the
    model's input). `preprocessing`: overrides for ONNX/TorchScript models (mean, std, color). Raises
    FaceverError for no images, a model that cannot be loaded, and images without an embedding unless
    `skip_bad` (the others are kept for the rerun).
    """
    from facever.core.locks import file_lock

    hooks = hooks or EmbedHooks()
    out = Path(out)
    with file_lock(out):
        return _embed(model, Path(images), out, weights=weights, preprocessing=preprocessing or {}, flip=flip,
                      align=align, size=size, select=select, min_face=min_face, batch_size=batch_size,
                      workers=workers, device=device, amp=amp, skip_bad=skip_bad, hooks=hooks)


def _embed(model, images: Path, out: Path, *, weights, preprocessing, flip, align, size, select, min_face, batch_size,
           workers, device, amp, skip_bad, hooks: EmbedHooks) -> EmbedOutcome:
    from facever.core.embeddings_file import save_embeddings
    from facever.data_prep.align_dataset import collect_sources
    from facever.embedding.cache import embed_items_cached
    from facever.embedding.extract import BadImagesError
    from facever.core.paths import check_output_is_not_an_input
    from facever.embedding.loading import load_embedding_model, model_files

    root, sources = collect_sources(images)
    if not sources:
        raise FaceverError(f"{images}: no images found")
    # OUT is never the model, the image list or one of the images (core.paths: compared by inode).
    check_output_is_not_an_input(out, [*model_files(model, weights=weights), images, *(p for p, _ in sources)])
    rel_paths = [rel for _, rel in sources]
    emb_model = load_embedding_model(model, weights=weights, device=device, **preprocessing)
    aligner = _aligner(emb_model, root, align=align, size=size, select=select, min_face=min_face, device=device,
                       hooks=hooks)
    partial = partial_folder(out)
    hooks.say(f"embedding {len(rel_paths)} images from {root} with {emb_model.model_id} ({emb_model.preprocessing})")
    progress = hooks.progress or _no_progress
    try:
        with progress("embedding", total=len(rel_paths)) as advance:
            result, bad, reused = embed_items_cached(
                emb_model, root, rel_paths, cache=partial, flip=flip, batch_size=batch_size, workers=workers,
                device=device, amp=amp, align=aligner, skip_bad=skip_bad, progress=advance,
                on_plan=lambda done, todo: advance(done),
            )
    except BadImagesError as exc:
        hooks.bad_images(exc.bad)
        raise FaceverError(f"{exc}; use `skip_bad` to leave them out (the others are kept for the rerun)",
                           options=("skip_bad",)) from None
    if reused:
        hooks.say(f"resumed: {reused} embeddings from an interrupted run ({partial})")
    if bad:
        hooks.bad_images(bad)
    metadata = {**result.metadata, "images_source": str(Path(images).resolve()),
                "bad": [{"path": b.path, "reason": b.reason} for b in bad]}
    metadata.pop("cache", None)
    save_embeddings(out, result.paths, result.embeddings, metadata)
    shutil.rmtree(partial, ignore_errors=True)
    return EmbedOutcome(out, len(result), result.dim, list(bad), reused)


def _aligner(emb_model, root: Path, *, align: bool, size, select, min_face, device, hooks: EmbedHooks):
    """The face aligner for photos (`align`), else None after warning when the crops were made unlike the
    model's training crops."""
    if align:
        from facever.data_prep.align import FaceAligner

        return FaceAligner(size=tuple(size) if size else tuple(emb_model.input_size), select=select,
                           min_face=min_face, device=device)
    if size:
        raise FaceverError("`size` applies with `align` only (aligned crops are resized to the model's input)",
                           options=("size", "align"))
    from facever.data_prep.alignment_record import alignment_difference, read_alignment_record

    trained_on = emb_model.extra.get("training_crops") or {}
    differs = alignment_difference(read_alignment_record(root), trained_on.get("alignment"), emb_model.input_size)
    if differs:
        hooks.warn(f"{root}: {differs}")
    return None


def _no_progress(description: str, total: int | None, unit: str = "img", done: int = 0):  # noqa: ARG001
    import contextlib

    return contextlib.nullcontext(lambda n=1, **kw: None)
