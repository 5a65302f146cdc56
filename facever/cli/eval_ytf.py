"""`facever eval-ytf`: YouTube Faces video pairs with the 10-fold protocol over its 10 splits."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from facever.cli._options import JSON_OUTPUT, Layout, model_options, scoring_options

if TYPE_CHECKING:
    from facever.workflows.evaluate import EmbedSettings, ScoringSettings


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
    scoring: "ScoringSettings" = scoring_options(
        help={"allow_missing": "With video embeddings: drop pairs whose videos have no embedding."}),
    embedding: "EmbedSettings" = model_options(when="With --model: ", what="frames"),
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
    from facever.cli._console import fail, library_warnings, user_errors
    from facever.cli._evaluation import console_hooks, print_evaluation, require_embeddings_or_model
    from facever.core.locks import folder_lock

    require_embeddings_or_model(embeddings, model, data=videos, data_option="--videos",
                                data_help="YTF_ROOT (the folder holding aligned_images_DB/ or frame_images_DB/)")
    if align and model is None:
        fail("--align aligns frames before embedding them: it needs --model")
    with user_errors(), library_warnings(), folder_lock(out, kind="evaluation"):
        from facever.workflows.evaluate import Source, evaluate, open_benchmark

        bench = open_benchmark("ytf", splits, data=videos, frames=frames, layout=layout.value, align=align)
        result = evaluate(bench, Source(embeddings, model), embed=embedding, scoring=scoring, out=out, cache=cache,
                          hooks=console_hooks())
        print_evaluation(result, json_output)
