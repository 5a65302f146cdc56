"""Identity-folder training sets: class map, small/empty identities, held-out people, corrupt files,
mixed crop sizes, and the decode pass / memory-mapped cache the trainer runs over them."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facever.data_prep.identity_folder import scan_identity_folder
from facever.core.errors import FaceverError
from facever.training.data import open_training_set, prepare_training_data
from facever.training.validation import holdout_pairs


def _img(path: Path, seed: int = 0, size=(20, 16)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(path)


def _tree(root: Path, counts: dict[str, int], size=(20, 16)) -> Path:
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _img(root / name / f"{i}.png", seed=zlib.crc32(f"{name}/{i}".encode()), size=size)
    return root


def test_class_map_sorted_and_small_identities_dropped(tmp_path):
    root = _tree(tmp_path / "d", {"zoe": 3, "Adam": 2, "bob": 1, "empty": 0, "carl": 4})
    _img(root / "loose.png")
    (root / ".hidden").mkdir()
    _img(root / "carl" / "sub" / "deep.png")
    folder = scan_identity_folder(root, min_images=2)
    assert folder.classes == ["Adam", "carl", "zoe"]  # plain string order: uppercase first
    assert folder.dropped == {"bob": 1, "empty": 0}
    assert folder.loose_files == ["loose.png"]
    by_class = {}
    for path, cls in folder.samples:
        by_class.setdefault(folder.classes[cls], []).append(path)
    assert len(by_class["carl"]) == 5 and "carl/sub/deep.png" in by_class["carl"]
    assert [p for p, _ in folder.samples] == sorted(p for p, _ in folder.samples)
    # min_images=1 keeps the one-image identity but never an empty folder.
    assert scan_identity_folder(root).classes == ["Adam", "bob", "carl", "zoe"]


def test_holdout_is_seeded_and_prefers_pairable_people(tmp_path):
    root = _tree(tmp_path / "d", {f"p{i}": (1 if i < 3 else 3) for i in range(10)})
    a = scan_identity_folder(root, holdout_identities=3, seed=1)
    b = scan_identity_folder(root, holdout_identities=3, seed=1)
    assert a.holdout == b.holdout and len(a.holdout) == 3
    choices = {tuple(scan_identity_folder(root, holdout_identities=3, seed=s).holdout) for s in range(6)}
    assert len(choices) > 1  # the seed really decides who is held out
    assert all(len(v) == 3 for v in a.holdout.values())  # one-image people are not chosen first
    assert not set(a.holdout) & set(a.classes)
    assert len(a.classes) == 7


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(FaceverError, match="not a folder"):
        scan_identity_folder(tmp_path / "missing")
    _img(tmp_path / "flat" / "a.png")
    with pytest.raises(FaceverError, match="no identity sub-folders"):
        scan_identity_folder(tmp_path / "flat")
    root = _tree(tmp_path / "one", {"a": 3, "b": 1})
    with pytest.raises(FaceverError, match=r"1 training identities left \(1 dropped with fewer than 2 images\)"):
        scan_identity_folder(root, min_images=2)
    with pytest.raises(FaceverError, match="`min_images` must be 1 or more"):
        scan_identity_folder(root, min_images=0)


def test_corrupt_images_are_counted_listed_skipped_or_fail_strict(tmp_path):
    root = _tree(tmp_path / "d", {"a": 3, "b": 3})
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "b" / "text.png").write_text("hello")
    tset = open_training_set(root)
    assert len(tset.items) == 8
    prep = prepare_training_data(tset, (20, 16), cache="none", cache_dir=tmp_path / "c")
    assert len(prep.items) == 6 and len(prep.failures) == 2
    names = sorted(Path(n).name for n, _ in prep.failures)
    assert names == ["broken.jpg", "text.png"]
    assert all("a/broken.jpg" not in item for item in prep.items)
    with pytest.raises(FaceverError, match=r"2 image\(s\) cannot be decoded \(`strict`\)"):
        prepare_training_data(tset, (20, 16), cache="none", cache_dir=tmp_path / "c", strict=True)


def test_mixed_crop_sizes_are_refused_with_examples(tmp_path):
    root = _tree(tmp_path / "d", {"a": 3, "b": 2})
    _img(root / "b" / "big.png", size=(40, 40))
    tset = open_training_set(root)
    with pytest.raises(FaceverError, match=r"must all have one size.*5 are 16x20.*1 are 40x40 \(e\.g\. .*big\.png\)"):
        prepare_training_data(tset, (20, 16), cache="none", cache_dir=tmp_path / "c")


def test_memmap_cache_holds_fitted_crops_and_is_reused(tmp_path):
    root = _tree(tmp_path / "d", {"a": 2, "b": 2}, size=(112, 112))
    tset = open_training_set(root)
    prep = prepare_training_data(tset, (112, 96), cache="memmap", cache_dir=tmp_path / "c", workers=0)
    arr = np.load(prep.cache_path, mmap_mode="r")
    assert arr.shape == (4, 112, 96, 3) and arr.dtype == np.uint8
    # A 112x112 crop for a 112x96 model loses 8 columns on each side (the ArcFace -> SphereFace template).
    original = np.asarray(Image.open(root / tset.items[0]).convert("RGB"))
    assert np.array_equal(arr[prep.rows[0]], original[:, 8:104])
    mtime = prep.cache_path.stat().st_mtime_ns
    again = prepare_training_data(tset, (112, 96), cache="memmap", cache_dir=tmp_path / "c")
    assert again.cache_path == prep.cache_path and prep.cache_path.stat().st_mtime_ns == mtime
    # No temporary files left next to the cache.
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".")]


def test_holdout_pairs_are_balanced_and_folded():
    holdout = {f"p{i}": [f"p{i}/{j}.png" for j in range(4)] for i in range(5)} | {"single": ["single/0.png"]}
    proto = holdout_pairs(holdout, seed=0)
    labels = proto.labels
    assert labels.sum() == 30 and (~labels).sum() == 30  # 5 people x C(4,2) positives, as many negatives
    owner = lambda p: p.split("/")[0]  # noqa: E731
    for a, b, same in zip(proto.first, proto.second, labels):
        assert (owner(a) == owner(b)) == bool(same) and a != b
    assert len({tuple(sorted(p)) for p in zip(proto.first, proto.second)}) == 60  # no duplicate pair
    for fold in range(10):
        in_fold = labels[proto.folds == fold]
        assert in_fold.any() and (~in_fold).any()
    assert holdout_pairs(holdout, seed=0).first == proto.first  # deterministic
    with pytest.raises(FaceverError, match="no person with two images"):
        holdout_pairs({"a": ["a/1"], "b": ["b/1"]})
