"""Optional TensorBoard logging of a run: RUN/metrics.jsonl (the run's one record of its metrics) copied
into TensorBoard event files under RUN/tensorboard as it grows.

Needs the `tensorboard` package (not a dependency of facever: `pip install tensorboard`).
"""

from __future__ import annotations

import json
from pathlib import Path

from facever.core.errors import FaceverError
from facever.core.settings import TRAINING_INSTRUMENTS

SCALARS = {
    # The loss, then the saturation instruments (`noise` on noisy heads only).
    "train": ("loss", "lr", "images_per_second", *TRAINING_INSTRUMENTS),
    "validation": ("accuracy", "auc", "eer"),
    "epoch": ("train_accuracy",),
}


def check_tensorboard() -> None:
    """FaceverError when the tensorboard package is missing (checked before a run writes anything)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise FaceverError("TensorBoard logging needs the tensorboard package: pip install tensorboard") from None


class MetricsToTensorBoard:
    """`update()` adds the records appended to RUN/metrics.jsonl since the last call; `close()` flushes."""

    def __init__(self, run_dir: str | Path):
        check_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        self.metrics = self.run_dir / "metrics.jsonl"
        self.writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        self.offset = 0

    def update(self) -> int:
        """Write the new complete lines of metrics.jsonl; returns how many records were added."""
        try:
            with open(self.metrics, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return 0
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        added = 0
        for line in chunk[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            for key in SCALARS.get(record.get("kind"), ()):
                value = record.get(key)
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{record['kind']}/{key}", value, int(record.get("step", 0)))
                    added += 1
        self.writer.flush()
        return added

    def close(self) -> None:
        self.update()
        self.writer.close()
