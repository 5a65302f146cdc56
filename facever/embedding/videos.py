"""Embedding YouTube Faces videos: frames through the one cached forward loop, then one vector a video."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

from facever.core.errors import FaceverError
from facever.core.embeddings_file import Embeddings
from facever.embedding.cache import DEFAULT_CHUNK, embed_items_cached
from facever.embedding.extract import NoImageEmbeddedError, aligner_settings
from facever.protocols.ytf import VideoTree, _some, list_video_frames, select_frames, video_embeddings
from facever.core.settings import DEFAULT_AMP, DEFAULT_FLIP, EMBED_BATCH_SIZE


def embed_videos(
    model,
    tree: VideoTree,
    videos: Sequence[str],
    *,
    frames: int | None = None,
    cache_dir: str | Path | None = None,
    flip: str = DEFAULT_FLIP,
    batch_size: int = EMBED_BATCH_SIZE,
    device="cpu",
    amp: str = DEFAULT_AMP,
    align=None,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[int], None] | None = None,
    frame_lists: Mapping[str, Sequence[str]] | None = None,
) -> tuple[Embeddings, dict]:
    """Embed the videos' frames with `model` and aggregate them per video (`video_embeddings`).

    Only the frames that `frames` selects are embedded. With `cache_dir`, frame embeddings are kept
    there (the one embedding cache, `facever.embedding.cache`: keyed by each frame's bytes, the model
    file's hash, crop policy, flip, precision and aligner) and a later call embeds only frames never
    embedded before, whatever its `frames`. Frames that cannot be embedded (undecodable; no face found
    with `align`) are left out of their video's mean, counted, and not retried from the cache.

    `frame_lists` (from `list_video_frames`) saves listing the folders again when the caller has them.
    Returns (video embeddings keyed by video id, facts for the report).
    """
    if frame_lists is None:
        frame_lists = list_video_frames(tree, videos)
    chosen = select_frames(frame_lists, frames=frames)
    needed = list(dict.fromkeys(f for v in videos for f in chosen[v]))

    planned = {"todo": len(needed)}

    def plan(reused: int, todo: int) -> None:
        planned["todo"] = todo
        if progress is not None and reused:
            progress(reused)  # the frames that came from the cache

    try:
        frame_emb, bad_list, reused = embed_items_cached(
            model, tree.base, needed, cache=cache_dir, flip=flip, batch_size=batch_size, device=device, amp=amp,
            align=align, skip_bad=True, chunk_size=chunk_size, progress=progress, on_plan=plan,
        )
    except NoImageEmbeddedError as exc:
        raise FaceverError(f"no frame could be embedded ({len(exc.bad)} failed, e.g. "
                           f"{_some(sorted(b.path for b in exc.bad))})") from None
    bad = {b.path: b.reason for b in bad_list}
    facts: dict = {"layout": tree.layout, "videos_folder": str(tree.base), "frames_needed": len(needed),
                   "cache": frame_emb.metadata.get("cache"), "frames_embedded_now": planned["todo"],
                   "frames_from_cache": len(needed) - planned["todo"]}
    bad_needed = sorted(bad)
    facts["bad_frames"] = len(bad_needed)
    if bad_needed:
        facts["bad_frame_examples"] = {f: bad[f] for f in bad_needed[:5]}
    videos_emb = video_embeddings(frame_emb, videos, frame_lists, frames=frames, skip=bad_needed)
    meta = model.metadata() if hasattr(model, "metadata") else {}
    videos_emb.metadata.update({"model_metadata": meta, "flip": flip, "amp": frame_emb.metadata.get("amp"),
                                "crop_policy": frame_emb.metadata.get("crop_policy"),
                                "aligner": aligner_settings(align), **facts})
    return videos_emb, facts
