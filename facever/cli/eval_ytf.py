"""`facever eval-ytf`: YouTube Faces video pairs with the 10-fold protocol over its 10 splits."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facever.cli._options import (
    AMP, Amp, JSON_OUTPUT, METRIC, SUBTRACT_MEAN, THRESHOLDS, Flip, Layout, Metric, ThresholdMode, allow_missing_option,
    batch_size_option, device_option, model_weights_option, flip_option,
)


def eval_ytf(
    splits: Path = typer.Option(
        ..., "--splits", help="YTF splits.txt: `split, pair#, Name/video, Name/video, is_same` rows (header optional)."
    ),
    videos: Optional[Path] = typer.Option(
        None, "--videos", help="YTF root holding aligned_images_DB/ and/or frame_images_DB/ (or one of those folders)."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Embed the frames now: a facever model.pt (or run folder) or facenet:vggface2."
    ),
    embeddings: Optional[Path] = typer.Option(
        None, "--embeddings", "-e",
        help="Instead of --model: frame embeddings from `facever embed` over the videos folder (keys "
        "`Name/video/frame.jpg`), or video embeddings keyed `Name/video` (video_embeddings.npz of an earlier run).",
    ),
    frames: Optional[int] = typer.Option(
        None, "--frames", min=1,
        help="Frames per video, sampled evenly: frame floor((k + 1/2) n / N) of n, k < N. Default: all frames.",
    ),
    align: bool = typer.Option(
        False, "--align", help="Detect and align the face in each frame here (for raw frame_images_DB frames)."
    ),
    layout: Layout = typer.Option(
        Layout.auto, "--layout",
        help="Which frames: auto (aligned_images_DB if present, frame_images_DB with --align), frames or aligned.",
    ),
    cache: Optional[Path] = typer.Option(
        None, "--cache", help="Frame-embedding cache folder (default: OUT/frame_cache with --out; none without)."
    ),
    thresholds: ThresholdMode = THRESHOLDS,
    metric: Optional[Metric] = METRIC,
    subtract_mean: bool = SUBTRACT_MEAN,
    allow_missing: bool = allow_missing_option("With video embeddings: drop pairs whose videos have no embedding."),
    flip: Flip = flip_option(when="With --model: "),
    weights: Optional[Path] = model_weights_option(),
    device: str = device_option(when="With --model: "),
    amp: Amp = AMP,
    batch_size: int = batch_size_option(when="With --model: ", what="frames"),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Folder for report.json, roc.png, video_embeddings.npz (and frame_cache/)."
    ),
    json_output: bool = JSON_OUTPUT,
) -> None:
    """Score a model on YouTube Faces: 5000 video pairs in 10 splits, 10-fold protocol over the splits.

    A video's embedding is the mean of its L2-normalised frame embeddings, L2-normalised; --frames N
    uses N frames spread evenly over the video (the middle of N equal segments), the report records it.
    Frame embeddings are cached (OUT/frame_cache/, keyed by the model file's hash, flip, layout and
    aligner), so a second run with other --frames or scoring options embeds nothing again.

    Examples:

        facever eval-ytf --splits splits.txt --videos YouTubeFaces --model runs/a/model.pt --out results/ytf

        facever eval-ytf --splits splits.txt --videos YouTubeFaces --model runs/a/model.pt --frames 100 --out results/ytf

        facever eval-ytf --splits splits.txt --videos YouTubeFaces --layout frames --align --model facenet:vggface2 -o r
    """
    from facever.cli._console import fail, info, user_errors

    from facever.cli._evaluation import require_embeddings_or_model

    require_embeddings_or_model(embeddings, model, data=videos, data_option="--videos",
                                data_help="YTF_ROOT (the folder holding aligned_images_DB/ or frame_images_DB/)")
    if align and model is None:
        fail("--align aligns frames before embedding them: it needs --model")
    from facever.cli._console import library_warnings

    from facever.core.locks import folder_lock

    with user_errors(), library_warnings(), folder_lock(out, kind="evaluation"):
        from facever.cli._evaluation import evaluate_and_report, load_model
        from facever.cli._console import progress_bar
        from facever.protocols import ytf
        from facever.embedding.videos import embed_videos
        from facever.core.embeddings_file import load_embeddings, save_embeddings

        proto = ytf.read_ytf_splits(splits)
        emb_loaded = None
        items = proto.items()
        settings = {
            "splits_file": str(splits),
            "frames": frames if frames is not None else "all",
            "frame_sampling": "all frames" if frames is None else "frame floor((k + 1/2) * n / N), k = 0..N-1, of n",
            "aggregation": "mean of L2-normalised frame embeddings, L2-normalised",
            "align": align,
        }
        if model is not None:
            tree = ytf.find_video_tree(videos, layout=layout.value, prefer="frames" if align else "aligned")
            cache_dir = cache if cache is not None else (Path(out) / "frame_cache" if out is not None else None)
            frame_lists = ytf.list_video_frames(tree, items)  # names every missing video before any model loads
            net = load_model(model, weights=weights, device=device)
            aligner = None
            if align:
                from facever.data_prep.align import FaceAligner

                aligner = FaceAligner(tuple(net.input_size), device=device)
            info(f"{len(items)} videos under {tree.base} ({tree.layout})"
                 + (f"; frame cache {cache_dir}" if cache_dir else "; no frame cache (give --out or --cache)"))
            frame_count = len({f for fl in ytf.select_frames(frame_lists, frames=frames).values() for f in fl})
            with progress_bar("embedding frames", total=frame_count, unit="frame") as advance:
                video_emb, facts = embed_videos(
                    net, tree, items, frames=frames, cache_dir=cache_dir, flip=flip.value, batch_size=batch_size,
                    device=device, amp=amp.value, align=aligner, progress=advance, frame_lists=frame_lists,
                )
            info(f"frames: {facts['frames_embedded_now']} embedded now, {facts['frames_from_cache']} from the cache, "
                 f"{facts['bad_frames']} unusable")
            settings.update({"model": model, "flip": flip.value, **facts})
            source = f"model {model}"
        else:
            emb = emb_loaded = load_embeddings(embeddings)
            source = str(embeddings)
            settings["embeddings_file"] = str(embeddings)
            if all(len(p.split("/")) == 2 for p in emb.paths):
                # Already one embedding per video (`Name/video` keys, e.g. video_embeddings.npz of an earlier
                # run); videos missing from it are refused or dropped (--allow-missing) by the evaluation.
                video_emb = emb
                settings["frames"] = emb.metadata.get("frames", "as in the embeddings file")
                if frames is not None:
                    fail("--frames needs frame embeddings; this file holds one embedding per video")
            else:
                if videos is not None:
                    tree = ytf.find_video_tree(videos, layout=layout.value)
                    frame_lists = ytf.list_video_frames(tree, items)
                    frame_lists = _match_prefix(frame_lists, emb, tree)
                    settings.update({"layout": tree.layout, "videos_folder": str(tree.base)})
                else:
                    frame_lists = ytf.frames_from_embeddings(emb, items)
                video_emb = ytf.video_embeddings(emb, items, frame_lists, frames=frames)
                video_emb.metadata["frame_embeddings_metadata"] = emb.metadata
            settings["frames_per_video"] = video_emb.metadata.get("frames_per_video")
        if out is not None and video_emb is not emb_loaded:
            save_embeddings(Path(out) / "video_embeddings.npz", video_emb.paths, video_emb.embeddings, video_emb.metadata)
        evaluate_and_report(
            proto, video_emb,
            title=f"YTF {proto.n_folds}-fold verification: {len(proto)} video pairs from {splits}, {source}, "
            f"frames per video: {settings['frames']}",
            thresholds=thresholds.value, metric=metric.value if metric else None, subtract_mean=subtract_mean,
            allow_missing=allow_missing, out=out, json_output=json_output, embeddings_source=source, settings=settings,
        )


def _match_prefix(frame_lists: dict[str, list[str]], emb, tree) -> dict[str, list[str]]:
    """Frame paths as the embeddings file writes them: relative to the *_DB folder or to the YTF root."""
    index = emb.index()
    first = next(iter(frame_lists.values()))[0]
    if first in index:
        return frame_lists
    prefixed = f"{tree.base.name}/"
    if prefixed + first in index:
        return {v: [prefixed + f for f in fl] for v, fl in frame_lists.items()}
    return frame_lists
