"""The training loop: `train(config, out_dir)`, for one device or many (torchrun).

Split like torchvision's reference script: `setup_run` builds a `Run` (data, model, head, optimiser,
batches, the checkpoint's state when resuming), `train_one_epoch` runs one epoch's steps and calls
`after_step` (the validation and checkpoint hook), `finish_run` writes the model files.

Per step: uint8 batch -> device -> flip + normalise there -> backbone under autocast (bf16/fp16)
-> head and cross-entropy in float32 -> SGD with momentum and weight decay (GradScaler for fp16)
-> per-step learning rate (step or cosine schedule, linear warm-up). The head also returns the
step's training instruments (`heads.instrument_sums`: target probability, saturation, gradient on the
target logit, angle, noise, training accuracy), added up on the device and synchronised only when a
line is written.

Files in OUT (rank 0 alone writes):
- `checkpoint.pt`: full state, replaced atomically every `checkpoint_every` steps, at each epoch's
  end and when stopped (Ctrl-C); `resume=True` continues from it exactly.
- `model.pt`: the deployable embedding model (`facever.models.bundle`): the best by validation
  accuracy when validation is on, else the final weights. `model_last.pt`: the final weights; a
  symbolic link to `model.pt` when those are the same weights (no validation, or the best was the last).
- `metrics.jsonl`: one JSON object per line (training window with its instruments, validation, epoch
  end with the epoch's training accuracy; settings.TRAINING_INSTRUMENTS names the instruments).
- `config.json`, `classes.txt` (class map), `corrupt_images.txt` (when some were skipped).
- `checkpoint_shards/` (with `classifier="sharded"` only): every rank's part of the checkpoint, its
  classifier rows and optimiser state (`checkpoint.save_shard`), written before `checkpoint.pt`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from facever.core.atomic import write_text_atomic
from facever.core.devices import amp_dtype, compute_settings, device_scope
from facever.core.errors import FaceverError
from facever.core.settings import TRAINING_INSTRUMENTS
from facever.training.augment import Augmentation
from facever.training.checkpoint import (
    capture_rng_state,
    check_resume,
    load_checkpoint,
    load_shard,
    prune_shards,
    restore_rng_state,
    save_checkpoint,
    save_shard,
)
from facever.training.config import TrainConfig
from facever.models import MAX_PARAMETERS, build_on_meta, create_model, list_models
from facever.models.bundle import save_model_bundle
from facever.training.data import (
    DeviceBatches,
    EpochBatchSampler,
    PreparedData,
    TrainingSet,
    make_loader,
    open_training_set,
    prepare_training_data,
    to_model_input,
)
from facever.training.distributed import DistContext, init_distributed
from facever.training.heads import INSTRUMENT_SUMS
from facever.training.sharded_head import is_sharded, make_head
from facever.training.validation import Validator, build_validator

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class StepInfo:
    """What the progress callback receives after every optimiser step."""

    step: int
    total_steps: int
    epoch: int
    loss: float | None  # mean loss of the last logging window (None between windows)
    lr: float
    images_per_second: float | None


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    total_steps: int
    interrupted: bool
    model_path: Path | None
    last_model_path: Path | None
    best_accuracy: float | None
    best_step: int | None
    num_classes: int
    num_images: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    last_loss: float | None = None


# Fewer optimiser steps than this per epoch gets a warning (a batch far too large for the data, e.g. 256 on
# 300 photos). 10, not more: cpu-small's batch 16 on the quick start's ~300 photos makes 18 steps per
# epoch, which is what it was tuned with, and must not warn about itself.
MIN_STEPS_PER_EPOCH = 10


def suggest_batch_size(images: int, *, steps: int = MIN_STEPS_PER_EPOCH) -> int:
    """The largest power of two (at least 2) that gives `steps` optimiser steps per epoch or more."""
    batch = 2
    while batch * 2 * steps <= images:
        batch *= 2
    return batch


def small_epoch_warning(images: int, batch: int, steps_per_epoch: int) -> str:
    return (f"an epoch is only {steps_per_epoch} optimiser step(s) ({images} images, batch {batch}): the run "
            f"will make few updates for its cost; a batch size of {suggest_batch_size(images)} gives "
            f"{MIN_STEPS_PER_EPOCH} or more steps per epoch")


def link_or_copy(target: Path, link: Path) -> None:
    """`link` -> `target` (same folder) as a relative symbolic link; a hard link, else a copy, where
    the file system has no symbolic links. Replaces whatever `link` was, atomically."""
    import os
    import shutil

    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(target.name, tmp)
    except OSError:
        try:
            os.link(target, tmp)
        except OSError:
            shutil.copyfile(target, tmp)
    os.replace(tmp, link)


def lr_factor(step: int, *, config: TrainConfig, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at optimiser step `step` (0-based): warm-up, then step or cosine."""
    total = config.epochs * steps_per_epoch
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    drops = sum(1 for m in config.milestones if step >= int(round(m * steps_per_epoch)))
    return config.lr_gamma**drops


