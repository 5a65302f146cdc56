"""The description of a training run: a frozen dataclass saved as plain JSON in every checkpoint.

Fields split in two: those that decide the numbers a run produces (data, model, head, optimiser,
schedule, seed, AMP) must be identical when resuming, while runtime fields (device, workers, cache,
compile, validation and checkpoint cadence) may change between the interrupted run and its resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from facever.core.devices import default_loader_workers
from facever.core.errors import FaceverError
from facever.core.settings import (
    AMP_MODES, CACHE_MODES, CLASSIFIERS, DEFAULT_ALPHA2, DEFAULT_AMP, DEFAULT_DEVICE, DEFAULT_HEAD, DEFAULT_NOISE,
    HEADS, NOISE_MODES, SCHEDULES, TRAIN_BATCH_SIZE,
)

# May differ between a run and its resume: they change speed or bookkeeping, not the batches or the
# schedule. (compile and channels_last, and on a GPU also device and deterministic, change the last
# bits of the arithmetic: docs/training.md, "What continues exactly means".)
RUNTIME_FIELDS = frozenset(
    {"device", "workers", "cache", "cache_dir", "compile", "channels_last", "deterministic", "val_pairs",
     "val_images", "val_ext", "val_bin", "val_every", "checkpoint_every", "strict"}
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run.

    `batch_size` is per process: under torchrun with N processes one optimiser step sees N x
    batch_size images. `milestones` are epochs (fractions allowed) where the step schedule
    multiplies the learning rate by `lr_gamma`. `warmup_epochs` ramps the learning rate linearly
    from ~0 (both schedules). `input_size`/`embedding_dim`/`width` of None keep the architecture's defaults.
    """

    data: str
    arch: str = "sphere20"
    input_size: tuple[int, int] | None = None
    embedding_dim: int | None = None
    width: int | None = None
    head: str = DEFAULT_HEAD
    alpha2: float = DEFAULT_ALPHA2
    noise: str = DEFAULT_NOISE
    cosine_scale: float = 0.0  # 0: the paper's logits; s > 0: s cos(theta) on normalised features (heads)
    classifier: str = "full"
    sample_rate: float = 1.0
    epochs: int = 20
    batch_size: int = TRAIN_BATCH_SIZE
    lr: float = 0.1
    schedule: str = "step"
    milestones: tuple[float, ...] = (10.0, 15.0, 18.0)
    lr_gamma: float = 0.1
    warmup_epochs: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # Augmentation beyond the flip (facever.training.augment): 1.0 / 0.0 / 0.0 = off (the paper's).
    crop_scale: float = 1.0
    jitter: float = 0.0
    greyscale: float = 0.0
    seed: int = 0
    amp: str = DEFAULT_AMP  # "auto" becomes the device's precision (`resolve_amp`) when the config is made
    min_images: int = 1
    holdout_identities: int = 0
    # runtime
    device: str = DEFAULT_DEVICE
    workers: int = field(default_factory=default_loader_workers)  # 4, at most the CPUs available
    cache: str = "none"
    cache_dir: str | None = None
    compile: bool = False
    channels_last: bool = False
    deterministic: bool = False  # deterministic kernels, no cuDNN autotuning (facever.core.devices.compute_settings)
    val_pairs: str | None = None
    val_images: str | None = None
    val_ext: str = ".jpg"
    val_bin: str | None = None
    val_every: int = 0
    checkpoint_every: int = 1000
    strict: bool = False

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:  # the settings named in backticks, for the CLI to write as its flags
                raise FaceverError(message, options=re.findall(r"`(\w+)`", message))

        if self.input_size is not None:
            object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        check(self.head in HEADS, f"`head` must be one of {', '.join(HEADS)}, got {self.head!r}")
        check(self.noise in NOISE_MODES, f"`noise` must be one of {', '.join(NOISE_MODES)}, got {self.noise!r}")
        check(self.classifier in CLASSIFIERS,
              f"`classifier` must be one of {', '.join(CLASSIFIERS)}, got {self.classifier!r}")
        check(0 < self.sample_rate <= 1, f"`sample_rate` must be in (0, 1], got {self.sample_rate}")
        check(self.sample_rate == 1 or self.classifier == "sharded",
              f"`sample_rate` {self.sample_rate} samples classes of the sharded classifier: use `classifier` sharded")
        check(self.schedule in SCHEDULES, f"`schedule` must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        check(self.amp in AMP_MODES, f"`amp` must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.amp == "auto":  # a saved config holds the precision the run had, never "auto"
            from facever.core.devices import resolve_amp

            object.__setattr__(self, "amp", resolve_amp("auto", self.device))
        check(self.cache in CACHE_MODES, f"`cache` must be one of {', '.join(CACHE_MODES)}, got {self.cache!r}")
        check(self.epochs >= 1, f"`epochs` must be 1 or more, got {self.epochs}")
        check(self.batch_size >= 2, f"`batch_size` must be 2 or more (batch norm), got {self.batch_size}")
        check(self.lr > 0, f"`lr` must be positive, got {self.lr}")
        check(self.alpha2 >= 0, f"`alpha2` must be 0 or more, got {self.alpha2}")
        check(math.isfinite(self.cosine_scale) and self.cosine_scale >= 0,
              f"`cosine_scale` must be 0 (off) or a positive number, got {self.cosine_scale}")
        check(0 <= self.momentum < 1, f"`momentum` must be in [0, 1), got {self.momentum}")
        check(self.weight_decay >= 0, f"`weight_decay` must be 0 or more, got {self.weight_decay}")
        check(0 < self.lr_gamma <= 1, f"`lr_gamma` must be in (0, 1], got {self.lr_gamma}")
        check(0 <= self.warmup_epochs < self.epochs, f"`warmup_epochs` must be in [0, epochs), got {self.warmup_epochs}")
        check(list(self.milestones) == sorted(self.milestones), f"`milestones` must increase, got {list(self.milestones)}")
        check(self.holdout_identities != 1 and self.holdout_identities >= 0,
              f"`holdout_identities` must be 0 or at least 2 (validation pairs need two people), got {self.holdout_identities}")
        check(0 < self.crop_scale <= 1, f"`crop_scale` must be in (0, 1], got {self.crop_scale}")
        check(0 <= self.jitter < 1, f"`jitter` must be in [0, 1), got {self.jitter}")
        check(0 <= self.greyscale <= 1, f"`greyscale` must be in [0, 1], got {self.greyscale}")
        check(self.min_images >= 1, f"`min_images` must be 1 or more, got {self.min_images}")
        check(self.workers >= 0, f"`workers` must be 0 or more, got {self.workers}")
        check(self.val_every >= 0 and self.checkpoint_every >= 0, "`val_every` and `checkpoint_every` must be 0 or more")
        check((self.val_pairs is None) == (self.val_images is None), "`val_pairs` and `val_images` go together")
        check(self.val_bin is None or self.val_pairs is None, "give `val_pairs`/`val_images` or `val_bin`, not both")
        if self.input_size is not None:
            check(len(self.input_size) == 2 and min(self.input_size) >= 8, f"`input_size` must be HxW, got {self.input_size}")

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        """Overrides passed to `create_model` (only those set)."""
        kwargs: dict[str, Any] = {}
        if self.input_size is not None:
            kwargs["input_size"] = list(self.input_size)
        if self.embedding_dim is not None:
            kwargs["embedding_dim"] = int(self.embedding_dim)
        if self.width is not None:
            kwargs["width"] = int(self.width)
        return kwargs

    @property
    def has_validation(self) -> bool:
        return bool(self.val_pairs or self.val_bin or self.holdout_identities)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_size"] = list(self.input_size) if self.input_size is not None else None
        data["milestones"] = list(self.milestones)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FaceverError(f"unknown training config field(s): {', '.join(unknown)}")
        data = dict(data)
        if data.get("input_size") is not None:
            data["input_size"] = tuple(data["input_size"])
        if "milestones" in data:
            data["milestones"] = tuple(data["milestones"])
        return cls(**data)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def resume_differences(saved: TrainConfig, current: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Fields (outside RUNTIME_FIELDS) whose values differ: {name: (saved, current)}."""
    a, b = saved.to_dict(), current.to_dict()
    return {k: (a[k], b[k]) for k in a if k not in RUNTIME_FIELDS and a[k] != b[k]}
