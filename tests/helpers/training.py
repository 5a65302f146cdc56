"""The tiny training set-up of the training tests: options small enough for a CPU, and a learnable
synthetic identity folder."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image

TINY = dict(arch="sphere20", input_size=(20, 16), width=4, embedding_dim=8)
#: A tiny run: 2 epochs of batch 4 on the CPU, no checkpoints between epochs.
TINY_RUN = dict(TINY, epochs=2, batch_size=4, lr=0.05, workers=0, device="cpu", checkpoint_every=0)
TINY_CLI = ["--arch", "sphere20", "--input-size", "20x16", "--width", "4", "--embedding-dim", "8"]


def identity_folder(root: Path, people: int = 4, per_person: int = 4, size=(20, 16)) -> Path:
    """Small identity folder: each person a different base colour plus noise (learnable, not trivial)."""
    for p in range(people):
        rng = np.random.default_rng(zlib.crc32(f"person{p}".encode()))
        base = rng.integers(0, 256, 3)
        (root / f"person{p}").mkdir(parents=True, exist_ok=True)
        for i in range(per_person):
            img = np.clip(base + rng.normal(0, 40, size + (3,)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"person{p}" / f"{i}.png")
    return root


def tiny_config(data: Path, **overrides):
    """The TrainConfig of a tiny run on `data` (TINY_RUN), with `overrides`."""
    from facever.training.config import TrainConfig

    return TrainConfig(data=str(data), **{**TINY_RUN, **overrides})