class TrainNet(nn.Module):
    """Backbone under autocast, head and loss in float32: one module for DDP to wrap.

    It returns the head's `loss_and_instruments`: the mean cross-entropy (the sharded classifier's over
    all ranks) and the step's instrument sums (a detached float64 vector, `INSTRUMENT_SUMS`)."""

    def __init__(self, backbone: nn.Module, head: nn.Module, amp_dtype: torch.dtype | None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.amp_dtype = amp_dtype

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            emb = self.backbone(x)
        return self.head.loss_and_instruments(emb.float(), labels)


def train_step(net: nn.Module, x: torch.Tensor, labels: torch.Tensor, optimizer, scaler) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a ready batch; returns the (float32) loss and the instrument sums, without
    synchronising."""
    loss, instruments = net(x, labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss, instruments


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def _truncate_metrics(path: Path, step: int, *, redo_validation: bool = False) -> None:
    """On resume, drop lines written after the checkpoint (those steps are about to be redone), and
    its own step's validation when that is to be redone too."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            at = int(record.get("step", 0))
        except (ValueError, AttributeError):
            continue
        if at < step or (at == step and not (redo_validation and record.get("kind") == "validation")):
            kept.append(line)
    write_text_atomic(path, "".join(k + "\n" for k in kept))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: Callable[[StepInfo], None] | None = None,
    scan_progress: Callable[[int], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    log_every: int = 10,
    training_set: TrainingSet | None = None,
) -> TrainResult:
    """Train the configured model and head; write checkpoints, metrics and model files to `out_dir`.

    `stop_requested()` is polled after each step (every `log_every` steps under DDP, where ranks
    must agree): when true the run writes a checkpoint and returns with `interrupted=True`.
    `on_message(text)` receives notable events (dropped images, resumed step, best model).
    `training_set`: `config.data` already opened (`open_training_set` with the config's settings), to
    spare a second scan. Raises FaceverError for bad data, a model too large to build, a config that
    does not match the checkpoint, or when OUT already holds a checkpoint (or a finished model.pt)
    and `resume` is False.

    The steps, in the order of torchvision's reference script: `setup_run` (data, model, optimiser,
    restored state), then `train_one_epoch` per epoch, whose `after_step` validates and writes
    checkpoints, then `finish_run` (model files, result).
    """
    out_dir = Path(out_dir)
    hooks = Hooks(
        say=on_message or (lambda text: log.info("%s", text)),
        progress=progress,
        stop_requested=stop_requested,
        log_every=log_every,
    )
    ctx = init_distributed(config.device)
    try:
        # Fixed batch shapes: cuDNN autotuning on a GPU, unless deterministic kernels are asked for.
        with device_scope(ctx.device), compute_settings(ctx.device, deterministic=config.deterministic):
            run = setup_run(config, out_dir, ctx, resume=resume, scan_progress=scan_progress, say=hooks.say,
                            training_set=training_set)
            if run.validation_pending:  # the interrupted run stopped before a validation it owed
                validate(run, (run.step - 1) // run.steps_per_epoch, say=hooks.say)
                run.validation_pending = False
            window = LossWindow(run.device)
            window.restore(run.window_state, run.ctx)
            interrupted = False
            for epoch in range(run.step // run.steps_per_epoch, config.epochs):
                if train_one_epoch(run, epoch, hooks=hooks, window=window):
                    interrupted = True
                    break
            return finish_run(run, interrupted=interrupted, last_loss=window.last_loss, say=hooks.say)
    finally:
        ctx.close()


# ---------------------------------------------------------------------------------------------
# What a run holds


@dataclass
class Hooks:
    """How the caller follows and steers a run (all optional but `say`)."""

    say: Callable[[str], None]
    progress: Callable[[StepInfo], None] | None = None
    stop_requested: Callable[[], bool] | None = None
    log_every: int = 10


@dataclass
class Run:
    """Everything a run holds between steps; `step` and `best` are what it advances."""

    config: TrainConfig
    ctx: DistContext
    out_dir: Path
    tset: TrainingSet
    prep: PreparedData
    input_size: tuple[int, int]
    mean: list[float]
    std: list[float]
    backbone: nn.Module
    head: nn.Module
    net: nn.Module  # TrainNet(backbone, head), compiled and DDP-wrapped as configured
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    sampler: EpochBatchSampler
    batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]
    validator: Validator | None
    mean_t: torch.Tensor  # 1 x 3 x 1 x 1 on the device
    std_t: torch.Tensor
    augmentation: Augmentation = field(default_factory=Augmentation)
    step: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"accuracy": None, "step": None})
    validation_pending: bool = False  # stopped at a step due a validation: done first on resume
    window_state: dict[str, Any] | None = None  # the checkpoint's LossWindow.state, for the resumed run

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return amp_dtype(self.config.amp)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.sampler)

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.steps_per_epoch

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    @property
    def metrics_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"


