"""Embedding YouTube Faces videos: frames through the forward loop, a frame cache, then one vector a video."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from facever.core.embeddings_file import Embeddings
from facever.core.errors import FaceverError
from facever.embedding.extract import embed_images
from facever.embedding.frame_cache import EmbeddingCache, _bad_paths
from facever.protocols.ytf import VideoTree, _some, list_video_frames, select_frames, video_embeddings


def aligner_settings(align) -> dict | None:
    """The settings of a `FaceAligner` that change its crops (for reports and the cache key)."""
    if align is None:
        return None
    keys = ("size", "select", "min_face", "thresholds", "max_detect_side")
    return {k: (list(v) if isinstance(v, tuple) else v) for k in keys if (v := getattr(align, k, None)) is not None}



def embed_videos(
    model,
    tree: VideoTree,
    videos: Sequence[str],
    *,
    frames: int | None = None,
    cache_dir: str | Path | None = None,
    flip: str = "none",
    batch_size: int = 64,
    device="cpu",
    align=None,
    chunk_size: int = 16384,
    progress: Callable[[int], None] | None = None,
    frame_lists: Mapping[str, Sequence[str]] | None = None,
) -> tuple[Embeddings, dict]:
    """Embed the videos' frames with `model` and aggregate them per video (`video_embeddings`).

    Only the frames that `frames` selects are embedded. With `cache_dir`, frame embeddings are kept
    there (`EmbeddingCache`, keyed by the model file's hash, flip, layout and aligner) and a later call
    embeds only frames never embedded before, whatever its `frames`. Frames that cannot be embedded
    (undecodable; no face found with `align`) are left out of their video's mean and counted.

    `frame_lists` (from `list_video_frames`) saves listing the folders again when the caller has them.
    Returns (video embeddings keyed by video id, facts for the report).
    """

    if frame_lists is None:
        frame_lists = list_video_frames(tree, videos)
    chosen = select_frames(frame_lists, frames=frames)
    needed = list(dict.fromkeys(f for v in videos for f in chosen[v]))

    def embed(paths: list[str]):
        try:
            return embed_images(model, tree.base, paths, flip=flip, batch_size=batch_size, device=device,
                                align=align, skip_bad=True, progress=progress)
        except FaceverError as exc:
            # embed_images refuses a batch in which nothing could be embedded; remember every frame as bad.
            if not str(exc).startswith("no image could be embedded"):
                raise
            return Embeddings([], np.zeros((0, 1), dtype=np.float32)), {p: str(exc) for p in paths}

    facts: dict = {"layout": tree.layout, "videos_folder": str(tree.base), "frames_needed": len(needed)}
    if cache_dir is not None:
        signature = {
            "model": getattr(model, "model_id", str(model)),
            "model_sha256": getattr(model, "fingerprint", ""),
            "input_size": list(getattr(model, "input_size", [])),
            "flip": flip,
            "layout": tree.layout,
            "aligner": aligner_settings(align),
        }
        cache = EmbeddingCache(cache_dir, signature)
        frame_emb, bad, embedded = cache.extend(needed, embed, chunk_size=chunk_size)
        if progress is not None and len(needed) > embedded:
            progress(len(needed) - embedded)  # the frames that came from the cache
        if frame_emb is None:
            raise FaceverError(f"no frame could be embedded ({len(bad)} failed, e.g. {_some(sorted(bad))})")
        facts.update({"cache": str(cache.folder), "frames_embedded_now": embedded,
                      "frames_from_cache": len(needed) - embedded})
        model_meta = None
    else:
        frame_emb, bad_list = embed(needed)
        bad = _bad_paths(bad_list)
        facts.update({"cache": None, "frames_embedded_now": len(needed), "frames_from_cache": 0})
        model_meta = frame_emb.metadata
    bad_needed = sorted(set(needed) & set(bad))
    facts["bad_frames"] = len(bad_needed)
    if bad_needed:
        facts["bad_frame_examples"] = {f: bad[f] for f in bad_needed[:5]}
    videos_emb = video_embeddings(frame_emb, videos, frame_lists, frames=frames, skip=bad_needed)
    meta = model.metadata() if hasattr(model, "metadata") else (model_meta or {})
    videos_emb.metadata.update({"model_metadata": meta, "flip": flip, "aligner": aligner_settings(align), **facts})
    return videos_emb, facts
