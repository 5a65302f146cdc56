"""Verification accuracy during training, with the same engine as `facever eval-lfw`.

Sources of pairs: an LFW-style `pairs.txt` with its image folder (`--val-pairs`/`--val-images`), an
InsightFace `.bin` (`--val-bin`), or pairs generated among the identities held out of training
(`--holdout-identities`). The validation images are decoded and fitted to the model's input once (the
crop policy, `fit_to_input`); each validation embeds them through the one forward loop of `facever
embed` (flip and precision by the same defaults, `facever.core.settings`) and runs the 10-fold
protocol. So `facever eval-lfw` with its defaults on the saved model.pt, the same pairs and images
prints the same accuracy; metrics.jsonl records the flip and AMP used.
"""

from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from facever.core.images import ImageDecodeError
from facever.protocols.pair_protocol import PairProtocol
from facever.core.embeddings_file import Embeddings
from facever.core.errors import FaceverError
from facever.core.settings import DEFAULT_AMP, DEFAULT_FLIP, EMBED_BATCH_SIZE

log = logging.getLogger(__name__)


def holdout_pairs(
    holdout: dict[str, Sequence],
    *,
    seed: int = 0,
    max_pairs: int = 6000,
    n_folds: int = 10,
    name: str = "holdout",
) -> PairProtocol:
    """Balanced verification pairs among held-out people, split into `n_folds` folds.

    Same-person pairs: every within-identity pair (a random subset when there are more than
    `max_pairs / 2`); as many different-person pairs drawn at random without repetition. Items are
    returned as strings (record keys become their decimal text). Folds deal same and different
    pairs round-robin so every fold holds both.
    """
    rng = random.Random(seed)
    people = {n: [str(i) for i in items] for n, items in sorted(holdout.items()) if items}
    positives = [p for items in people.values() for p in itertools.combinations(items, 2)]
    if not positives:
        raise FaceverError("held-out identities have no person with two images: no same-person pair to validate on")
    if len(people) < 2:
        raise FaceverError("validation needs at least two held-out identities")
    half = max_pairs // 2
    if len(positives) > half:
        positives = rng.sample(positives, half)
    owner = {item: n for n, items in people.items() for item in items}
    everything = sorted(owner)
    n_neg_possible = (len(everything) ** 2 - sum(len(v) ** 2 for v in people.values())) // 2
    n_neg = min(len(positives), n_neg_possible)
    negatives: set[tuple[str, str]] = set()
    while len(negatives) < n_neg:
        a, b = rng.sample(everything, 2)
        if owner[a] != owner[b]:
            negatives.add((a, b) if a < b else (b, a))
    negatives_list = sorted(negatives)
    rng.shuffle(negatives_list)
    rng.shuffle(positives)
    if min(len(positives), len(negatives_list)) < n_folds:
        n_folds = max(2, min(len(positives), len(negatives_list)))
    pairs = [(a, b, True, i % n_folds) for i, (a, b) in enumerate(positives)]
    pairs += [(a, b, False, i % n_folds) for i, (a, b) in enumerate(negatives_list)]
    pairs.sort(key=lambda p: (p[3], not p[2]))
    return PairProtocol(
        name,
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        np.array([p[2] for p in pairs], dtype=bool),
        np.array([p[3] for p in pairs], dtype=np.int64),
    )


def embed_uint8(
    model: torch.nn.Module,
    images: np.ndarray,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    input_size: Sequence[int] | None = None,
    batch_size: int = EMBED_BATCH_SIZE,
    flip: str = DEFAULT_FLIP,
    amp: str = DEFAULT_AMP,
) -> tuple[np.ndarray, dict]:
    """Embeddings (float32 N x D) of uint8 N x H x W x 3 crops, and the forward loop's settings.

    The backbone is wrapped as an `EmbeddingModel` and run through the one forward loop
    (`facever.embedding.extract.embed_pixels`), on a copy so that evaluation formats (eval mode,
    channels_last, folded batch norms) never touch the module being trained: the numbers are those
    `facever embed` / `facever eval-lfw` get from the saved `model.pt`.
    """
    import copy

    from facever.embedding.extract import array_batches, embed_pixels
    from facever.embedding.loading import EmbeddingModel

    size = tuple(int(v) for v in (input_size or images.shape[1:3]))
    frozen = EmbeddingModel(
        module=copy.deepcopy(model), model_id="validation", input_size=size,
        mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),  # type: ignore[arg-type]
    )
    return embed_pixels(frozen, array_batches(images, batch_size), flip=flip, device=device, amp=amp,
                        count=len(images))