# ---------------------------------------------------------------------------------------------
# Set-up


def setup_run(
    config: TrainConfig,
    out_dir: Path,
    ctx: DistContext,
    *,
    resume: bool,
    scan_progress: Callable[[int], None] | None,
    say: Callable[[str], None],
    training_set: TrainingSet | None = None,
) -> Run:
    """Data, model, head, optimiser and batches; with `resume`, the checkpoint's state restored.

    The order of the steps is part of exactness: everything that draws random numbers (model and
    head initialisation) runs after the seeding and before the generators are restored.
    """
    ck = open_checkpoint(config, out_dir, ctx, resume=resume)
    if config.amp == "fp16" and ctx.device.type == "cpu":
        say("note: fp16 autocast on CPU is slow and rarely useful; bf16 is the CPU choice")

    _seed_everything(config.seed)
    tset = training_set or open_run_data(config)
    if ck is not None and list(ck["class_map"]) != list(tset.classes):
        raise FaceverError(f"{out_dir / CHECKPOINT_NAME}: the data's identities changed since the checkpoint "
                           "(class map differs)")
    check_model_size(config, num_classes=len(tset.classes), world_size=ctx.world_size)
    backbone = create_model(config.arch, **config.arch_kwargs)
    input_size = (int(backbone.input_size[0]), int(backbone.input_size[1]))
    prep = prepare_data(config, out_dir, ctx, tset, input_size, scan_progress=scan_progress, say=say)
    head = build_head(config, backbone, num_classes=len(tset.classes), ctx=ctx)
    backbone.to(ctx.device)
    head.to(ctx.device)
    if config.channels_last:
        backbone.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        list(backbone.parameters()) + list(head.parameters()),
        lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
    )
    sampler = EpochBatchSampler(len(prep.items), config.batch_size, seed=config.seed, rank=ctx.rank,
                                world_size=ctx.world_size)
    steps_per_epoch = len(sampler)
    if steps_per_epoch < MIN_STEPS_PER_EPOCH and ctx.is_main and ck is None:
        log.warning("%s", small_epoch_warning(len(prep.items), config.batch_size * ctx.world_size, steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config=config, steps_per_epoch=steps_per_epoch)
    )
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=config.amp == "fp16")
    mean, std = [float(v) for v in backbone.mean], [float(v) for v in backbone.std]
    run = Run(
        config=config, ctx=ctx, out_dir=out_dir, tset=tset, prep=prep, input_size=input_size, mean=mean, std=std,
        backbone=backbone, head=head, net=backbone, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
        sampler=sampler, batches=lambda: (), validator=None,
        mean_t=torch.tensor(mean, device=ctx.device).view(1, 3, 1, 1),
        std_t=torch.tensor(std, device=ctx.device).view(1, 3, 1, 1),
        augmentation=Augmentation(crop_scale=config.crop_scale, jitter=config.jitter, greyscale=config.greyscale,
                                  seed=config.seed * 1_000 + ctx.rank),
    )
    if ck is not None:
        restore_training_state(run, ck, say=say)
    run.net = wrap_for_training(run)
    run.validator = build_run_validator(run, say=say)
    run.batches = batch_source(run)
    if ck is not None:
        # Last, so that nothing done while setting up (model init, data scan) shifts the generators.
        for note in restore_rng_state(ck["rng"], rank=ctx.rank, device=ctx.device):
            say(f"note: {note}")
    return run


