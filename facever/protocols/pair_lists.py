"""Generating verification pairs in LFW's `pairs.txt` format for any identity-folder test set.

LFW's View 2 has 10 sets, each with N same-person and then N different-person pairs, written

    10\tN
    Name\tn1\tn2                  (same person: Name/Name_000n1, Name/Name_000n2)
    Name1\tn1\tName2\tn2          (different people)

so `facever.protocols.lfw.read_lfw_pairs` (and every tool that reads LFW's file) reads what this
writes. Images must be named like LFW's, `Name/Name_0001.ext`, numbered from 1.

Pairs are drawn without repetition (an unordered pair appears at most once in the whole file) from
a seeded generator, so the list depends only on the identities, their image counts and the seed.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Mapping

from facever.core.errors import FaceverError


@dataclass(frozen=True)
class PairList:
    """Per fold: N same-person pairs `(name, n1, n2)` then N different-person pairs `(name1, n1, name2, n2)`."""

    same: list[list[tuple[str, int, int]]]
    different: list[list[tuple[str, int, str, int]]]

    @property
    def folds(self) -> int:
        return len(self.same)

    @property
    def per_fold(self) -> int:
        return len(self.same[0]) if self.same else 0

    def to_text(self) -> str:
        """The file content, LFW's exact layout (tab separated, header `folds\\tN`)."""
        lines = [f"{self.folds}\t{self.per_fold}"]
        for same, different in zip(self.same, self.different):
            lines += [f"{name}\t{a}\t{b}" for name, a, b in same]
            lines += [f"{n1}\t{a}\t{n2}\t{b}" for n1, a, n2, b in different]
        return "\n".join(lines) + "\n"


def max_pairs_per_fold(counts: Mapping[str, int], *, folds: int = 10) -> int:
    """The largest N for which `make_pair_list` can draw N distinct same-person pairs per fold."""
    same = sum(c * (c - 1) // 2 for c in counts.values())
    return same // folds


def make_pair_list(counts: Mapping[str, int], *, per_fold: int, folds: int = 10, seed: int = 0) -> PairList:
    """Draw `folds` x `per_fold` same and different pairs among identities with `counts[name]` images.

    Raises FaceverError when there are too few identities or images for that many distinct pairs.
    Names must not contain whitespace (the file is whitespace separated).
    """
    names = sorted(counts)
    if any(not name or any(ch.isspace() for ch in name) for name in names):
        bad = next(name for name in names if not name or any(ch.isspace() for ch in name))
        raise FaceverError(f"identity name {bad!r} contains whitespace; LFW's pairs format cannot hold it")
    if len(names) < 2:
        raise FaceverError(f"pairs need at least two test identities, got {len(names)}")
    if per_fold < 1 or folds < 1:
        raise FaceverError(f"per_fold and folds must be positive, got {per_fold} and {folds}")
    need = per_fold * folds
    rng = random.Random(seed)

    all_same = [(name, a, b) for name in names for a, b in itertools.combinations(range(1, counts[name] + 1), 2)]
    if len(all_same) < need:
        raise FaceverError(
            f"{len(names)} test identities give only {len(all_same)} distinct same-person pairs; "
            f"{folds} folds x {per_fold} need {need}"
        )
    same = rng.sample(all_same, need)

    # Different pairs: rejection sampling over (identity, image) couples; the space is large
    # (sum over identity pairs of c1*c2) so a few retries suffice, but cap them to fail clearly.
    total_different = sum(counts[a] * counts[b] for a, b in itertools.combinations(names, 2))
    if total_different < need:
        raise FaceverError(f"only {total_different} distinct different-person pairs exist; {need} needed")
    seen: set[tuple[str, int, str, int]] = set()
    different: list[tuple[str, int, str, int]] = []
    tries = 0
    while len(different) < need:
        tries += 1
        if tries > 50 * need + 1000:
            raise FaceverError(f"could not draw {need} distinct different-person pairs")
        n1, n2 = rng.sample(names, 2)
        a, b = rng.randint(1, counts[n1]), rng.randint(1, counts[n2])
        key = (n1, a, n2, b) if (n1, a) < (n2, b) else (n2, b, n1, a)
        if key in seen:
            continue
        seen.add(key)
        different.append((n1, a, n2, b))
    return PairList(
        same=[same[k * per_fold:(k + 1) * per_fold] for k in range(folds)],
        different=[different[k * per_fold:(k + 1) * per_fold] for k in range(folds)],
    )
