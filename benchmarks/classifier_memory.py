#!/usr/bin/env python
"""The computed memory/communication table of docs/distributed.md: full (DDP) vs sharded classifier.

    python benchmarks/classifier_memory.py     # prints the Markdown table

Computed from `facever.training.sharded_head.classifier_cost` (float32, SGD with momentum,
512-d embeddings, 128 images per GPU per step), not measured.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facever.training.sharded_head import classifier_cost  # noqa: E402

CLASSES = (10_000, 360_000, 2_000_000)
GPUS = (1, 8, 64)
DIM, BATCH = 512, 128


def _size(n: int) -> str:
    if n == 0:
        return "0"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def markdown_table() -> str:
    lines = [
        "| classes | GPUs | full: weights / GPU | full: weights+grad+momentum / GPU | full: all-reduced / step "
        "| sharded: weights / GPU | sharded: weights+grad+momentum / GPU | sharded: gathered+scattered / step "
        "| sharded: logits+softmax / GPU |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in CLASSES:
        for g in GPUS:
            f = classifier_cost(c, DIM, g, layout="full", batch_per_gpu=BATCH)
            s = classifier_cost(c, DIM, g, layout="sharded", batch_per_gpu=BATCH)
            lines.append(
                f"| {c:,} | {g} | {_size(f.weight_bytes)} | {_size(f.state_bytes)} | {_size(f.comm_bytes)} "
                f"| {_size(s.weight_bytes)} | {_size(s.state_bytes)} | {_size(s.comm_bytes)} | {_size(s.logits_bytes)} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
