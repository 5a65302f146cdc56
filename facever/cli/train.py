"""`facever train DATA --out RUN`: train a face embedding model with Noisy Softmax (or plain softmax)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facever.cli._options import Amp, Cache, Classifier, Head, Noise, Schedule

from facever.cli._options import explicit_parameters


def _parse_size(text: str) -> tuple[int, int]:
    from facever.core.sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _parse_milestones(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated epochs such as 10,15,18, got {text!r}") from None


def train(
    data: Optional[Path] = typer.Argument(
        None, help="Identity folder (DATA/<person>/<crop>.jpg), a RecordIO train.rec, or a folder with train.rec + "
        "train.idx. May come from --config (key `data`) instead.", show_default=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: checkpoint.pt, model.pt, metrics.jsonl, config.toml."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Start from a shipped recipe (`facever recipes` lists them), e.g. paper-casia-sphere20; --config and options override it."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="TOML file of options (keys as the options: arch = \"sphere20\", batch_size = 512, milestones = [16, 24]); options given here override it. RUN/config.toml of a run works."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Backbone: sphere20 (default), iresnet50, iresnet100, mobilefacenet, inception-resnet-v1, ..."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="Override the backbone's input HEIGHTxWIDTH, e.g. 56x48 for a quick model."),
    embedding_dim: Optional[int] = typer.Option(None, "--embedding-dim", help="Override the embedding size (sphere20: 512)."),
    width: Optional[int] = typer.Option(None, "--width", help="Override the backbone's base channel width (sphere20/mobilefacenet: 64)."),
    head: Optional[Head] = typer.Option(None, "--head", help="noisy-softmax (default, the paper) or softmax (the baseline)."),
    alpha2: Optional[float] = typer.Option(None, "--alpha2", help="Noise variance alpha^2 of Noisy Softmax (paper: 0.1 on faces). Default 0.1."),
    cosine_scale: Optional[float] = typer.Option(None, "--cosine-scale", help="Logits s*cos(theta) on normalised embeddings and class weights (NormFace), with Noisy Softmax's noise on them. Default 0 (off: the paper's logits)."),
    noise: Optional[Noise] = typer.Option(None, "--noise", help="batch: one xi per mini-batch (authors' code, default); sample: one per image."),
    classifier: Optional[Classifier] = typer.Option(None, "--classifier", help="full: every process holds the whole classifier (default); sharded: under torchrun each process holds 1/N of the classes (Partial FC style; for 100k+ identities)."),
    sample_rate: Optional[float] = typer.Option(None, "--sample-rate", help="With --classifier sharded: score all classes of the batch plus this share of the others per step (Partial FC). Default 1.0 (the full softmax)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the data. Default 20."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Images per step per process (torchrun: x processes). Default 256."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate of SGD. Default 0.1."),
    schedule: Optional[Schedule] = typer.Option(None, "--schedule", help="step: x0.1 at --milestones (default); cosine: cosine decay to 0."),
    milestones: Optional[str] = typer.Option(None, "--milestones", help="Epochs where the step schedule divides the LR by 10, e.g. 10,15,18 (default)."),
    warmup_epochs: Optional[float] = typer.Option(None, "--warmup-epochs", help="Linear warm-up length in epochs (fractions allowed). Default 0."),
    momentum: Optional[float] = typer.Option(None, "--momentum", help="SGD momentum. Default 0.9."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="SGD weight decay. Default 5e-4."),
    crop_scale: Optional[float] = typer.Option(None, "--crop-scale", help="Random crops keeping this much of the area or more (0.8: 80-100%), resized back. Default 1 (off)."),
    jitter: Optional[float] = typer.Option(None, "--jitter", help="Random brightness and contrast factors in [1-J, 1+J]. Default 0 (off)."),
    greyscale: Optional[float] = typer.Option(None, "--greyscale", help="Probability of turning a training image grey. Default 0."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seeds weights, batch order, flips and noise. Default 0."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (default: CUDA if present), cpu, cuda, cuda:1. Under torchrun each process takes GPU LOCAL_RANK."),
    amp: Optional[Amp] = typer.Option(None, "--amp", help="Mixed precision of the backbone: auto (bf16 on GPU, off on CPU), bf16, fp16 (with loss scaling), off. The head and loss stay float32."),
    channels_last: Optional[bool] = typer.Option(None, "--channels-last/--no-channels-last", help="NHWC memory format (faster convolutions on recent GPUs)."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the backbone (faster steps after a slow first one)."),
    deterministic: Optional[bool] = typer.Option(None, "--deterministic/--no-deterministic", help="Deterministic GPU kernels (cuDNN autotuning off, cudnn.deterministic, torch.use_deterministic_algorithms): a resumed GPU run then ends bitwise equal to an uninterrupted one on the same GPU and software, a little slower. Changes nothing on a CPU."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="DataLoader worker processes decoding images. Default 4."),
    cache: Optional[Cache] = typer.Option(None, "--cache", help="none: decode every step (default); memmap: decode once into a uint8 .npy file; device: that file held whole on the GPU."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where the decoded cache lives (default RUN/cache); reused by later runs on the same data."),
    min_images: Optional[int] = typer.Option(None, "--min-images", help="Drop identities with fewer images than this. Default 1."),
    holdout_identities: Optional[int] = typer.Option(None, "--holdout-identities", help="Keep this many identities out of training and validate on pairs among them."),
    val_pairs: Optional[Path] = typer.Option(None, "--val-pairs", help="LFW-style pairs.txt for validation (with --val-images)."),
    val_images: Optional[Path] = typer.Option(None, "--val-images", help="Folder of aligned crops the --val-pairs refer to (Name/Name_0001.jpg)."),
    val_ext: Optional[str] = typer.Option(None, "--val-ext", help="Extension of the --val-images files the pairs name (default .jpg; e.g. .png)."),
    val_bin: Optional[Path] = typer.Option(None, "--val-bin", help="InsightFace verification .bin (lfw.bin, agedb_30.bin, ...) for validation."),
    val_every: Optional[int] = typer.Option(None, "--val-every", help="Validate every N steps (0 = at each epoch's end, default)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", help="Write checkpoint.pt every N steps, besides each epoch's end. Default 1000."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint.pt exactly (options default to the run's own)."),
    strict: Optional[bool] = typer.Option(None, "--strict/--no-strict", help="Fail on any undecodable image instead of skipping and listing it."),
    log_every: Optional[int] = typer.Option(
        None, "--log-every", min=1, help="Steps per line in metrics.jsonl (default 10; --resume keeps the run's)."
    ),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log loss, learning rate and validation to RUN/tensorboard (needs the tensorboard package)."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary of the run on stdout."),
) -> None:
    """Train a face embedding model on an identity folder or an InsightFace RecordIO file.

    Writes RUN/model.pt (the embedding model `facever embed` loads; the best by validation accuracy
    when validating), RUN/checkpoint.pt (full state; Ctrl-C saves it and --resume continues exactly)
    and RUN/metrics.jsonl. Under `torchrun --nproc_per_node=N -m facever train ...` it trains with
    DistributedDataParallel (NCCL on GPUs, gloo on CPU).

    Examples:

        facever train casia/ --out runs/ns --epochs 28 --milestones 16,24 --amp bf16 --channels-last --cache memmap

        facever train faces_webface_112x112/ --out runs/rec --head softmax --holdout-identities 200

        facever train casia/ --out runs/ns --resume

        facever train casia/ --recipe paper-casia-sphere20 --out runs/paper --epochs 2

        facever train --config runs/paper/config.toml --out runs/paper-again
    """
    from facever.cli._console import (
        console_log, format_rate, info, library_warnings, open_progress, stop_on_signal, user_errors, warn,
    )

    options = {
        "arch": arch, "input_size": _parse_size(input_size) if input_size else None, "embedding_dim": embedding_dim,
        "width": width, "head": head.value if head else None, "alpha2": alpha2, "noise": noise.value if noise else None,
        "cosine_scale": cosine_scale,
        "classifier": classifier.value if classifier else None, "sample_rate": sample_rate,
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "schedule": schedule.value if schedule else None,
        "milestones": _parse_milestones(milestones) if milestones else None, "warmup_epochs": warmup_epochs,
        "momentum": momentum, "weight_decay": weight_decay, "seed": seed,
        "crop_scale": crop_scale, "jitter": jitter, "greyscale": greyscale, "device": device,
        "amp": amp.value if amp else None, "channels_last": channels_last, "compile": compile, "deterministic": deterministic, "workers": workers,
        "cache": cache.value if cache else None, "cache_dir": str(cache_dir.resolve()) if cache_dir else None,
        "min_images": min_images, "holdout_identities": holdout_identities,
        "val_pairs": str(val_pairs.resolve()) if val_pairs else None,
        "val_images": str(val_images.resolve()) if val_images else None,
        "val_ext": val_ext, "val_bin": str(val_bin.resolve()) if val_bin else None, "val_every": val_every,
        "checkpoint_every": checkpoint_every, "strict": strict,
    }
    with user_errors():
        # Recipe < --config file < options typed here; `sources` says which gave each value (RUN/config.toml).
        from facever.training.options import make_train_config, name_the_source, train_command_options

        given, data, sources = train_command_options(
            options, data, config_file=config_file, recipe=recipe, out=out, resume=resume,
            explicit=explicit_parameters(options),
        )
    from facever.core.environment import env_int

    with user_errors():
        rank = env_int("RANK", 0, low=0)
    from facever.core.locks import folder_lock

    # Rank 0 holds OUT for the whole job: a second `train --out OUT` is refused instead of interleaving.
    with user_errors(), folder_lock(out if rank == 0 else None, kind=None):  # train applies its own run-folder rule
        from facever.core.errors import FaceverError
        from facever.training.checkpoint import load_checkpoint
        from facever.training.config import TrainConfig
        from facever.training.loop import CHECKPOINT_NAME, train as run_training

        data_str = str(data.resolve())
        if resume:
            ck = load_checkpoint(out / CHECKPOINT_NAME)
            saved = TrainConfig.from_dict(ck["config"])
            if log_every is None:  # the resumed run keeps its logging window unless told otherwise
                log_every = int(ck.get("log_every", 10))
            del ck
            try:
                config = saved.replace(data=data_str, **given)
            except FaceverError as exc:
                raise name_the_source(exc, sources) from None
        else:
            config = make_train_config({**given, "data": data_str}, sources=sources)

        from facever.training.validation import check_validation_inputs

        check_validation_inputs(config)  # before the run folder gets anything
        if rank == 0 and (resume or not (out / CHECKPOINT_NAME).exists()):
            from facever.training.config_files import write_run_config

            write_run_config(out, config, sources=sources)

        board = None
        if tensorboard and rank == 0:
            from facever.training.tensorboard import MetricsToTensorBoard

            board = MetricsToTensorBoard(out)  # fails here, before training, when tensorboard is missing

        stopping = "stopping after this step and saving a checkpoint (Ctrl-C again to abort at once)"
        bars: dict = {}

        def close_bar(name: str) -> None:
            if name in bars:
                bars.pop(name).close()

        def scan_progress(n: int) -> None:
            if "scan" not in bars:
                bars["scan"] = open_progress("checking images", None)
            bars["scan"].advance(n)

        def progress(step_info) -> None:
            if "train" not in bars:
                close_bar("scan")  # the scan is over: its count is final
                bars["train"] = open_progress("training", step_info.total_steps, unit="step")
                if step_info.step > 1:
                    bars["train"].advance(step_info.step - 1)
            status = None
            if step_info.loss is not None:
                status = (f"epoch {step_info.epoch + 1} loss {step_info.loss:.3f} lr {step_info.lr:.3g} "
                          f"{format_rate(step_info.images_per_second)}")
                if board is not None:
                    board.update()
            bars["train"].advance(1, status=status)

        out.mkdir(parents=True, exist_ok=True)
        # RUN/training.log: what this console shows, timestamped (rank 0; appended to on --resume).
        with (console_log(out / "training.log") if rank == 0 else _nothing()), library_warnings(), user_errors():
            try:
                with stop_on_signal(stopping if rank == 0 else None) as stop_requested:
                    try:
                        result = run_training(
                            config, out, resume=resume, progress=progress, scan_progress=scan_progress,
                            on_message=(info if rank == 0 else (lambda text: None)),
                            stop_requested=stop_requested, log_every=log_every or 10,
                        )
                    finally:
                        close_bar("scan")
                        close_bar("train")
                        if board is not None:
                            board.close()
            except KeyboardInterrupt:
                # Second Ctrl-C: stop at once. Files are written atomically, so the last checkpoint stands.
                if rank == 0:
                    warn(f"aborted; the last checkpoint in {out} (if any) is intact: continue with --resume")
                raise typer.Exit(130) from None
            if rank == 0:
                _report(result, data, out, json_output)
    if rank == 0 and result.interrupted:
        raise typer.Exit(130)


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def _report(result, data, out, json_output: bool) -> None:
    import json
    import sys

    from facever.cli._console import info

    summary = {
        "out": str(result.out_dir), "steps": result.steps, "total_steps": result.total_steps,
        "interrupted": result.interrupted, "model": str(result.model_path) if result.model_path else None,
        "model_last": str(result.last_model_path) if result.last_model_path else None,
        "best_accuracy": result.best_accuracy, "best_step": result.best_step, "num_classes": result.num_classes,
        "num_images": result.num_images, "skipped_images": len(result.failures), "last_loss": result.last_loss,
    }
    if json_output:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    elif result.interrupted:
        info(f"stopped at step {result.steps}/{result.total_steps}; continue with: facever train {data} --out {out} --resume")
    else:
        acc = f", best validation accuracy {result.best_accuracy:.4f} at step {result.best_step}" if result.best_accuracy is not None else ""
        info(f"trained {result.steps} steps on {result.num_images} images of {result.num_classes} identities{acc}; model: {result.model_path}")
