"""Pair lists of the LFW variants: FGLFW (fine-grained LFW, a.k.a. SLLFW), CALFW and CPLFW.

All three lists hold one image per line and two lines per pair, with no header:

- FGLFW (`pair_FGLFW.txt`): `Name/Name_0001.jpg`, paths relative to LFW's image root. Third-party
  readers disagree on the order of the same/different blocks, so the label of each pair is derived from
  the two names (same person iff same name). Folds are consecutive blocks of 600 pairs in file order
  (LFW's folds); each must hold as many same as different pairs (300 + 300), otherwise the list's block
  structure contradicts its labels and it is refused.
- CALFW / CPLFW (`pairs_CALFW.txt`, `pairs_CPLFW.txt`): `filename token`, file names in one flat folder
  (`Name_0001.jpg` for CALFW, `Name_1.jpg` for CPLFW). Both lines of a pair carry the same token: a
  positive pair carries its fold, 1..10, a negative pair 0. The official files list the 3000 positives
  first (300 per token), then the 3000 negatives, and do not say which fold a negative belongs to.

  Fold rule (ours, documented because the list does not encode it): a positive pair goes to fold
  `token - 1`; the negatives, in file order, are cut into as many equal consecutive blocks as there are
  positive folds, block j -> fold j (so negatives 1..300 -> fold 0, 301..600 -> fold 1, ...). Each fold
  must then hold as many negatives as positives. The label is the token (non-zero = same) and must
  agree with the two names, otherwise the line is refused.

`ext` replaces the extension written in the list (images re-encoded as `.png` after alignment, say),
like the LFW reader's option.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import numpy as np

from facever.protocols.pair_protocol import PairProtocol, checked
from facever.core.errors import FaceverError, InputFileError
from facever.core.paths import name_problem
from facever.core.text_files import read_text

FGLFW_PAIRS_PER_FOLD = 600
from facever.core.settings import FGLFW_VARIANTS as VARIANTS  # the pair lists `read_variant_pairs` reads

# `Name_0001` (LFW, CALFW) or `Name_1` (CPLFW): the person is everything before the last `_<digits>`.
_PERSON_RE = re.compile(r"^(?P<person>.+?)_(?P<number>[0-9]+)$")


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty lines with their 1-based numbers; a blank line inside the list is an error."""
    raw = read_text(path, what="pair list").splitlines()
    # Trailing blank lines are an editor artefact; a blank line between pairs shifts every later pair.
    while raw and not raw[-1].strip():
        raw.pop()
    lines = []
    for number, line in enumerate(raw, start=1):
        if not line.strip():
            raise InputFileError(path, "blank line inside the pair list (two image lines per pair)", line=number)
        lines.append((number, line.strip()))
    if not lines:
        raise InputFileError(path, "the pair list is empty")
    if len(lines) % 2:
        raise InputFileError(
            path, f"odd number of image lines ({len(lines)}): the last image has no partner", line=lines[-1][0]
        )
    return lines


def _with_ext(name: str, ext: str | None) -> str:
    if not ext:
        return name
    ext = ext if ext.startswith(".") else f".{ext}"
    return str(PurePosixPath(name).with_suffix(ext))


def person_of(image: str) -> str | None:
    """The person an LFW-style image name belongs to: its folder, else the file stem minus `_<number>`."""
    p = PurePosixPath(image)
    if len(p.parts) > 1:
        return p.parts[-2]
    m = _PERSON_RE.match(p.stem)
    return m.group("person") if m else None


def _check_image_name(path: Path, line: int, image: str) -> None:
    p = PurePosixPath(image)
    problem = name_problem(image)
    if problem is not None:
        raise InputFileError(path, f"image path {image!r} must be relative, inside the images folder (it {problem})",
                             line=line)
    if not p.suffix:
        raise InputFileError(path, f"image path {image!r} has no extension", line=line)
    if person_of(image) is None:
        raise InputFileError(
            path, f"cannot tell the person from {image!r} (expected Name/Name_0001.jpg or Name_0001.jpg)", line=line
        )