def open_run_data(config: TrainConfig) -> TrainingSet:
    """The run's training data, opened with its identity settings (no image decoded yet)."""
    return open_training_set(
        config.data, min_images=config.min_images, holdout_identities=config.holdout_identities, seed=config.seed
    )


def check_model_size(config: TrainConfig, *, num_classes: int, world_size: int = 1) -> None:
    """Refuse, before anything is allocated, a backbone plus classifier (one process's share) beyond
    `MAX_PARAMETERS`: a width or embedding size typed by mistake, not a model anyone trains."""
    try:
        shell = build_on_meta(config.arch, **config.arch_kwargs)
    except FaceverError as exc:  # an unknown name, a size the builder refuses: the settings that made it
        named = ("arch",) if config.arch not in list_models() else ("arch", *config.arch_kwargs)
        raise FaceverError(str(exc), options=named) from None
    classes = -(-num_classes // world_size) if config.classifier == "sharded" else num_classes
    count = sum(p.numel() for p in shell.parameters()) + classes * int(shell.embedding_dim)
    if count > MAX_PARAMETERS:
        raise FaceverError(
            f"{config.arch} ({', '.join(f'{k} {v}' for k, v in config.arch_kwargs.items()) or 'its own sizes'}) with "
            f"{classes} classes would hold {count / 1e9:,.1f} billion parameters per process, more than the "
            f"{MAX_PARAMETERS / 1e9:g} billion facever builds; choose a smaller `width`, `embedding_dim` or `input_size`",
            options=("width", "embedding_dim", "input_size"))


def refuse_finished_model(out_dir: Path) -> None:
    """A new run in `out_dir` would replace its model.pt: refused when there is one (a finished run whose
    checkpoint.pt was deleted, or a model put there by hand)."""
    if (out_dir / "model.pt").exists() or (out_dir / "model.pt").is_symlink():
        raise FaceverError(f"{out_dir} holds a finished model (model.pt) and no checkpoint.pt to continue its run; "
                           "a new run would replace it: choose another `out`", options=("out",))


def open_checkpoint(config: TrainConfig, out_dir: Path, ctx: DistContext, *, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from (checked against `config`), or None for a new run in `out_dir`.

    A new run never replaces a finished model (model.pt without the checkpoint that would continue its
    run), and starts its metrics.jsonl afresh (lines left by a run that stopped before its first checkpoint)."""
    ck_path = out_dir / CHECKPOINT_NAME
    if ctx.is_main:
        if ck_path.exists() and not resume:
            raise FaceverError(f"{out_dir} already holds a training checkpoint; pass `resume` to continue it or choose another `out`", options=('resume', 'out'))
        if not resume:
            refuse_finished_model(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            (out_dir / "metrics.jsonl").unlink(missing_ok=True)
    if not resume:
        return None
    ck = load_checkpoint(ck_path)
    check_resume(ck, config, world_size=ctx.world_size, path=ck_path)
    return ck


def prepare_data(
    config: TrainConfig,
    out_dir: Path,
    ctx: DistContext,
    tset: TrainingSet,
    input_size: tuple[int, int],
    *,
    scan_progress: Callable[[int], None] | None,
    say: Callable[[str], None],
) -> PreparedData:
    """The decode pass (or its cached result); reports what was left out and writes the run's files."""
    cache_dir = Path(config.cache_dir) if config.cache_dir else out_dir / "cache"
    prep = prepare_training_data(
        tset, input_size, cache=config.cache, cache_dir=cache_dir, workers=config.workers, strict=config.strict,
        is_main=ctx.is_main, barrier=ctx.wait_for_main, progress=scan_progress if ctx.is_main else None,
    )
    if tset.dropped:
        say(f"dropped {len(tset.dropped)} identities with fewer than {config.min_images} images")
    if tset.loose_files:
        say(f"ignored {len(tset.loose_files)} image(s) outside identity folders, e.g. {tset.loose_files[0]}")
    if prep.failures:
        say(f"skipped {len(prep.failures)} image(s) that cannot be decoded (listed in corrupt_images.txt); "
            f"first: {prep.failures[0][1]}")
    if ctx.is_main:
        write_text_atomic(out_dir / "config.json", config.to_json() + "\n")
        write_text_atomic(out_dir / "classes.txt", "".join(c + "\n" for c in tset.classes))
        if prep.failures:
            write_text_atomic(out_dir / "corrupt_images.txt", "".join(f"{n}\t{why}\n" for n, why in prep.failures))
    return prep


def build_head(config: TrainConfig, backbone: nn.Module, *, num_classes: int, ctx: DistContext) -> nn.Module:
    """The classification head on the backbone's embeddings (float32, on the CPU until moved): the
    whole classifier, or with `classifier="sharded"` this rank's share (`sharded_head`)."""
    head = config.head_options
    options: dict[str, Any] = {"alpha2": head.alpha2, "noise": head.noise, "cosine_scale": head.cosine_scale,
                               "margin": head.margin, "sphereface_lambda": head.sphereface_lambda}
    return make_head(config.head, int(backbone.embedding_dim), num_classes, classifier=config.classifier,
                     sample_rate=config.sample_rate, rank=ctx.rank, world_size=ctx.world_size, seed=config.seed,
                     **options)


def restore_training_state(run: Run, ck: dict[str, Any], *, say: Callable[[str], None]) -> None:
    """Weights, optimiser, schedule, loss scale, step and best validation from a checkpoint."""
    run.backbone.load_state_dict(ck["model"])
    # Sharded: each rank's classifier rows and optimiser state (its momentum) are its own file.
    ctx = run.ctx
    own = (load_shard(run.checkpoint_path, step=int(ck["step"]), rank=ctx.rank, world_size=ctx.world_size)
           if is_sharded(run.head) else ck)
    run.head.load_state_dict(own["head"])
    run.optimizer.load_state_dict(own["optimizer"])
    run.scheduler.load_state_dict(ck["scheduler"])
    if ck.get("scaler"):
        run.scaler.load_state_dict(ck["scaler"])
    run.step = int(ck["step"])
    run.best = dict(ck.get("best") or run.best)
    run.validation_pending = bool(ck.get("validation_pending", False)) and run.ctx.is_main
    run.window_state = ck.get("window")
    say(f"resuming at step {run.step} of {run.total_steps} (epoch {run.step // run.steps_per_epoch + 1})")
    if run.ctx.is_main:
        _truncate_metrics(run.metrics_path, run.step, redo_validation=run.validation_pending)


def wrap_for_training(run: Run) -> nn.Module:
    """Backbone + head as one module, the backbone compiled when asked, in DDP under torchrun."""
    net: nn.Module = TrainNet(run.backbone, run.head, run.amp_dtype)
    if run.config.compile:
        net.backbone = torch.compile(run.backbone)
    device_ids = [run.device.index] if run.device.type == "cuda" else None
    if run.ctx.distributed and is_sharded(run.head):
        # Each rank's classifier rows are its own: only the backbone is averaged across ranks.
        net.backbone = nn.parallel.DistributedDataParallel(net.backbone, device_ids=device_ids)
    elif run.ctx.distributed:
        net = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
    net.train()
    return net


def build_run_validator(run: Run, *, say: Callable[[str], None]) -> Validator | None:
    """The validation set (rank 0 only), decoded once; None without validation."""
    if not (run.config.has_validation and run.ctx.is_main):
        return None
    validator = build_validator(run.config, run.tset, run.input_size)
    if validator.skipped:
        say(f"validation: skipped {len(validator.skipped)} undecodable image(s); first: {validator.skipped[0]}")
    return validator


def batch_source(run: Run) -> Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """What one epoch iterates: (uint8 images, labels, flips) in the sampler's order, set by `set_epoch`."""
    if run.config.cache == "device":
        device_batches = DeviceBatches(run.prep, run.device)
        return lambda: device_batches.epoch(run.sampler)
    loader = make_loader(run.prep, run.sampler, workers=run.config.workers, pin_memory=run.device.type == "cuda")
    return lambda: loader


# ---------------------------------------------------------------------------------------------
# One epoch


def instrument_means(sums: list[float]) -> dict[str, float]:
    """`settings.TRAINING_INSTRUMENTS` (what a training line holds beside the loss) from summed
    `heads.INSTRUMENT_SUMS` (count first)."""
    count = max(sums[0], 1.0)
    values = dict(zip(INSTRUMENT_SUMS[1:], (v / count for v in sums[1:])))
    values["train_accuracy"] = values.pop("train_correct")
    return {name: values[name] for name in TRAINING_INSTRUMENTS}


class LossWindow:
    """The mean loss, the instruments and images/s of the steps since the last logged line, summed on
    the device (no host sync per step); time spent validating and checkpointing is left out. The
    epoch's instrument sums run alongside, for the epoch's training accuracy.

    One vector holds the window (`[loss sum, instrument sums...]`) and one the epoch, so that closing
    either is one all-reduce. A checkpoint saves both (summed over ranks; `state`), so that a resumed
    run writes the lines the uninterrupted one would have."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(1 + len(INSTRUMENT_SUMS), device=device, dtype=torch.float64)
        self.epoch = torch.zeros(len(INSTRUMENT_SUMS), device=device, dtype=torch.float64)
        self.steps = 0
        self.start = time.perf_counter()
        self.last_loss: float | None = None

    def add(self, loss: torch.Tensor, instruments: torch.Tensor) -> None:
        self.sums[0] += loss.detach().double()
        self.sums[1:] += instruments
        self.epoch += instruments
        self.steps += 1

    def close(self, ctx: DistContext, *, images_per_step: int) -> tuple[float, float, dict[str, float]]:
        """(mean loss over ranks, images/s, instrument means) of the window, and start the next one."""
        total = ctx.sum(self.sums).tolist()
        mean_loss = total[0] / self.steps / ctx.world_size
        rate = self.steps * images_per_step / max(time.perf_counter() - self.start, 1e-9)
        self.last_loss = mean_loss
        self.sums.zero_()
        self.steps = 0
        self.start = time.perf_counter()
        return mean_loss, rate, instrument_means(total[1:])

    def close_epoch(self, ctx: DistContext) -> float:
        """The epoch's training accuracy over every rank's samples; starts the next epoch's sums."""
        total = ctx.sum(self.epoch).tolist()
        self.epoch.zero_()
        return instrument_means(total)["train_accuracy"]

    def state(self, ctx: DistContext) -> dict[str, Any]:
        """Both sums over every rank (a collective), for the checkpoint."""
        return {"sums": ctx.sum(self.sums).tolist(), "epoch": ctx.sum(self.epoch).tolist(), "steps": self.steps}

    def restore(self, state: dict[str, Any] | None, ctx: DistContext) -> None:
        """Continue from a checkpoint's `state` (rank 0 holds the sums; the others add to zeros)."""
        if not state or not ctx.is_main:
            self.steps = int(state["steps"]) if state else 0
            return
        self.sums.copy_(torch.tensor(state["sums"], dtype=torch.float64))
        self.epoch.copy_(torch.tensor(state["epoch"], dtype=torch.float64))
        self.steps = int(state["steps"])

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        paused_at = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - paused_at


def train_one_epoch(run: Run, epoch: int, *, hooks: Hooks, window: LossWindow) -> bool:
    """Train `epoch` from `run.step` on; True when a stop was requested (checkpoint written)."""
    config, ctx = run.config, run.ctx
    run.sampler.set_epoch(epoch, skip=run.step - epoch * run.steps_per_epoch)
    for images, labels, flips in run.batches():
        images = images.to(run.device, non_blocking=True)
        labels = labels.to(run.device, non_blocking=True)
        flips = flips.to(run.device, non_blocking=True)
        augment = run.augmentation
        x = to_model_input(images, flips, run.mean_t, run.std_t, channels_last=config.channels_last,
                           augment=(lambda t, s=run.step: augment(t, s)) if augment.enabled else None)
        loss, instruments = train_step(run.net, x, labels, run.optimizer, run.scaler)
        lr_used = run.optimizer.param_groups[0]["lr"]
        run.scheduler.step()
        run.step += 1
        window.add(loss, instruments)

        info_loss = info_rate = None
        at_window = run.step % hooks.log_every == 0 or run.step == run.total_steps
        if at_window:
            info_loss, info_rate, means = window.close(ctx, images_per_step=config.batch_size * ctx.world_size)
            if not math.isfinite(info_loss):
                raise FaceverError(f"training diverged at step {run.step} (loss {info_loss}); lower `lr` or use `amp` off/bf16", options=('lr', 'amp'))
            if not run.config.head_options.noisy:
                means.pop("noise")
            if ctx.is_main:
                _append_jsonl(run.metrics_path, {
                    "kind": "train", "step": run.step, "epoch": epoch, "loss": info_loss,
                    "lr": lr_used, "images_per_second": info_rate, **means, "time": time.time(),
                })
        if hooks.progress is not None and ctx.is_main:
            hooks.progress(StepInfo(run.step, run.total_steps, epoch, info_loss, lr_used, info_rate))

        stop = bool(hooks.stop_requested and hooks.stop_requested())
        if ctx.distributed:
            # Every rank must stop after the same step: agree at the logged steps only (a collective).
            stop = ctx.any_true(stop) if at_window else False
        with window.paused():  # validation and checkpoint time is not training time
            after_step(run, epoch, stop=stop, say=hooks.say, log_every=hooks.log_every, window=window)
        if stop:
            return True
    return False


def after_step(run: Run, epoch: int, *, stop: bool, say: Callable[[str], None], log_every: int = 10,
               window: LossWindow | None = None) -> None:
    """Validation and checkpoint hook: validate every `val_every` steps and at each epoch's end;
    write the checkpoint at each epoch's end, every `checkpoint_every` steps and when stopping.

    A stop writes its checkpoint at once (under torchrun the launcher kills the workers 30 s after
    Ctrl-C): a validation due at that step is left to the resumed run (`validation_pending`).
    """
    config, ctx, step = run.config, run.ctx, run.step
    end_of_epoch = step % run.steps_per_epoch == 0
    validation_due = run.validator is not None and (
        end_of_epoch or bool(config.val_every and step % config.val_every == 0))
    if validation_due and stop:
        run.validation_pending = True
    elif validation_due:
        validate(run, epoch, say=say)
    train_accuracy = window.close_epoch(ctx) if (end_of_epoch and window is not None) else None
    if stop or end_of_epoch or (config.checkpoint_every and step % config.checkpoint_every == 0):
        sharded = is_sharded(run.head)
        if sharded:
            save_shard(run.checkpoint_path, {"head": run.head.state_dict(), "optimizer": run.optimizer.state_dict()},
                       step=step, rank=ctx.rank, world_size=ctx.world_size)
            ctx.barrier()  # every part on disk before the main file names this step
        state = checkpoint_state(run, epoch)  # a collective: every rank's generators
        if window is not None:
            state["window"] = window.state(ctx)  # a collective too
        if ctx.is_main:
            save_checkpoint(run.checkpoint_path, {**state, "log_every": log_every})
            if sharded:
                prune_shards(run.checkpoint_path, keep_step=step)
            if end_of_epoch:
                record = {"kind": "epoch", "step": step, "epoch": epoch, "time": time.time()}
                if train_accuracy is not None:
                    record["train_accuracy"] = train_accuracy
                _append_jsonl(run.metrics_path, record)
        ctx.barrier()


# ---------------------------------------------------------------------------------------------
# Checkpoints, validation, model files


def checkpoint_state(run: Run, epoch: int) -> dict[str, Any]:
    """The full state `setup_run` restores (plain data: loadable with `weights_only=True`).

    Called by every rank (it gathers each rank's generator states); only rank 0 writes it.
    """
    rng = run.ctx.gather(capture_rng_state(run.device))
    return {
        "config": run.config.to_dict(),
        "class_map": list(run.tset.classes),
        "model": run.backbone.state_dict(),
        "head": run.head.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": epoch,
        "step": run.step,
        "steps_per_epoch": run.steps_per_epoch,
        "world_size": run.ctx.world_size,
        "rng": rng,
        "best": dict(run.best),
        "validation_pending": run.validation_pending,
    }


def training_crops(run: Run) -> dict[str, Any]:
    """How the training crops were made, for `model.pt`: the model's input size, the crop policy that fitted
    the decoded crops to it, their own size, and the training folder's alignment record when it has one."""
    from facever.core.crop import CROP_POLICY
    from facever.data_prep.alignment_record import read_alignment_record

    data = Path(run.config.data)
    return {
        "input_size": [int(v) for v in run.input_size],
        "crop_policy": CROP_POLICY,
        "source_size": [int(v) for v in run.prep.crop_size] if run.prep.crop_size else None,
        "alignment": read_alignment_record(data) if data.is_dir() else None,
    }


def save_bundle(run: Run, path: Path, accuracy: float | None) -> Path:
    """The deployable embedding model (`facever.models.bundle`) with the run's current weights."""
    config = run.config
    extra = {
        "config": config.to_dict(),
        "class_map": list(run.tset.classes),
        "step": run.step,
        "val_accuracy": accuracy,
        "head": config.head,
        "train_images": len(run.prep.items),
        "crops": training_crops(run),
    }
    return save_model_bundle(
        path, run.backbone, arch=config.arch, arch_kwargs=config.arch_kwargs, input_size=run.input_size,
        mean=run.mean, std=run.std, embedding_dim=int(run.backbone.embedding_dim), extra=extra,
    )


def validate(run: Run, epoch: int, *, say: Callable[[str], None]) -> None:
    """Verification accuracy now (rank 0); the best so far is saved as model.pt."""
    validator = run.validator
    if validator is None:
        return
    result = validator.run(run.backbone, mean=run.mean, std=run.std, device=run.device)
    acc = float(result.accuracy_mean)
    step, best = run.step, run.best
    _append_jsonl(run.metrics_path, {
        "kind": "validation", "step": step, "epoch": epoch, "protocol": validator.name, "accuracy": acc,
        "accuracy_std": float(result.kfold.std), "auc": float(result.auc), "eer": float(result.eer),
        "pairs": len(validator.protocol), "flip": validator.settings["flip"], "amp": validator.settings["amp"],
        "crop_policy": validator.settings["crop_policy"], "time": time.time(),
    })
    if best["accuracy"] is None or acc >= best["accuracy"]:
        best["accuracy"], best["step"] = acc, step
        save_bundle(run, run.out_dir / "model.pt", acc)
        say(f"step {step}: validation accuracy {acc:.4f} (best so far, saved model.pt)")
    else:
        say(f"step {step}: validation accuracy {acc:.4f} (best {best['accuracy']:.4f} at step {best['step']})")


def finish_run(run: Run, *, interrupted: bool, last_loss: float | None, say: Callable[[str], None]) -> TrainResult:
    """Write model_last.pt (and model.pt without validation) unless stopped; the run's summary."""
    model_path = last_path = None
    out_dir = run.out_dir
    if run.ctx.is_main and not interrupted:
        model_path = out_dir / "model.pt"
        last_path = out_dir / "model_last.pt"
        if run.validator is None or not model_path.exists() or run.best["step"] == run.step:
            # The best weights are the final ones (or nothing chose a best): one file, model.pt, and
            # model_last.pt a link to it instead of a second copy of the same weights.
            if run.validator is None or not model_path.exists():
                save_bundle(run, model_path, None)
            link_or_copy(model_path, last_path)
        else:
            save_bundle(run, last_path, None)
    if interrupted:
        say(f"stopped at step {run.step} of {run.total_steps}; checkpoint saved, resume to continue")
    return TrainResult(
        out_dir=out_dir, steps=run.step, total_steps=run.total_steps, interrupted=interrupted, model_path=model_path,
        last_model_path=last_path, best_accuracy=run.best["accuracy"], best_step=run.best["step"],
        num_classes=len(run.tset.classes), num_images=len(run.prep.items), failures=run.prep.failures,
        last_loss=last_loss,
    )
