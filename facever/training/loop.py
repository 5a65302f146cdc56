"""The training loop: one function, `train(config, out_dir)`, for one device or many (torchrun).

Per step: uint8 batch -> device -> flip + normalise there -> backbone under autocast (bf16/fp16)
-> head and cross-entropy in float32 -> SGD with momentum and weight decay (GradScaler for fp16)
-> per-step learning rate (step or cosine schedule, linear warm-up).

Files in OUT (rank 0 alone writes):
- `checkpoint.pt`: full state, replaced atomically every `checkpoint_every` steps, at each epoch's
  end and when stopped (Ctrl-C); `resume=True` continues from it exactly.
- `model.pt`: the deployable embedding model (`facever.models.bundle`): the best by validation
  accuracy when validation is on, else the final weights. `model_last.pt`: the final weights.
- `metrics.jsonl`: one JSON object per line (training window, validation, epoch end).
- `config.json`, `classes.txt` (class map), `corrupt_images.txt` (when some were skipped).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facever.core.atomic import write_text_atomic
from facever.core.errors import FaceverError
from facever.training.checkpoint import (
    capture_rng_state,
    check_resume,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from facever.training.config import TrainConfig
from facever.training.data import (
    DeviceBatches,
    EpochBatchSampler,
    make_loader,
    open_training_set,
    prepare_training_data,
    to_model_input,
)
from facever.training.distributed import init_distributed

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


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
    """Backbone under autocast, head (and thus logits) in float32: one module for DDP to wrap."""

    def __init__(self, backbone: nn.Module, head: nn.Module, amp_dtype: torch.dtype | None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.amp_dtype = amp_dtype

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            emb = self.backbone(x)
        return self.head(emb.float(), labels)


def train_step(net: nn.Module, x: torch.Tensor, labels: torch.Tensor, optimizer, scaler) -> torch.Tensor:
    """One optimiser step on a ready batch; returns the (float32) loss without synchronising."""
    logits = net(x, labels)
    loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume, drop lines written after the checkpoint (those steps are about to be redone)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                kept.append(line)
        except (ValueError, AttributeError):
            continue
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
) -> TrainResult:
    """Train the configured model and head; write checkpoints, metrics and model files to `out_dir`.

    `stop_requested()` is polled after each step (every `log_every` steps under DDP, where ranks
    must agree): when true the run writes a checkpoint and returns with `interrupted=True`.
    `on_message(text)` receives notable events (dropped images, resumed step, best model).
    Raises FaceverError for bad data, a config that does not match the checkpoint, or when OUT
    already holds a checkpoint and `resume` is False.
    """
    out_dir = Path(out_dir)
    say = on_message or (lambda text: log.info("%s", text))
    ctx = init_distributed(config.device)
    # Fixed batch shapes: let cuDNN pick the fastest convolution algorithms (restored afterwards).
    benchmark_before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = ctx.device.type == "cuda" or benchmark_before
    try:
        return _train(config, out_dir, ctx, resume, progress, scan_progress, say, stop_requested, log_every)
    finally:
        torch.backends.cudnn.benchmark = benchmark_before
        ctx.close()


def _train(config, out_dir, ctx, resume, progress, scan_progress, say, stop_requested, log_every) -> TrainResult:
    from facever.training.heads import create_head
    from facever.models import create_model
    from facever.models.bundle import save_model_bundle

    device = ctx.device
    ck_path = out_dir / CHECKPOINT_NAME
    if ctx.is_main:
        if ck_path.exists() and not resume:
            raise FaceverError(f"{out_dir} already holds a training checkpoint; pass --resume to continue it or choose another --out")
        out_dir.mkdir(parents=True, exist_ok=True)
    ck = None
    if resume:
        ck = load_checkpoint(ck_path)
        check_resume(ck, config, world_size=ctx.world_size, path=ck_path)
    if config.amp == "fp16" and device.type == "cpu":
        say("note: fp16 autocast on CPU is slow and rarely useful; bf16 is the CPU choice")

    _seed_everything(config.seed)
    tset = open_training_set(
        config.data, min_images=config.min_images, holdout_identities=config.holdout_identities, seed=config.seed
    )
    if ck is not None and list(ck["class_map"]) != list(tset.classes):
        raise FaceverError(f"{ck_path}: the data's identities changed since the checkpoint (class map differs)")
    backbone = create_model(config.arch, **config.arch_kwargs)
    input_size = tuple(int(v) for v in backbone.input_size)
    mean, std = [float(v) for v in backbone.mean], [float(v) for v in backbone.std]

    cache_dir = Path(config.cache_dir) if config.cache_dir else out_dir / "cache"
    prep = prepare_training_data(
        tset, input_size, cache=config.cache, cache_dir=cache_dir, workers=config.workers, strict=config.strict,
        is_main=ctx.is_main, barrier=ctx.barrier, progress=scan_progress if ctx.is_main else None,
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

    head = create_head(
        config.head, int(backbone.embedding_dim), len(tset.classes),
        **({"alpha2": config.alpha2, "noise": config.noise} if config.head == "noisy-softmax" else {}),
    )
    backbone.to(device)
    head.to(device)
    if config.channels_last:
        backbone.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        list(backbone.parameters()) + list(head.parameters()),
        lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
    )
    sampler = EpochBatchSampler(len(prep.items), config.batch_size, seed=config.seed, rank=ctx.rank,
                                world_size=ctx.world_size)
    steps_per_epoch = len(sampler)
    total_steps = config.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config=config, steps_per_epoch=steps_per_epoch)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")

    step = 0
    best: dict[str, Any] = {"accuracy": None, "step": None}
    if ck is not None:
        backbone.load_state_dict(ck["model"])
        head.load_state_dict(ck["head"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        if ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        step = int(ck["step"])
        best = dict(ck.get("best") or best)
        say(f"resuming at step {step} of {total_steps} (epoch {step // steps_per_epoch + 1})")
        if ctx.is_main:
            _truncate_metrics(out_dir / "metrics.jsonl", step)

    amp_dtype = AMP_DTYPES[config.amp]
    net: nn.Module = TrainNet(backbone, head, amp_dtype)
    if config.compile:
        net.backbone = torch.compile(backbone)
    if ctx.distributed:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    net.train()

    validator = None
    if config.has_validation and ctx.is_main:
        from facever.training.validation import build_validator

        validator = build_validator(config, tset, input_size)
        if validator.skipped:
            say(f"validation: skipped {len(validator.skipped)} undecodable image(s); first: {validator.skipped[0]}")

    device_batches = None
    loader = None
    if config.cache == "device":
        device_batches = DeviceBatches(prep, device)
    else:
        loader = make_loader(prep, sampler, workers=config.workers, pin_memory=device.type == "cuda")
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    metrics_path = out_dir / "metrics.jsonl"

    def state(epoch: int) -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "class_map": list(tset.classes),
            "model": backbone.state_dict(),
            "head": head.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "step": step,
            "steps_per_epoch": steps_per_epoch,
            "world_size": ctx.world_size,
            "rng": capture_rng_state(),
            "best": dict(best),
        }

    def bundle_extra(accuracy: float | None) -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "class_map": list(tset.classes),
            "step": step,
            "val_accuracy": accuracy,
            "head": config.head,
            "train_images": len(prep.items),
        }

    def save_bundle(path: Path, accuracy: float | None) -> Path:
        return save_model_bundle(
            path, backbone, arch=config.arch, arch_kwargs=config.arch_kwargs, input_size=input_size, mean=mean,
            std=std, embedding_dim=int(backbone.embedding_dim), extra=bundle_extra(accuracy),
        )

    def validate(epoch: int) -> None:
        if validator is None:
            return
        result = validator.run(backbone, mean=mean, std=std, device=device, amp_dtype=amp_dtype,
                               channels_last=config.channels_last)
        acc = float(result.accuracy_mean)
        record = {"kind": "validation", "step": step, "epoch": epoch, "protocol": validator.name,
                  "accuracy": acc, "accuracy_std": float(result.kfold.std), "auc": float(result.auc),
                  "eer": float(result.eer), "pairs": len(validator.protocol), "time": time.time()}
        _append_jsonl(metrics_path, record)
        if best["accuracy"] is None or acc >= best["accuracy"]:
            best["accuracy"], best["step"] = acc, step
            save_bundle(out_dir / "model.pt", acc)
            say(f"step {step}: validation accuracy {acc:.4f} (best so far, saved model.pt)")
        else:
            say(f"step {step}: validation accuracy {acc:.4f} (best {best['accuracy']:.4f} at step {best['step']})")

    if ck is not None:
        # Last, so that nothing done while setting up (model init, data scan) shifts the generators.
        restore_rng_state(ck["rng"])

    interrupted = False
    window_loss = torch.zeros((), device=device, dtype=torch.float64)
    window_steps = 0
    window_start = time.perf_counter()
    last_loss = None
    start_epoch = step // steps_per_epoch
    for epoch in range(start_epoch, config.epochs):
        sampler.set_epoch(epoch, skip=step - epoch * steps_per_epoch)
        batches = device_batches.epoch(sampler) if device_batches is not None else loader
        for images, labels, flips in batches:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            flips = flips.to(device, non_blocking=True)
            x = to_model_input(images, flips, mean_t, std_t, channels_last=config.channels_last)
            loss = train_step(net, x, labels, optimizer, scaler)
            lr_used = optimizer.param_groups[0]["lr"]
            scheduler.step()
            step += 1
            window_loss += loss.detach().double()
            window_steps += 1

            info_loss = info_rate = None
            at_window = step % log_every == 0 or step == total_steps
            if at_window:
                mean_loss = ctx.mean(float(window_loss.item()) / window_steps)
                elapsed = time.perf_counter() - window_start
                info_rate = window_steps * config.batch_size * ctx.world_size / max(elapsed, 1e-9)
                info_loss = last_loss = mean_loss
                if not math.isfinite(mean_loss):
                    raise FaceverError(f"training diverged at step {step} (loss {mean_loss}); lower --lr or use --amp off/bf16")
                if ctx.is_main:
                    _append_jsonl(metrics_path, {
                        "kind": "train", "step": step, "epoch": epoch, "loss": mean_loss,
                        "lr": lr_used, "images_per_second": info_rate, "time": time.time(),
                    })
                window_loss.zero_()
                window_steps = 0
                window_start = time.perf_counter()
            if progress is not None and ctx.is_main:
                progress(StepInfo(step, total_steps, epoch, info_loss, lr_used, info_rate))

            stop = bool(stop_requested and stop_requested())
            if ctx.distributed:
                stop = ctx.any_true(stop) if at_window else False
            end_of_epoch = step % steps_per_epoch == 0
            paused_at = time.perf_counter()
            if config.val_every and step % config.val_every == 0 and not end_of_epoch and ctx.is_main:
                validate(epoch)
            if stop or end_of_epoch or (config.checkpoint_every and step % config.checkpoint_every == 0):
                if end_of_epoch and ctx.is_main:
                    validate(epoch)
                if ctx.is_main:
                    save_checkpoint(ck_path, state(epoch))
                    if end_of_epoch:
                        _append_jsonl(metrics_path, {"kind": "epoch", "step": step, "epoch": epoch, "time": time.time()})
                ctx.barrier()
            # Validation and checkpoint time is not training time: keep it out of images/s.
            window_start += time.perf_counter() - paused_at
            if stop:
                interrupted = True
                break
        if interrupted:
            break

    model_path = last_path = None
    if ctx.is_main and not interrupted:
        last_path = save_bundle(out_dir / "model_last.pt", None)
        if validator is None:
            model_path = save_bundle(out_dir / "model.pt", None)
        else:
            model_path = out_dir / "model.pt"
            if not model_path.exists():  # no validation ran (cannot happen with epochs >= 1, but be safe)
                save_bundle(model_path, None)
    if interrupted:
        say(f"stopped at step {step} of {total_steps}; checkpoint saved, continue with --resume")
    return TrainResult(
        out_dir=out_dir, steps=step, total_steps=total_steps, interrupted=interrupted, model_path=model_path,
        last_model_path=last_path, best_accuracy=best["accuracy"], best_step=best["step"],
        num_classes=len(tset.classes), num_images=len(prep.items), failures=prep.failures, last_loss=last_loss,
    )
