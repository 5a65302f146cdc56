"""Identity-folder training sets ("CASIA-style"): one sub-folder per person holding aligned crops.

    DATA/
      Aaron_Eckhart/001.jpg
      Aaron_Eckhart/002.jpg
      Abbas_Kiarostami/...

The class of a person is the position of its folder name in sorted order (plain string order, the
same on every machine), after dropping people with too few images and the held-out people. That
class map is saved with the trained model. Images anywhere below a person's folder belong to it;
image files directly in DATA/ belong to nobody and are reported as loose files.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from facever.core.images import IMAGE_EXTENSIONS
from facever.core.errors import FaceverError


@dataclass
class IdentityFolder:
    """A scanned identity folder.

    Attributes:
        root: the folder.
        classes: identity names of the training classes, class i = classes[i] (sorted).
        samples: (relative image path, class) of every training image, sorted by path.
        holdout: identity name -> relative image paths, the people held out for validation.
        dropped: identity name -> image count, people with fewer than `min_images` images
            (an empty folder counts 0).
        loose_files: image files directly in `root`, outside any person's folder (ignored).
    """

    root: Path
    classes: list[str]
    samples: list[tuple[str, int]]
    holdout: dict[str, list[str]] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    loose_files: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _images_below(folder: Path, root: Path) -> list[str]:
    found = []
    for p in folder.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            found.append(rel.as_posix())
    return sorted(found)


def scan_identity_folder(
    root: str | Path,
    *,
    min_images: int = 1,
    holdout_identities: int = 0,
    seed: int = 0,
) -> IdentityFolder:
    """List the training images of an identity folder and build the class map.

    Args:
        root: the folder with one sub-folder per person.
        min_images: drop people with fewer images than this (empty folders are always dropped).
        holdout_identities: this many people (chosen at random with `seed` among those kept,
            preferring people with two images or more so that positive pairs exist) are removed
            from training and returned in `holdout` for validation.
        seed: seeds the choice of held-out people (the same seed gives the same choice).

    Raises FaceverError when the folder is missing, holds no person folder, or fewer than two
    training identities remain (softmax needs two classes).
    """
    root = Path(root)
    if not root.is_dir():
        raise FaceverError(f"{root}: not a folder (expected one sub-folder of images per person)")
    people: dict[str, list[str]] = {}
    loose: list[str] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            people[entry.name] = _images_below(entry, root)
        elif entry.suffix.lower() in IMAGE_EXTENSIONS:
            loose.append(entry.name)
    if not people:
        raise FaceverError(f"{root}: no identity sub-folders (expected DATA/<person>/<image>)")

    classes, samples, holdout, dropped = split_identities(
        people, min_images=min_images, holdout_identities=holdout_identities, seed=seed, where=str(root)
    )
    return IdentityFolder(root, classes, samples, holdout, dropped, loose)


def split_identities(
    people: dict[str, list],
    *,
    min_images: int = 1,
    holdout_identities: int = 0,
    seed: int = 0,
    where: str = "data",
) -> tuple[list[str], list[tuple[object, int]], dict[str, list], dict[str, int]]:
    """Drop small identities, hold some out, and number the rest: the class map of any training set.

    `people` maps an identity name to its items (image paths, record keys). Returns
    `(classes, samples, holdout, dropped)`: class i is `classes[i]` (sorted names), `samples` lists
    (item, class) sorted by item, `holdout` maps held-out names to their items, `dropped` maps the
    names with fewer than `min_images` items to their counts.
    """
    if min_images < 1:
        raise FaceverError(f"`min_images` must be 1 or more, got {min_images}", options=('min_images',))
    if holdout_identities < 0:
        raise FaceverError(f"`holdout_identities` must be 0 or more, got {holdout_identities}", options=('holdout_identities',))
    dropped = {name: len(items) for name, items in people.items() if len(items) < min_images}
    kept = sorted(name for name in people if name not in dropped)

    holdout: dict[str, list] = {}
    if holdout_identities:
        if holdout_identities > len(kept) - 2:
            raise FaceverError(
                f"`holdout_identities` {holdout_identities}: only {len(kept)} identities have "
                f"{min_images}+ images; at least two must remain for training", options=('holdout_identities',))
        rng = random.Random(seed)
        # People with 2+ images first: a held-out person with one image gives no positive pair.
        pairable = [n for n in kept if len(people[n]) >= 2]
        single = [n for n in kept if len(people[n]) < 2]
        rng.shuffle(pairable)
        rng.shuffle(single)
        for name in sorted((pairable + single)[:holdout_identities]):
            holdout[name] = list(people[name])

    classes = [name for name in kept if name not in holdout]
    if len(classes) < 2:
        detail = f" ({len(dropped)} dropped with fewer than {min_images} images)" if dropped else ""
        raise FaceverError(f"{where}: {len(classes)} training identities left{detail}; softmax training needs at least 2")
    samples = sorted((item, cls) for cls, name in enumerate(classes) for item in people[name])
    return classes, samples, holdout, dropped
