"""`facever demo`: the whole pipeline in minutes, offline, on a CPU (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def demo(
    data: Optional[Path] = typer.Option(
        None, "--data", help="A real identity folder (DATA/<person>/<image>) instead of the synthetic data, "
        "e.g. ../shared/data/faces/orl. People are split into training and held-out test people.",
    ),
    out: Path = typer.Option(
        Path("facever-demo"), "--out", "-o",
        help="Folder for the data copy, pairs.txt, models, report.json and roc.png.",
    ),
    quick: bool = typer.Option(False, "--quick", help="Smaller data and shorter training (well under a minute)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the data, the split, the pairs and the training."),
    device: str = typer.Option("cpu", "--device", help="cpu (the demo's target), cuda, cuda:N or auto."),
    threads: int = typer.Option(
        1, "--threads", min=1, help="Torch CPU threads. One is nearly as fast as two for this tiny network and "
        "does not collapse when other programs keep the cores busy.",
    ),
) -> None:
    """Train two small face models and verify unseen people with them, from scratch, in a few minutes.

    With no --data it first generates a SYNTHETIC identity dataset (drawn cartoon faces with varying
    pose, expression, lighting and noise; deterministic from --seed): the numbers then show that the
    pipeline works, not real-world accuracy. It trains the same small network twice, with Noisy Softmax
    and with plain softmax, embeds the held-out people, scores 10 folds of generated pairs in LFW's
    pairs.txt format with the LFW protocol, ensembles the two models, and prints one table.

    Re-running reuses the data and finished models (and resumes an interrupted training run).

    Examples:

        facever demo

        facever demo --quick --out /tmp/demo

        facever demo --data ../shared/data/faces/orl --out orl-demo
    """
    import time

    from facever.cli._console import stop_on_signal

    start = time.perf_counter()
    stopping = "stopping after this training step and saving a checkpoint (Ctrl-C again to abort at once)"
    with stop_on_signal(stopping) as stop_requested:
        result = _run(data, out, quick=quick, seed=seed, device=device, threads=threads, start=start,
                      stop_requested=stop_requested)
    if result is None:
        raise typer.Exit(130)
    _print_summary(result, data, time.perf_counter() - start)


def _run(data, out, *, quick, seed, device, threads, start, stop_requested):
    """Run the library with a progress bar per stage; None when stopped by Ctrl-C (after a checkpoint)."""
    import contextlib
    import time

    from facever.cli._console import info, progress_bar, user_errors, warn

    from facever.core.locks import folder_lock

    with user_errors(), folder_lock(out, kind="demo"), contextlib.ExitStack() as bars:
        from facever.workflows.demo import DemoInterrupted, run_demo

        state: dict = {"stage": None, "advance": None}

        def on_event(event) -> None:
            if event.message:
                info(f"[{time.perf_counter() - start:5.0f}s] {event.message}")
            if event.stage != state["stage"] or (event.done == 0 and event.total is not None):
                bars.close()  # finish the previous stage's bar
                state.update(stage=event.stage, advance=None)
                if event.total is not None:
                    unit = "step" if event.stage.startswith("train:") else "img"
                    state["advance"] = bars.enter_context(progress_bar(event.stage, total=event.total, unit=unit,
                                                                       done=event.done_before))
            if event.done and state["advance"] is not None:
                status = f"loss {event.loss:.3f}" if event.loss is not None else None
                state["advance"](event.done, status=status)

        try:
            return run_demo(out, data=data, quick=quick, seed=seed, device=device, progress=on_event,
                            threads=threads, stop_requested=stop_requested)
        except DemoInterrupted as exc:
            bars.close()
            warn(str(exc))
            return None


def _print_summary(result, data, elapsed: float) -> None:
    from facever.cli._console import info, print_table

    what = ("SYNTHETIC data (generated; not real faces)" if result.synthetic
            else f"{data} (real images)")
    typer.echo(f"Demo on {what}: trained on {result.train_identities} people ({result.train_images} images), "
               f"verified on {result.test_identities} held-out people ({result.test_images} images), "
               f"{result.ensemble.ensemble.n_pairs} pairs in 10 folds.")
    print_table(*demo_table(result.rows()))
    typer.echo("")
    typer.echo(f"report   {result.report_path}")
    typer.echo(f"ROC plot {result.roc_path}")
    typer.echo(f"pairs    {result.pairs_path}")
    for name, path in result.model_paths.items():
        typer.echo(f"model    {path}  ({name})")
    typer.echo(f"data     {result.data_dir}")
    reused = f"; reused {', '.join(result.reused_models)}" if result.reused_models else ""
    info(f"done in {elapsed:.0f}s{reused}")


def demo_table(rows) -> tuple[list[str], list[list[str]]]:
    """`(columns, rows)`: model | accuracy mean +- std over the 10 folds | AUC | TAR at FAR 1e-2."""
    return (["model", "accuracy (10-fold)", "AUC", "TAR@FAR=1e-2"],
            [[name, f"{100 * res.kfold.mean:.2f}% +- {100 * res.kfold.std:.2f}", f"{res.auc:.4f}",
              f"{100 * res.tar_at_far['0.01']:.2f}%"] for name, res in rows])
