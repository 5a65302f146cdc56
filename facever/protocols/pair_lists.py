"""Generating verification pairs in LFW's `pairs.txt` format for any identity-folder test set, and the
path-based pairs list for folders not named like LFW (`make_identity_pairs`, `read_path_pairs`, below).

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
import re
from dataclasses import dataclass
from typing import Mapping

from facever.core.errors import FaceverError
from facever.core.paths import name_problem


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


# ---------------------------------------------------------------------------------------------------
# `facever pairs`: pairs for any identity folder, people disjoint across folds, in LFW's format or a
# path-based list.
#
# Path-based list (for folders not named like LFW, e.g. ORL's `s1/1.pgm`), one pair per line:
#
#     # facever pairs: path_a path_b same fold
#     s1/3.pgm\ts1/7.pgm\t1\t1          (same person, fold 1)
#     s1/2.pgm\ts9/4.pgm\t0\t1          (different people, fold 1)
#
# tab separated, paths relative to the identity folder, `same` 1 or 0, folds numbered 1..K; lines
# starting with `#` are comments. `read_lfw_pairs` (eval-lfw, ensemble) and `verify --pairs` read it.

PATH_LIST_HEADER = "# facever pairs: path_a path_b same fold"
_LFW_NAME = re.compile(r"^(?P<name>[^/]+)/(?P=name)_(?P<number>\d{4})(?P<ext>\.[A-Za-z0-9]+)$")


@dataclass(frozen=True)
class IdentityPairs:
    """Per fold, `per_fold` same-person then `per_fold` different-person pairs of relative image paths.

    `disjoint` is True when no person appears in two folds.
    """

    same: list[list[tuple[str, str]]]
    different: list[list[tuple[str, str]]]
    disjoint: bool

    @property
    def folds(self) -> int:
        return len(self.same)

    @property
    def per_fold(self) -> int:
        return len(self.same[0]) if self.same else 0

    def lfw_layout(self) -> dict[str, tuple[str, int]] | None:
        """`path -> (name, number)` when every path is LFW-named (`Name/Name_0001.ext`, one extension) and
        every fold has as many different-person pairs as same-person ones (LFW's header says one N), else None."""
        if any(len(d) != len(s) for s, d in zip(self.same, self.different)):
            return None
        found: dict[str, tuple[str, int]] = {}
        exts = set()
        for fold in (*self.same, *self.different):
            for pair in fold:
                for path in pair:
                    match = _LFW_NAME.match(path)
                    if match is None:
                        return None
                    found[path] = (match.group("name"), int(match.group("number")))
                    exts.add(match.group("ext"))
        return found if len(exts) == 1 else None

    def to_text(self) -> str:
        """LFW's exact format when the images are named like LFW's, else the path-based list (module doc)."""
        layout = self.lfw_layout()
        if layout is not None:
            lines = [f"{self.folds}\t{self.per_fold}"]
            for same, different in zip(self.same, self.different):
                lines += [f"{layout[a][0]}\t{layout[a][1]}\t{layout[b][1]}" for a, b in same]
                lines += [f"{layout[a][0]}\t{layout[a][1]}\t{layout[b][0]}\t{layout[b][1]}" for a, b in different]
            return "\n".join(lines) + "\n"
        lines = [PATH_LIST_HEADER]
        for k, (same, different) in enumerate(zip(self.same, self.different), start=1):
            lines += [f"{a}\t{b}\t1\t{k}" for a, b in same]
            lines += [f"{a}\t{b}\t0\t{k}" for a, b in different]
        return "\n".join(lines) + "\n"

    @property
    def format(self) -> str:
        return "lfw" if self.lfw_layout() is not None else "paths"


def identity_images(root) -> dict[str, list[str]]:
    """`person -> sorted relative image paths` for a folder with one sub-folder per person (any depth below)."""
    from pathlib import Path

    from facever.core.images import list_images

    root = Path(root)
    if not root.is_dir():
        raise FaceverError(f"{root}: not a folder (expected one sub-folder of images per person)")
    people: dict[str, list[str]] = {}
    for rel in list_images(root):
        if "/" in rel:
            people.setdefault(rel.split("/", 1)[0], []).append(rel)
    if not people:
        raise FaceverError(f"{root}: no images in person sub-folders (expected DIR/<person>/<image>)")
    return people


def _same_pairs(people: Mapping[str, list[str]], names) -> list[tuple[str, str]]:
    return [pair for name in names for pair in itertools.combinations(people[name], 2)]


def _different_capacity(people: Mapping[str, list[str]], names) -> int:
    sizes = [len(people[n]) for n in names]
    return (sum(sizes) ** 2 - sum(s * s for s in sizes)) // 2


def _draw_different(rng: random.Random, people, names, count: int) -> list[tuple[str, str]] | None:
    """`count` distinct different-person pairs among `names` (rejection sampling; None if it cannot)."""
    names = list(names)
    if len(names) < 2 or _different_capacity(people, names) < count:
        return None
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > 50 * count + 1000:
            return None
        n1, n2 = rng.sample(names, 2)
        a, b = rng.choice(people[n1]), rng.choice(people[n2])
        key = (a, b) if a < b else (b, a)
        if key not in seen:
            seen.add(key)
            out.append((a, b))
    return out


def _split_people(people: Mapping[str, list[str]], folds: int, rng: random.Random) -> list[list[str]]:
    """People into `folds` groups with balanced same-pair capacity (largest first into the poorest group)."""
    names = sorted(people)
    rng.shuffle(names)
    names.sort(key=lambda n: -len(people[n]))  # stable: ties keep the seeded order
    groups: list[list[str]] = [[] for _ in range(folds)]
    capacity = [0] * folds
    for name in names:
        k = min(range(folds), key=lambda i: (capacity[i], len(groups[i]), i))
        groups[k].append(name)
        capacity[k] += len(people[name]) * (len(people[name]) - 1) // 2
    return groups


def make_identity_pairs(
    people: Mapping[str, list[str]], *, folds: int = 10, per_fold: int, seed: int = 0,
    different_per_fold: int | None = None,
) -> IdentityPairs:
    """Draw `per_fold` same and `per_fold` (or `different_per_fold`) different pairs per fold from `people`
    (name -> image paths). More different-person pairs than same-person ones serve calibration at small
    false-accept rates (`facever calibrate`), which needs about 3 / FAR of them.

    People are split into disjoint groups, one per fold, when every group can give `per_fold` distinct
    pairs of each kind; otherwise pairs are drawn from everyone (`disjoint` False). No unordered pair
    appears twice. The result depends only on the names, their image lists and `seed`.

    Raises FaceverError when even the whole set is too small, saying how many pairs are needed.
    """
    if per_fold < 1 or folds < 1:
        raise FaceverError(f"folds and pairs per fold must be positive, got {folds} and {per_fold}")
    per_diff = per_fold if different_per_fold is None else int(different_per_fold)
    if per_diff < 1:
        raise FaceverError(f"different-person pairs per fold must be positive, got {per_diff}")
    people = {name: sorted(images) for name, images in people.items() if images}
    bad = next((p for imgs in people.values() for p in imgs if any(ch.isspace() for ch in p)), None)
    if bad is not None:
        raise FaceverError(f"image path {bad!r} contains whitespace; a pairs file cannot hold it")
    need = folds * per_fold
    total_same = sum(len(v) * (len(v) - 1) // 2 for v in people.values())
    if len(people) < 2:
        raise FaceverError(f"pairs need at least two people with images, found {len(people)}")
    if total_same < need:
        with_two = sum(len(v) >= 2 for v in people.values())
        raise FaceverError(
            f"{len(people)} people ({with_two} with two images or more) give only {total_same} distinct same-person "
            f"pairs; {folds} folds x {per_fold} need {need} (use fewer folds or pairs per fold, or more people)"
        )
    need_diff = folds * per_diff
    if _different_capacity(people, people) < need_diff:
        raise FaceverError(f"only {_different_capacity(people, people)} distinct different-person pairs exist; "
                           f"{folds} folds x {per_diff} need {need_diff}")

    rng = random.Random(seed)
    groups = _split_people(people, folds, rng)
    same: list[list[tuple[str, str]]] = []
    different: list[list[tuple[str, str]]] = []
    for group in groups:
        candidates = _same_pairs(people, group)
        if len(candidates) < per_fold:
            break
        drawn = _draw_different(rng, people, group, per_diff)
        if drawn is None:
            break
        same.append(rng.sample(candidates, per_fold))
        different.append(drawn)
    else:
        return IdentityPairs(same=same, different=different, disjoint=True)

    # Not enough people for disjoint folds: draw from everyone, still without repeating a pair.
    rng = random.Random(seed)
    all_same = rng.sample(_same_pairs(people, sorted(people)), need)
    all_different = _draw_different(rng, people, sorted(people), need_diff)
    if all_different is None:
        raise FaceverError(f"could not draw {need_diff} distinct different-person pairs")
    return IdentityPairs(
        same=[all_same[k * per_fold:(k + 1) * per_fold] for k in range(folds)],
        different=[all_different[k * per_diff:(k + 1) * per_diff] for k in range(folds)],
        disjoint=False,
    )


def write_identity_pairs(folder, out, *, folds: int = 10, per_fold: int, seed: int = 0,
                         different_per_fold: int | None = None) -> tuple[IdentityPairs, int]:
    """Draw pairs among the people of the identity folder `folder` (`make_identity_pairs`) and write them to
    `out` atomically, in LFW's format when every image is LFW-named, else as a path list (module doc).
    Returns the pairs and the number of people; `facever pairs` and `facever.write_pairs` are this."""
    from pathlib import Path

    from facever.core.atomic import write_text_atomic
    from facever.core.locks import file_lock
    from facever.core.paths import check_output_is_not_an_input

    with file_lock(out):
        people = identity_images(folder)
        check_output_is_not_an_input(out, (Path(folder) / rel for rels in people.values() for rel in rels))
        result = make_identity_pairs(people, folds=folds, per_fold=per_fold, seed=seed,
                                     different_per_fold=different_per_fold)
        write_text_atomic(out, result.to_text())
    return result, len(people)


def looks_like_path_list(text: str) -> bool:
    """True when `text` is the path-based pairs list (its header, or a first line `a b 0|1 fold` with paths)."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.lower().startswith(PATH_LIST_HEADER[:15]):
                return True
            continue
        fields = line.split()
        return len(fields) == 4 and fields[2] in ("0", "1") and fields[3].isascii() and fields[3].isdigit() and not fields[1].isdigit()
    return False


def read_path_pairs(path, text: str | None = None):
    """Read the path-based list (module doc) into a `PairProtocol` (folds 0-based, in the file's numbering order)."""
    from pathlib import Path

    import numpy as np

    from facever.core.errors import InputFileError
    from facever.protocols.pair_protocol import PairProtocol, checked

    path = Path(path)
    if text is None:
        from facever.core.text_files import read_text

        text = read_text(path, what="pairs file")
    first, second, labels, folds, lines = [], [], [], [], []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4 or fields[2] not in ("0", "1") or not (fields[3].isascii() and fields[3].isdigit()) or int(fields[3]) < 1:
            raise InputFileError(path, f"expected 'path_a path_b same(0/1) fold(1..K)', got {line!r}", line=lineno)
        for item in fields[:2]:
            # Paths are relative to the images folder and must stay inside it (as LFW names must).
            problem = name_problem(item)
            if problem is not None:
                raise InputFileError(path, f"{item!r} is not a path inside the images folder (it {problem})",
                                     line=lineno)
        first.append(fields[0])
        second.append(fields[1])
        labels.append(fields[2] == "1")
        folds.append(int(fields[3]))
        lines.append(lineno)
    if not first:
        raise InputFileError(path, "no pairs found")
    numbers = sorted(set(folds))
    index = {f: i for i, f in enumerate(numbers)}
    return checked(PairProtocol(
        name="pairs", first=first, second=second, labels=np.array(labels),
        folds=np.array([index[f] for f in folds]), source=path, line_numbers=lines,
    ))
