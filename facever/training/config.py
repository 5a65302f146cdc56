"""The description of a training run: a frozen dataclass saved as plain JSON in every checkpoint.

Fields split in two: those that decide the numbers a run produces (data, model, head, optimiser,
schedule, seed, AMP) must be identical when resuming, while runtime fields (device, workers, cache,
compile, validation and checkpoint cadence) may change between the interrupted run and its resume.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from facever.core.devices import default_loader_workers
from facever.core.errors import FaceverError
from facever.core.settings import (
    AMP_AUTO_RULE, AMP_MODES, ARCFACE_MARGIN_RANGE, CACHE_MODES, CLASSIFIERS, COSFACE_MARGIN_RANGE, DEFAULT_ALPHA2,
    DEFAULT_AMP, DEFAULT_COSINE_SCALES, DEFAULT_DEVICE, DEFAULT_HEAD, DEFAULT_MARGINS, DEFAULT_SPHEREFACE_LAMBDA,
    SCHEDULES, SPHEREFACE_MARGINS, TRAIN_BATCH_SIZE,
)
from facever.core.sizes import MAX_SIDE, MIN_SIDE
from facever.training.head_options import HeadOptions, resolve_head_options

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
    # The head's options (training.head_options); None: the head's default (core/settings.py).
    margin: float | None = None  # sphereface, cosface, arcface
    alpha2: float = DEFAULT_ALPHA2
    noise: str | None = None  # off, batch, sample; None: batch for noisy-softmax, off for the others
    cosine_scale: float | None = None  # 0: the paper's logits; s > 0: s cos(theta) on normalised features
    sphereface_lambda: tuple[float, float, float, float] | None = None  # base, gamma, power, lambda_min
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
        if self.sphereface_lambda is not None:
            object.__setattr__(self, "sphereface_lambda", tuple(self.sphereface_lambda))
        self.head_options  # every head option checked, each error naming its option  # noqa: B018
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
            check(len(self.input_size) == 2 and MIN_SIDE <= min(self.input_size) and max(self.input_size) <= MAX_SIDE,
                  f"`input_size` must be HxW with {MIN_SIDE} <= H, W <= {MAX_SIDE}, got {self.input_size}")

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
    def head_options(self) -> HeadOptions:
        """The head's options with its defaults filled in (checked)."""
        return resolve_head_options(self.head, margin=self.margin, cosine_scale=self.cosine_scale, noise=self.noise,
                                    alpha2=self.alpha2, sphereface_lambda=self.sphereface_lambda)

    @property
    def has_validation(self) -> bool:
        return bool(self.val_pairs or self.val_bin or self.holdout_identities)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_size"] = list(self.input_size) if self.input_size is not None else None
        data["milestones"] = list(self.milestones)
        if self.sphereface_lambda is not None:
            data["sphereface_lambda"] = list(self.sphereface_lambda)
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
        if data.get("sphereface_lambda") is not None:
            data["sphereface_lambda"] = tuple(data["sphereface_lambda"])
        return cls(**data)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