class Validator:
    """Pairs plus their decoded images; `run(model, ...)` returns the verification result.

    `settings` holds what the last run used (flip, AMP, ...) for metrics.jsonl.
    """

    def __init__(self, protocol: PairProtocol, names: list[str], images: np.ndarray, *, skipped: list[str] = ()):
        self.protocol, self.names, self.images, self.skipped = protocol, names, images, list(skipped)
        self.settings: dict = {}

    @property
    def name(self) -> str:
        return self.protocol.name

    def run(self, model, *, mean, std, device, amp: str = DEFAULT_AMP):
        from facever.verification.evaluate import evaluate_protocol

        emb, self.settings = embed_uint8(model, self.images, mean=mean, std=std, device=device, amp=amp)
        return evaluate_protocol(
            self.protocol, Embeddings(list(self.names), emb), allow_missing=bool(self.skipped),
            embeddings_source="the validation images",
        )


def _decode_all(names: list[str], read, input_size, *, strict: bool = False) -> tuple[list[str], np.ndarray, list[str]]:
    """Decode the validation images. `strict` (a user's pairs file or .bin): one unreadable image is an
    error, as in `eval-lfw`, so validation scores exactly the protocol the file defines."""
    from facever.core.crop import fit_to_input

    kept, arrays, skipped = [], [], []
    for name in names:
        try:
            arrays.append(fit_to_input(read(name), tuple(input_size)))
            kept.append(name)
        except (ImageDecodeError, FaceverError) as exc:
            skipped.append(str(exc))
    if not arrays:
        raise FaceverError(f"none of the {len(names)} validation images could be read; first: {skipped[0]}")
    if strict and skipped:
        raise FaceverError(f"{len(skipped)} of {len(names)} validation images cannot be read (first: {skipped[0]}); "
                           "validation scores every pair of its protocol, as eval-lfw does")
    return kept, np.stack(arrays), skipped


def check_validation_inputs(config) -> None:
    """Refuse a bad validation pairs file, missing validation images or a bad `.bin` before the run
    writes anything (the images are decoded later, by `build_validator`)."""
    if config.val_pairs:
        from facever.protocols.lfw import read_lfw_pairs

        protocol = read_lfw_pairs(config.val_pairs, ext=config.val_ext)
        root = Path(config.val_images)
        if not root.is_dir():
            raise FaceverError(f"{root}: the validation image folder is not a folder")
        missing = [n for n in protocol.items() if not (root / n).is_file()]
        if missing:
            raise FaceverError(f"{len(missing)} of {len(protocol.items())} validation images cannot be read "
                               f"(first: {root / missing[0]}: no such file); validation scores every pair of its "
                               "protocol, as eval-lfw does")
    if config.val_bin:
        from facever.protocols.insightface_bin import bin_protocol, load_bin

        _, issame = load_bin(config.val_bin)
        bin_protocol(issame, name=Path(config.val_bin).stem, source=config.val_bin)


def build_validator(config, tset, input_size: Sequence[int]) -> Validator | None:
    """The validator the config asks for (pairs file, .bin, or held-out identities), or None."""
    if config.val_pairs:
        from facever.core.images import read_image_rgb
        from facever.protocols.lfw import read_lfw_pairs

        protocol = read_lfw_pairs(config.val_pairs, ext=config.val_ext)
        root = Path(config.val_images)
        if not root.is_dir():
            raise FaceverError(f"`val_images` {root}: not a folder", options=('val_images',))
        names, images, skipped = _decode_all(protocol.items(), lambda n: read_image_rgb(root / n), input_size,
                                             strict=True)
        return Validator(protocol, names, images, skipped=skipped)
    if config.val_bin:
        from facever.protocols.insightface_bin import bin_protocol, image_names, load_bin
        from facever.core.images import decode_image_bytes_rgb

        blobs, issame = load_bin(config.val_bin)
        protocol = bin_protocol(issame, name=Path(config.val_bin).stem, source=config.val_bin)
        by_name = dict(zip(image_names(len(blobs)), blobs))
        names, images, skipped = _decode_all(
            protocol.items(), lambda n: decode_image_bytes_rgb(by_name[n], name=f"{config.val_bin}:image {n}"), input_size,
            strict=True,
        )
        return Validator(protocol, names, images, skipped=skipped)
    if config.holdout_identities:
        protocol = holdout_pairs(tset.holdout, seed=config.seed)
        if tset.kind == "recordio":
            read = lambda n: tset.read(int(n))  # noqa: E731
        else:
            read = tset.read
        names, images, skipped = _decode_all(protocol.items(), read, input_size)
        return Validator(protocol, names, images, skipped=skipped)
    return None