def read_fglfw_pairs(
    path: str | Path,
    *,
    ext: str | None = None,
    pairs_per_fold: int = FGLFW_PAIRS_PER_FOLD,
    name: str = "fglfw",
) -> PairProtocol:
    """Read an FGLFW pair list (`Name/Name_0001.jpg` per line, two lines per pair) into a `PairProtocol`.

    Labels come from the names (same iff the two images are in the same person's folder); fold k is
    pairs `k*pairs_per_fold .. (k+1)*pairs_per_fold - 1` in file order and must hold equally many same and
    different pairs. Raises `InputFileError` naming the file and line for anything malformed.
    """
    path = Path(path)
    if pairs_per_fold < 2 or pairs_per_fold % 2:
        raise FaceverError(f"pairs per fold must be an even number of at least 2, got {pairs_per_fold}")
    lines = _read_lines(path)
    first, second, labels, line_numbers = [], [], [], []
    for (n1, a), (n2, b) in zip(lines[0::2], lines[1::2]):
        for n, image in ((n1, a), (n2, b)):
            if len(image.split()) != 1:
                raise InputFileError(
                    path, f"expected one image path per line, got {len(image.split())} fields: {image!r}", line=n
                )
            _check_image_name(path, n, image)
        first.append(_with_ext(a, ext))
        second.append(_with_ext(b, ext))
        labels.append(person_of(a) == person_of(b))
        line_numbers.append(n1)
    n_pairs = len(first)
    if n_pairs % pairs_per_fold:
        raise InputFileError(
            path,
            f"{n_pairs} pairs is not a whole number of folds of {pairs_per_fold} pairs "
            f"(FGLFW has 10 folds of 300 same + 300 different)",
        )
    labels_arr = np.array(labels, dtype=bool)
    folds = np.arange(n_pairs) // pairs_per_fold
    half = pairs_per_fold // 2
    for k in range(n_pairs // pairs_per_fold):
        n_same = int(labels_arr[folds == k].sum())
        if n_same != half:
            start = k * pairs_per_fold
            raise InputFileError(
                path,
                f"fold {k + 1} (pairs {start + 1}-{start + pairs_per_fold}) holds {n_same} same-person and "
                f"{pairs_per_fold - n_same} different-person pairs by their names, expected {half} + {half}: "
                "the list's block structure is inconsistent with its labels",
                line=line_numbers[start],
            )
    return checked(PairProtocol(name, first, second, labels_arr, folds, source=path, line_numbers=line_numbers))


def read_token_pairs(path: str | Path, *, ext: str | None = None, name: str = "calfw") -> PairProtocol:
    """Read a CALFW/CPLFW list (`filename token` per line, two lines per pair) into a `PairProtocol`.

    Label: token != 0 (checked against the names). Fold: `token - 1` for positives; negatives in file
    order are cut into equal consecutive blocks, one per positive fold (see the module docstring).
    """
    path = Path(path)
    lines = _read_lines(path)
    first, second, tokens, line_numbers = [], [], [], []
    for (n1, a), (n2, b) in zip(lines[0::2], lines[1::2]):
        pair = []
        for n, line in ((n1, a), (n2, b)):
            fields = line.split()
            if len(fields) != 2:
                raise InputFileError(path, f"expected `filename token`, got {len(fields)} fields: {line!r}", line=n)
            image, token = fields
            if not (token.isascii() and token.isdigit()):  # int() also takes "²" and other scripts' digits
                raise InputFileError(path, f"token {token!r} is not a non-negative integer", line=n)
            _check_image_name(path, n, image)
            pair.append((image, int(token)))
        (a_img, a_tok), (b_img, b_tok) = pair
        if a_tok != b_tok:
            raise InputFileError(
                path, f"the two lines of a pair carry different tokens ({a_tok} on line {n1}, {b_tok})", line=n2
            )
        same_by_name = person_of(a_img) == person_of(b_img)
        if same_by_name != (a_tok != 0):
            what = "the same person" if same_by_name else "different people"
            raise InputFileError(
                path, f"token {a_tok} says {'same' if a_tok else 'different'} but the names show {what}", line=n1
            )
        first.append(_with_ext(a_img, ext))
        second.append(_with_ext(b_img, ext))
        tokens.append(a_tok)
        line_numbers.append(n1)

    tokens_arr = np.array(tokens, dtype=np.int64)
    labels = tokens_arr != 0
    positive_folds = np.unique(tokens_arr[labels])
    if positive_folds.size == 0:
        raise InputFileError(path, "no positive pairs (token 1..10): not a CALFW/CPLFW list")
    k = int(positive_folds.size)
    if not np.array_equal(positive_folds, np.arange(1, k + 1)):
        raise InputFileError(path, f"positive tokens must be the folds 1..{k}, got {positive_folds.tolist()}")
    neg_rows = np.flatnonzero(~labels)
    pos_per_fold = np.bincount(tokens_arr[labels] - 1, minlength=k)
    if neg_rows.size % k or np.any(pos_per_fold != neg_rows.size // k):
        raise InputFileError(
            path,
            f"{int(labels.sum())} positive pairs over {k} folds ({pos_per_fold.tolist()} per fold) and "
            f"{neg_rows.size} negatives cannot form folds of equally many same and different pairs",
        )
    folds = np.empty(len(tokens), dtype=np.int64)
    folds[labels] = tokens_arr[labels] - 1
    folds[neg_rows] = np.arange(neg_rows.size) // (neg_rows.size // k)
    return checked(PairProtocol(name, first, second, labels, folds, source=path, line_numbers=line_numbers))


def read_variant_pairs(path: str | Path, *, protocol: str = "fglfw", ext: str | None = None, **kwargs) -> PairProtocol:
    """Dispatch on the benchmark name: "fglfw" (paths only) or "calfw"/"cplfw" (filename + token)."""
    protocol = protocol.lower()
    if protocol == "fglfw":
        return read_fglfw_pairs(path, ext=ext, **kwargs)
    if protocol in ("calfw", "cplfw"):
        return read_token_pairs(path, ext=ext, name=protocol)
    raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(VARIANTS)}")