#: What each setting of a run does, in the order `facever train --help` lists them: the one text behind
#: the command line's options (which add each field's default) and the docs. Other settings are named in
#: backticks (the command line writes them as its flags). Fields not listed (`data`, `lr_gamma`) are set
#: by DATA or config files only.
OPTION_HELP: dict[str, str] = {
    "arch": "Backbone: sphere20, iresnet50, iresnet100, mobilefacenet, inception-resnet-v1, ...",
    "input_size": "Override the backbone's input HEIGHTxWIDTH, e.g. 56x48 for a quick model.",
    "embedding_dim": "Override the embedding size (sphere20: 512).",
    "width": "Override the backbone's base channel width (sphere20/mobilefacenet: 64).",
    "head": "noisy-softmax (the paper), softmax (the baseline), or a margin head: sphereface (A-Softmax), cosface, "
            "arcface (docs/train.md, \"Heads\").",
    "margin": "The margin of `head` sphereface (the integer m of cos(m theta): "
              f"{', '.join(map(str, SPHEREFACE_MARGINS))}; default {DEFAULT_MARGINS['sphereface']:g}), cosface "
              f"(subtracted from the cosine, {COSFACE_MARGIN_RANGE[0]:g}-{COSFACE_MARGIN_RANGE[1]:g}; default "
              f"{DEFAULT_MARGINS['cosface']:g}) or arcface (added to the angle, radians in "
              f"[{ARCFACE_MARGIN_RANGE[0]:g}, pi/2); default {DEFAULT_MARGINS['arcface']:g}).",
    "alpha2": "Noise variance alpha^2 of Noisy Softmax (paper: 0.1 on faces).",
    "cosine_scale": "Logits s*cos(theta) on normalised embeddings and class weights (NormFace), with the head's "
                    "margin and noise on them; 0: the paper's unnormalised logits. Default: "
                    + "; ".join(f"{head} {scale:g}" for head, scale in DEFAULT_COSINE_SCALES.items()) + ".",
    "noise": "Noisy Softmax's noise: batch (one xi per mini-batch, the authors' code; noisy-softmax's default), "
             "sample (one per image), off. On a margin head (default off) batch or sample adds the noise: "
             "`head` arcface with `noise` batch is Noisy ArcFace.",
    "sphereface_lambda": "SphereFace's annealed blend: lambda = max(MIN, BASE (1 + GAMMA step)^-POWER), as "
                         "BASE,GAMMA,POWER,MIN. Default "
                         + ",".join(f"{v:g}" for v in DEFAULT_SPHEREFACE_LAMBDA) + " (SphereFace's prototxt).",
    "classifier": "full: every process holds the whole classifier; sharded: under torchrun each process holds "
                  "1/N of the classes (Partial FC style; for 100k+ identities).",
    "sample_rate": "With `classifier` sharded: score all classes of the batch plus this share of the others per "
                   "step (Partial FC); 1.0 is the full softmax.",
    "epochs": "Passes over the data.",
    "batch_size": "Images per step per process (torchrun: x processes).",
    "lr": "Peak learning rate of SGD.",
    "schedule": "step: x0.1 at `milestones`; cosine: cosine decay to 0.",
    "milestones": "Epochs where the step schedule divides the LR by 10, e.g. 10,15,18.",
    "warmup_epochs": "Linear warm-up length in epochs (fractions allowed).",
    "momentum": "SGD momentum.",
    "weight_decay": "SGD weight decay.",
    "crop_scale": "Random crops keeping this much of the area or more (0.8: 80-100%), resized back; 1 is off.",
    "jitter": "Random brightness and contrast factors in [1-J, 1+J]; 0 is off.",
    "greyscale": "Probability of turning a training image grey.",
    "seed": "Seeds weights, batch order, flips and noise.",
    "device": "auto (CUDA if present), cpu, cuda, cuda:1. Under torchrun each process takes GPU LOCAL_RANK.",
    "amp": f"Mixed precision of the backbone: auto ({AMP_AUTO_RULE}), bf16, fp16 (with loss scaling), off. The "
           "head and loss stay float32.",
    "channels_last": "NHWC memory format (faster convolutions on recent GPUs).",
    "compile": "torch.compile the backbone (faster steps after a slow first one).",
    "deterministic": "Deterministic GPU kernels (cuDNN autotuning off, cudnn.deterministic, "
                     "torch.use_deterministic_algorithms): a resumed GPU run then ends bitwise equal to an "
                     "uninterrupted one on the same GPU and software, a little slower. Changes nothing on a CPU.",
    "workers": "DataLoader worker processes decoding images (by default at most the CPUs available).",
    "cache": "none: decode every step; memmap: decode once into a uint8 .npy file; device: that file held "
             "whole on the GPU.",
    "cache_dir": "Where the decoded cache lives (default RUN/cache); reused by later runs on the same data.",
    "min_images": "Drop identities with fewer images than this.",
    "holdout_identities": "Keep this many identities out of training and validate on pairs among them.",
    "val_pairs": "LFW-style pairs.txt for validation (with `val_images`).",
    "val_images": "Folder of aligned crops the `val_pairs` refer to (Name/Name_0001.jpg).",
    "val_ext": "Extension of the `val_images` files the pairs name (e.g. .png).",
    "val_bin": "InsightFace verification .bin (lfw.bin, agedb_30.bin, ...) for validation.",
    "val_every": "Validate every N steps (0: at each epoch's end).",
    "checkpoint_every": "Write checkpoint.pt every N steps, besides each epoch's end.",
    "strict": "Fail on any undecodable image instead of skipping and listing it.",
}


def resume_differences(saved: TrainConfig, current: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Fields (outside RUNTIME_FIELDS) whose values differ: {name: (saved, current)}."""
    a, b = saved.to_dict(), current.to_dict()
    return {k: (a[k], b[k]) for k in a if k not in RUNTIME_FIELDS and a[k] != b[k]}
