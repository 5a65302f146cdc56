"""A verification protocol as data: which two items form each pair, whether they are the same person,
and which fold each pair belongs to. Every benchmark reader (LFW, FGLFW, CALFW/CPLFW, YTF, .bin)
produces one, and the evaluator consumes it, so all benchmarks share one engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class PairProtocol:
    """Pairs of items with labels and folds.

    Attributes:
        name: benchmark name ("lfw", "fglfw", "ytf", ...), recorded in reports.
        first, second: the two items of each pair (relative image paths, or video ids for YTF).
        labels: bool array, True where both items show the same person.
        folds: int array, the fold (0-based) of each pair, in file order.
        source: the file the protocol was read from, if any.
        line_numbers: 1-based line of each pair in `source` (first line of the pair), for messages.
    """

    name: str
    first: list[str]
    second: list[str]
    labels: np.ndarray
    folds: np.ndarray
    source: Path | None = None
    line_numbers: list[int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=bool)
        self.folds = np.asarray(self.folds, dtype=np.int64)
        n = len(self.first)
        if len(self.second) != n or self.labels.shape != (n,) or self.folds.shape != (n,):
            raise ValueError("first, second, labels and folds must have one entry per pair")

    def __len__(self) -> int:
        return len(self.first)

    @property
    def n_folds(self) -> int:
        return int(np.unique(self.folds).size)

    def items(self) -> list[str]:
        """Every distinct item the pairs need, in first-use order."""
        return list(dict.fromkeys(self.first + self.second))
