"""`facever reproduce`: the Noisy Softmax paper's face experiment, datasets in, paper-versus-ours report out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facever.cli._options import Flip, batch_size_option, device_option, flip_option


def reproduce(
    casia: Path = typer.Option(..., "--casia", help="CASIA-WebFace: identity folders (raw photos or aligned crops), "
                               "or faces_webface_112x112's train.rec (or its folder)."),
    lfw: Path = typer.Option(..., "--lfw", help="LFW images, Name/Name_0001.jpg (raw 250x250 or aligned crops)."),
    ytf: Path = typer.Option(..., "--ytf", help="YouTube Faces root holding frame_images_DB/ or aligned_images_DB/."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for everything; rerunning the same command continues it."),
    fglfw: Optional[Path] = typer.Option(None, "--fglfw", help="FGLFW pair list (pair_FGLFW.txt) over the LFW images."),
    lfw_pairs: Optional[Path] = typer.Option(None, "--lfw-pairs", help="LFW pairs.txt (default: LFW/pairs.txt)."),
    ytf_splits: Optional[Path] = typer.Option(None, "--ytf-splits", help="YTF splits.txt (default: YTF/splits.txt)."),
    recipe: str = typer.Option("paper-casia-sphere20", "--recipe", help="Training recipe of all three models "
                               "(`facever recipes`); the softmax model is the same with a plain softmax head."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="TOML file of training options over the recipe."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Override the recipe's epochs (a quick, "
                                         "smaller run; milestones beyond it are dropped)."),
    assume_aligned: bool = typer.Option(False, "--assume-aligned", help="Use every input as already aligned. By "
                                        "default images all of 112x96, 112x112 or the model's input size count as "
                                        "aligned, anything else is aligned into OUT/aligned/."),
    ytf_frames: Optional[int] = typer.Option(None, "--ytf-frames", min=1, help="Frames per YTF video, sampled evenly "
                                             "(default: all)."),
    flip: Flip = flip_option(),
    device: str = device_option(),
    batch_size: int = batch_size_option(when="When embedding: "),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=0, help="Decoding processes for alignment, "
                                          "training and embedding (default: each stage's own)."),
    json_output: bool = typer.Option(False, "--json", help="Print report.json's content on stdout at the end."),
) -> None:
    """Reproduce the Noisy Softmax paper end to end: datasets in, paper-versus-ours report out.

    Aligns what is not aligned, trains two Noisy Softmax models and one softmax model (seeds s, s+1
    and s; softmax shares noisy-a's seed, so the head is the only difference), evaluate each on LFW, FGLFW (with --fglfw) and YTF, ensemble the two
    noisy ones, and write OUT/report.md + report.json (ours beside the paper's numbers), ROC plots
    and the training curves of softmax vs noisy softmax (OUT/training_curves.png).

    Each stage records its completion in OUT/stages/; rerunning the same command after an
    interruption (Ctrl-C, a crash) skips the finished stages and resumes the one that was running.

    Examples:

        facever reproduce --casia CASIA-WebFace/ --lfw lfw/ --ytf YouTubeFaces/ --fglfw pair_FGLFW.txt --out repro/

        facever reproduce --casia faces_webface_112x112/ --lfw lfw/ --ytf YouTubeFaces/ --out quick/ --epochs 2 --ytf-frames 20
    """
    import json
    import sys

    from facever.cli._console import info, progress_bar, stop_on_signal, user_errors
    from facever.core.locks import folder_lock

    with user_errors(), folder_lock(out, kind="reproduce"):
        from facever.workflows.reproduce import Reproduction, format_report_markdown, reproduce_settings

        settings = reproduce_settings(
            casia=casia, lfw=lfw, ytf=ytf, fglfw=fglfw, lfw_pairs=lfw_pairs, ytf_splits=ytf_splits, recipe=recipe,
            config_file=config_file, epochs=epochs, assume_aligned=assume_aligned, ytf_frames=ytf_frames,
            flip=flip.value, device=device, batch_size=batch_size, workers=workers,
        )
        stopping = "stopping (training saves a checkpoint first; Ctrl-C again to abort at once); rerun to continue"
        try:
            with stop_on_signal(stopping) as stop_requested:
                result = Reproduction(settings, out, on_stage=_print_stage, on_message=info, progress=progress_bar,
                                      stop_requested=stop_requested).run()
        except KeyboardInterrupt:
            info(f"interrupted; rerun the same command to continue from {out}/stages/")
            raise typer.Exit(130) from None

    if json_output:
        sys.stdout.write(json.dumps(result.report, indent=2) + "\n")
    else:
        typer.echo(format_report_markdown(result.report).split("\n## Training")[0].rstrip())
    info(f"ran {len(result.ran)} stage(s), skipped {len(result.skipped)}; report: {out / 'report.md'}")


def _print_stage(event) -> None:
    """One line per stage: skipped (done earlier), starting, or done with its time."""
    from facever.cli._console import info

    prefix = f"[{event.index}/{event.total}] {event.name}"
    if event.event == "skip":
        info(f"{prefix}: done earlier, skipped")
    elif event.event == "start":
        info(f"{prefix} ...")
    else:
        info(f"{prefix}: done in {(event.seconds or 0.0) / 60:.1f} min")
