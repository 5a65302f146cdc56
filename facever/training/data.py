"""The training data path: identity folders or RecordIO -> uint8 crops -> normalised batches on the device.

Design, for speed (the data path, not the GPU, decides the training time):
- Workers decode to uint8 HWC crops; batches travel to the device as uint8 (4x less than float32)
  in pinned memory, and the device converts, flips and normalises (`to_model_input`), so every
  path (decode per step, memory-mapped cache, device cache) shares one augmentation.
- Randomness lives in the sampler, not in workers: the order of an epoch and each image's flip are
  functions of (seed, epoch) only. Any number of workers gives the same batches, and a resumed run
  skips exactly the batches already done.
- One pass decodes every image once before training: corrupt files are found, counted and listed
  (or fail with `strict`), mixed crop sizes are refused, and with `cache="memmap"` the same pass
  writes the decoded crops into one `.npy` file that later epochs (and later runs) memory-map.

Crop size policy: every training crop must have the same size (mixed sizes are an error naming
examples: they mean unaligned or differently aligned photos). Crops already at the model's input size
are used as they are; others are centre-cropped to the model's aspect ratio and resized, the same
function `facever embed` uses (`facever.core.crop.fit_to_input`): a 112x112 ArcFace crop for a 112x96
model just loses 8 columns on each side, which is exactly SphereFace's alignment (ArcFace's five-point
template is SphereFace's 96x112 one shifted right by 8 pixels: `facever.data_prep.templates`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from facever.core.opencv_guard import opencv
from facever.core.atomic import atomic_path
from facever.data_prep.identity_folder import scan_identity_folder, split_identities
from facever.core.crop import fit_to_input
from facever.core.images import ImageDecodeError, decode_image_bytes_rgb, read_image_rgb
from facever.data_prep.recordio import RecordFile, open_recordio
from facever.core.errors import FaceverError
from facever.core.output_folders import check_folder_path, make_folder

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Training sets


@dataclass
class TrainingSet:
    """Training images and their classes, from an identity folder or a RecordIO file.

    `items` are relative image paths (folders) or record keys (RecordIO); `labels[i]` is the class
    of `items[i]` and `classes[c]` names class c (folder name, or the class number in the .rec
    zero-padded so that names sort like numbers).
    """

    kind: str
    root: Path
    classes: list[str]
    items: list
    labels: np.ndarray
    holdout: dict[str, list] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    loose_files: list[str] = field(default_factory=list)
    records: RecordFile | None = None

    def __len__(self) -> int:
        return len(self.items)

    def describe(self, item) -> str:
        """How to name an item in messages: the image path, or `train.rec:key N`."""
        if self.kind == "recordio":
            return f"{self.records.rec_path}:key {item}"
        return str(self.root / item)

    def read(self, item) -> np.ndarray:
        """Decode one item to HxWx3 uint8 RGB (raises ImageDecodeError naming it)."""
        if self.kind == "recordio":
            data = self.records.read_image_bytes(int(item))
            return decode_image_bytes_rgb(data, name=self.describe(item))
        return read_image_rgb(self.root / item)


def is_recordio(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix == ".rec" or (path.is_dir() and (path / "train.rec").is_file())


def open_training_set(
    data: str | Path, *, min_images: int = 1, holdout_identities: int = 0, seed: int = 0
) -> TrainingSet:
    """Open DATA: an identity folder, a `.rec` file, or a folder holding `train.rec` + `train.idx`."""
    data = Path(data)
    if not data.exists():
        raise FaceverError(f"{data}: no such file or folder")
    if is_recordio(data):
        rec = open_recordio(data)
        width = len(str(max(rec.num_classes - 1, 0)))
        people: dict[str, list[int]] = {f"{c:0{width}d}": [] for c in range(rec.num_classes)}
        for key, label in zip(rec.keys.tolist(), rec.labels.tolist()):
            people[f"{label:0{width}d}"].append(int(key))
        classes, samples, holdout, dropped = split_identities(
            people, min_images=min_images, holdout_identities=holdout_identities, seed=seed, where=str(data)
        )
        return TrainingSet(
            "recordio",
            rec.records.rec_path.parent,
            classes,
            [k for k, _ in samples],
            np.asarray([c for _, c in samples], dtype=np.int64),
            holdout,
            dropped,
            [],
            rec.records,
        )
    folder = scan_identity_folder(data, min_images=min_images, holdout_identities=holdout_identities, seed=seed)
    return TrainingSet(
        "folder",
        folder.root,
        folder.classes,
        [p for p, _ in folder.samples],
        np.asarray([c for _, c in folder.samples], dtype=np.int64),
        folder.holdout,
        folder.dropped,
        folder.loose_files,
    )


# ---------------------------------------------------------------------------------------------
# Crops


def _identity(batch):
    return batch


def _ignore_sigint(_worker_id: int) -> None:
    # Ctrl-C reaches every process of the terminal's group; only the main process should react
    # (it finishes the step and writes a checkpoint), so workers keep serving until told to stop.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _ScanDataset(torch.utils.data.Dataset):
    def __init__(self, tset: TrainingSet, items: Sequence, input_size):
        self.tset, self.items, self.input_size = tset, list(items), tuple(input_size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        try:
            img = self.tset.read(item)
        except (ImageDecodeError, FaceverError) as exc:
            return i, None, (0, 0), str(exc)
        return i, fit_to_input(img, self.input_size), img.shape[:2], None


@dataclass
class ScanResult:
    """One decode pass over a list of items: which decoded, their original sizes, what failed."""

    ok: np.ndarray
    sizes: np.ndarray
    failures: list[tuple[str, str]]


def scan_images(
    tset: TrainingSet,
    items: Sequence,
    input_size: Sequence[int],
    *,
    workers: int = 0,
    sink: np.ndarray | None = None,
    progress: Callable[[int], None] | None = None,
) -> ScanResult:
    """Decode every item once (in `workers` processes); write fitted crops into `sink` rows when given."""
    n = len(items)
    ok = np.zeros(n, dtype=bool)
    sizes = np.zeros((n, 2), dtype=np.int32)
    failures: list[tuple[str, str]] = []
    if workers > 0:
        opencv()  # shut OpenCV's pool down before the workers fork (facever.core.opencv_guard)
    loader = torch.utils.data.DataLoader(
        _ScanDataset(tset, items, input_size),
        batch_size=64,
        num_workers=workers,
        collate_fn=_identity,
        worker_init_fn=_ignore_sigint,
        generator=torch.Generator().manual_seed(0),  # leave the global RNG untouched
    )
    for batch in loader:
        for i, img, size, err in batch:
            if err is not None:
                failures.append((tset.describe(items[i]), err))
                continue
            ok[i] = True
            sizes[i] = size
            if sink is not None:
                sink[i] = img
        if progress is not None:
            progress(len(batch))
    return ScanResult(ok, sizes, failures)


def check_uniform_sizes(tset: TrainingSet, items: Sequence, scan: ScanResult) -> tuple[int, int] | None:
    """The one crop size of the decoded items; FaceverError naming examples when sizes are mixed."""
    good = np.flatnonzero(scan.ok)
    if good.size == 0:
        return None
    uniq, first, counts = np.unique(scan.sizes[good], axis=0, return_index=True, return_counts=True)
    if len(uniq) == 1:
        return int(uniq[0][0]), int(uniq[0][1])
    order = np.argsort(-counts)
    parts = [
        f"{counts[j]} are {uniq[j][1]}x{uniq[j][0]} (e.g. {tset.describe(items[good[first[j]]])})" for j in order[:3]
    ]
    raise FaceverError(
        f"{tset.root}: training crops must all have one size, but {'; '.join(parts)} (width x height); "
        "align the photos first (facever align) or resize them to one size"
    )


# ---------------------------------------------------------------------------------------------
# Preparation: the decode pass and the optional memory-mapped cache


@dataclass
class PreparedData:
    """The usable training samples after the decode pass.

    `cache_path` (when caching) is a uint8 N x H x W x 3 `.npy` of all scanned items; `rows` are
    the rows of the usable ones, aligned with `items`/`labels`.
    """

    tset: TrainingSet
    items: list
    labels: np.ndarray
    rows: np.ndarray
    input_size: tuple[int, int]
    crop_size: tuple[int, int] | None
    failures: list[tuple[str, str]]
    cache_path: Path | None = None


def data_fingerprint(tset: TrainingSet, input_size: Sequence[int]) -> str:
    """Identifies the decoded data: source, item list, file sizes/mtimes and target size."""
    h = hashlib.sha256()
    h.update(json.dumps([tset.kind, str(tset.root.resolve()), list(input_size)]).encode())
    if tset.kind == "recordio":
        st = tset.records.rec_path.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        h.update(np.asarray(tset.items, dtype=np.int64).tobytes())
    else:
        for item in tset.items:
            st = os.stat(tset.root / item)
            h.update(f"{item}\0{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _save_scan(path: Path, scan: ScanResult) -> None:
    buf = io.BytesIO()
    np.savez(buf, ok=scan.ok, sizes=scan.sizes, failures=np.array(json.dumps(scan.failures)))
    with atomic_path(path, suffix=".npz") as tmp:
        tmp.write_bytes(buf.getvalue())


def _load_scan(path: Path) -> ScanResult | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            failures = [tuple(f) for f in json.loads(str(z["failures"]))]
            return ScanResult(z["ok"].astype(bool), z["sizes"].astype(np.int32), failures)
    except (OSError, ValueError, KeyError):
        return None


def prepare_training_data(
    tset: TrainingSet,
    input_size: Sequence[int],
    *,
    cache: str = "none",
    cache_dir: str | Path,
    workers: int = 0,
    strict: bool = False,
    is_main: bool = True,
    barrier: Callable[[], None] = lambda: None,
    progress: Callable[[int], None] | None = None,
) -> PreparedData:
    """Decode every training image once (or reuse an earlier pass), drop/refuse corrupt ones.

    The pass result (and with cache "memmap"/"device" the decoded crops) is stored in `cache_dir`
    under a fingerprint of the data, written atomically by the main process while the others wait
    at `barrier` (which must allow for as long as the pass takes: `DistContext.wait_for_main`).
    Raises FaceverError for corrupt images under `strict`, mixed crop sizes, or no decodable image.
    """
    input_size = (int(input_size[0]), int(input_size[1]))
    cache_dir = check_folder_path(cache_dir, what="cache folder")
    fp = data_fingerprint(tset, input_size)
    scan_path = cache_dir / f"{tset.kind}-{fp}.scan.npz"
    npy_path = cache_dir / f"{tset.kind}-{fp}.npy"
    want_pixels = cache in ("memmap", "device")
    if is_main:
        scan = _load_scan(scan_path) if scan_path.is_file() else None
        if scan is not None and len(scan.ok) != len(tset.items):
            scan = None
        if scan is None or (want_pixels and not npy_path.is_file()):
            make_folder(cache_dir, what="cache folder")
            if want_pixels:
                shape = (len(tset.items), input_size[0], input_size[1], 3)
                log.info("decoding %d images into the cache %s", len(tset.items), npy_path)
                with atomic_path(npy_path) as tmp:
                    sink = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
                    scan = scan_images(tset, tset.items, input_size, workers=workers, sink=sink, progress=progress)
                    sink.flush()
                    del sink
            else:
                scan = scan_images(tset, tset.items, input_size, workers=workers, progress=progress)
            _save_scan(scan_path, scan)
    barrier()
    if not is_main:
        scan = _load_scan(scan_path)
        if scan is None:
            raise FaceverError(f"{scan_path}: the main process did not leave a readable data scan")

    if scan.failures and strict:
        name, why = scan.failures[0]
        raise FaceverError(f"{len(scan.failures)} image(s) cannot be decoded (`strict`), first: {why}", options=('strict',))
    crop_size = check_uniform_sizes(tset, tset.items, scan)
    rows = np.flatnonzero(scan.ok)
    if rows.size == 0:
        raise FaceverError(f"{tset.root}: none of the {len(tset.items)} training images could be decoded")
    return PreparedData(
        tset=tset,
        items=[tset.items[i] for i in rows],
        labels=tset.labels[rows],
        rows=rows,
        input_size=input_size,
        crop_size=crop_size,
        failures=scan.failures,
        cache_path=npy_path if want_pixels else None,
    )


# ---------------------------------------------------------------------------------------------
# Sampling: deterministic epochs, shared by every process and every data path


class EpochBatchSampler:
    """Batches of (index, flip) for one epoch, from (seed, epoch) alone.

    The order is torch's `DistributedSampler` (shuffled with seed + epoch; each of `world_size`
    processes takes its share); each image's flip is a coin drawn from a generator seeded with
    (seed, epoch). Incomplete last batches are dropped (batch norm needs full batches).
    `set_epoch(epoch, skip=k)` starts the next iteration after k batches: how a resume continues.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.sampler = torch.utils.data.DistributedSampler(
            range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
        )
        self.epoch, self.skip = 0, 0
        if len(self) == 0:
            raise FaceverError(
                f"`batch_size` {batch_size} is larger than the {len(self.sampler)} images each of the "
                f"{world_size} process(es) gets per epoch; use a smaller batch", options=('batch_size',))

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        self.sampler.set_epoch(epoch)

    def flips(self, epoch: int) -> np.ndarray:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch * 7_919 + 17) % (2**63))
        return torch.randint(0, 2, (self.n,), generator=g, dtype=torch.int64).numpy().astype(bool)

    def __iter__(self):
        order = list(iter(self.sampler))
        flips = self.flips(self.epoch)
        for b in range(self.skip, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield [(i, bool(flips[i])) for i in idx]

    def epoch_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The batches `__iter__` yields, as two flat arrays (int64 indices, bool flips) of
        `(len(self) - skip) * batch_size` entries: batch k is the k-th slice of `batch_size`."""
        order = np.fromiter(iter(self.sampler), dtype=np.int64)
        idx = order[self.skip * self.batch_size : len(self) * self.batch_size]
        return idx, self.flips(self.epoch)[idx]


# ---------------------------------------------------------------------------------------------
# Datasets returning whole uint8 batches


def _batch(images: np.ndarray, labels, flips) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.as_tensor(np.asarray(labels, dtype=np.int64)),
        torch.as_tensor(np.asarray(flips, dtype=bool)),
    )


class DecodedSamples(torch.utils.data.Dataset):
    """Decodes each image when asked (no cache)."""

    def __init__(self, prep: PreparedData):
        self.tset, self.items, self.labels, self.input_size = prep.tset, prep.items, prep.labels, prep.input_size

    def __len__(self) -> int:
        return len(self.items)

    def _image(self, i: int) -> np.ndarray:
        return fit_to_input(self.tset.read(self.items[i]), self.input_size)

    def __getitem__(self, key):
        i, flip = key
        return self._image(i), int(self.labels[i]), flip

    def __getitems__(self, keys):
        images = np.stack([self._image(i) for i, _ in keys])
        return _batch(images, [self.labels[i] for i, _ in keys], [f for _, f in keys])


class CachedSamples(torch.utils.data.Dataset):
    """Reads crops from the memory-mapped cache (opened lazily in each worker)."""

    def __init__(self, prep: PreparedData):
        self.path, self.rows, self.labels = prep.cache_path, prep.rows, prep.labels
        self._array = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_array"] = None
        return state

    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        i, flip = key
        return np.array(self.array()[self.rows[i]]), int(self.labels[i]), flip

    def __getitems__(self, keys):
        idx = np.asarray([i for i, _ in keys], dtype=np.int64)
        rows = self.rows[idx]
        # Read in file order (kinder to the page cache and disks), then restore the batch order.
        order = np.argsort(rows, kind="stable")
        images = np.empty((len(rows),) + self.array().shape[1:], dtype=np.uint8)
        images[order] = self.array()[rows[order]]
        return _batch(images, self.labels[idx], [f for _, f in keys])


def make_loader(
    prep: PreparedData,
    sampler: EpochBatchSampler,
    *,
    workers: int,
    pin_memory: bool,
    prefetch: int = 4,
) -> torch.utils.data.DataLoader:
    """A DataLoader yielding (uint8 N x H x W x 3, labels, flips) batches in the sampler's order."""
    dataset = CachedSamples(prep) if prep.cache_path is not None else DecodedSamples(prep)
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(prefetch_factor=prefetch, persistent_workers=True)
        opencv()  # shut OpenCV's pool down before the workers fork (facever.core.opencv_guard)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=_identity,
        worker_init_fn=_ignore_sigint,
        pin_memory=pin_memory,
        # Its own generator: creating an iterator must not consume the global RNG (resume exactness).
        generator=torch.Generator().manual_seed(sampler.seed),
        **kwargs,
    )


