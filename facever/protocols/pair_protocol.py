"""A verification protocol as data: which two items form each pair, whether they are the same person,
and which fold each pair belongs to. Every benchmark reader (LFW, FGLFW, CALFW/CPLFW, YTF, .bin)
produces one, and the evaluator consumes it, so all benchmarks share one engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facever.core.errors import InputFileError
from facever.core.paths import name_problem


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


def checked(protocol: PairProtocol) -> PairProtocol:
    """`protocol` after the checks every reader of a pairs file applies (LFW, path lists, FGLFW, CALFW/CPLFW,
    YTF splits): the one rule for degenerate protocol input, refused with the file and line.

    - every item is a plain relative name inside its folder (`core.paths.name_problem`);
    - no item is paired with itself (its score says nothing about the model);
    - no pair is listed twice, in either order: in two folds it would train the thresholds on a test pair
      (a file whose fold 1 was copied ten times would score ten times the same pairs as a 10-fold run), in
      one fold it would count twice.

    (That k-fold evaluation needs two folds or more is `check_folds`, applied where folds are used.)
    """
    source = protocol.source if protocol.source is not None else Path("<pairs>")
    lines = protocol.line_numbers

    def line(i: int) -> int | None:
        return lines[i] if lines is not None else None

    seen: dict[tuple[str, str], int] = {}
    for i, (a, b) in enumerate(zip(protocol.first, protocol.second)):
        for item in (a, b):
            problem = name_problem(item)
            if problem is not None:
                raise InputFileError(source, f"item {item!r} {problem}: names must stay inside their folder", line=line(i))
        if a == b:
            raise InputFileError(source, f"pairs {a!r} with itself", line=line(i))
        key = (a, b) if a <= b else (b, a)
        first = seen.setdefault(key, i)
        if first != i:
            where = f"line {line(first)}" if lines is not None else f"pair {first + 1}"
            folds = (int(protocol.folds[first]), int(protocol.folds[i]))
            harm = (f"in folds {folds[0] + 1} and {folds[1] + 1} it would train the thresholds on a test pair"
                    if folds[0] != folds[1] else "it would count twice")
            raise InputFileError(source, f"repeats the pair of {where} ({a}, {b}): {harm}; list each pair once",
                                 line=line(i))
    return protocol


def check_folds(protocol: PairProtocol) -> None:
    """The k-fold protocol needs at least two folds (thresholds are trained on the others): a file whose
    pairs are all in one fold is refused naming it (a list of pairs to verify may have one fold)."""
    if len(protocol) and protocol.n_folds < 2:
        where = protocol.source if protocol.source is not None else Path(f"<{protocol.name} pairs>")
        raise InputFileError(where, f"all {len(protocol)} pairs are in one fold; k-fold evaluation needs at least two "
                                    "(thresholds are chosen on the other folds)")