class DeviceBatches:
    """The whole decoded training set held on the device; batches are gathered there.

    CASIA-WebFace at 112x96 is ~16 GB of uint8: it fits one large GPU and removes the CPU from
    the loop entirely. Same sampler, so the same batches as the other paths.
    """

    def __init__(self, prep: PreparedData, device: torch.device, chunk: int = 4096):
        source = np.load(prep.cache_path, mmap_mode="r")
        rows = prep.rows
        shape = (len(rows),) + source.shape[1:]
        try:
            self.images = torch.empty(shape, dtype=torch.uint8, device=device)
        except torch.OutOfMemoryError:
            need = float(np.prod(shape)) / 2**30
            raise FaceverError(
                f"`cache` device: the decoded training set needs {need:.1f} GiB on {device}, which does not fit; "
                "use `cache` memmap", options=('cache',)) from None
        for start in range(0, len(rows), chunk):
            part = np.ascontiguousarray(source[rows[start : start + chunk]])
            self.images[start : start + len(part)].copy_(torch.from_numpy(part))
        self.labels = torch.as_tensor(prep.labels, device=device)
        self.device = device

    def epoch(self, sampler: EpochBatchSampler):
        """The epoch's batches (after the sampler's `skip`), gathered on the device.

        The epoch's indices and flips go to the device once, in two copies; each step slices them.
        Building them per step from Python lists would cost a blocking host-to-device copy (and a
        stream synchronisation) every step, stalling the fastest data path.
        """
        idx, flips = sampler.epoch_arrays()
        idx_d = torch.from_numpy(idx).to(self.device)
        flips_d = torch.from_numpy(flips).to(self.device)
        bs = sampler.batch_size
        for start in range(0, len(idx), bs):
            batch = idx_d[start : start + bs]
            yield self.images[batch], self.labels[batch], flips_d[start : start + bs]


def to_model_input(
    images: torch.Tensor,
    flips: torch.Tensor | None,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    channels_last: bool = False,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """uint8 N x H x W x 3 (on the device) -> float N x 3 x H x W, flipped where `flips`, normalised.

    `augment` (training only) maps the flipped batch in [0, 1] to its augmented copy before normalising.

    `mean`/`std` are 1 x 3 x 1 x 1 float tensors on the device. The NHWC -> NCHW permute is free and
    already channels_last in memory; contiguous NCHW is made only when asked.
    """
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    if flips is not None:
        x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
    if augment is not None:
        x = augment(x)
    x = (x - mean) / std
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=fmt)
