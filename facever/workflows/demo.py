"""The whole pipeline in a few minutes on a CPU: data -> two trained models -> 10-fold verification -> ensemble.

`run_demo(out_dir)` (behind `facever demo` and `make demo`):

1. data: with no `data`, a SYNTHETIC identity dataset is generated from the seed
   (`facever.data_prep.synthetic_faces`: drawn cartoon faces with per-image pose, expression,
   lighting and noise); with `data=DIR`, a real identity folder (one sub-folder per person) is read.
   Identities are split into training and held-out test people (no test person is ever trained on),
   and every image is written as a PNG at the model's input size under
   `OUT/data/<name>/{train,test}/<person>/<person>_0001.png` (LFW's naming).
2. pairs: `OUT/pairs.txt`, 10 folds of same/different pairs among the test people, in LFW's format.
3. training: the same small network (a narrow SphereFace-20 at 48x40) trained twice on the same
   data and seed, once with Noisy Softmax and once with plain softmax (`facever.training`), into
   `OUT/models/<name>/model.pt`. No validation during training: nothing is selected on test people.
4. embedding of the test images with each model, 10-fold evaluation of each, and their ensemble
   (`facever.embedding.ensemble`: the fused cosine is the mean of the two models' cosines).
5. `OUT/report.json` (the ensemble report: `models.<name>` and `ensemble`, each with eval-lfw's keys,
   plus a `demo` block saying what the data was) and `OUT/roc.png` (every curve).

Everything is a function of the seed. Re-running with the same settings reuses the data and any
finished model (their recipe is recorded next to them) and resumes an interrupted training run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from facever.core.errors import FaceverError
from facever.core.settings import DEFAULT_ALPHA2, DEFAULT_FLIP

log = logging.getLogger(__name__)

DATA_FORMAT = "facever-demo-data"
MODEL_NAMES = ("noisy-softmax", "softmax")


class DemoInterrupted(FaceverError):
    """`stop_requested()` became true during training; a checkpoint was saved and a rerun resumes."""


SYNTHETIC_NOTE = ("SYNTHETIC data: procedurally drawn cartoon faces generated from the seed; results show that "
                  "the pipeline works, not how well a model recognises real faces")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and training settings of one demo run (`default_settings` picks them)."""

    input_size: tuple[int, int] = (48, 40)
    synthetic_identities: int = 200
    synthetic_images: int = 10
    test_fraction: float = 0.25
    arch: str = "mobilefacenet"
    width: int = 16
    embedding_dim: int = 128
    # Training length as images seen (epochs = this / training images, at least `min_epochs`), so a
    # small real folder gets more epochs than the larger synthetic set for about the same time.
    images_seen: int = 7500
    min_epochs: int = 2
    max_epochs: int = 60
    batch_size: int = 64
    lr: float = 0.1
    warmup_epochs: float = 0.5
    alpha2: float = DEFAULT_ALPHA2
    pairs_per_fold: int = 100
    flip: str = DEFAULT_FLIP

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["input_size"] = list(self.input_size)
        return data


def default_settings(*, quick: bool = False) -> DemoSettings:
    """The demo's settings: the full demo (a few minutes on 2 cores) or `quick` (tests, well under a minute)."""
    if quick:
        return DemoSettings(synthetic_identities=80, synthetic_images=8, images_seen=1920, pairs_per_fold=40)
    return DemoSettings()


def epochs_for(settings: DemoSettings, train_images: int) -> int:
    """Epochs giving about `settings.images_seen` training images, within [min_epochs, max_epochs]."""
    epochs = int(round(settings.images_seen / max(1, train_images)))
    return max(settings.min_epochs, min(settings.max_epochs, epochs))


@dataclass(frozen=True)
class DemoEvent:
    """What the progress callback receives.

    A stage starts with `done=0` and its `total` (None when unknown) and a `message` (and, for training,
    `done_before`: the steps done when its first progress arrives, a resumed run's included, counted but
    not timed); then each call reports `done` items just finished. Stages: data, pairs, train:<model>, embed:<model>, evaluate. `message`-only events
    (done=0, total=None) are notes, e.g. a reused model.
    """

    stage: str
    done: int = 0
    total: int | None = None
    message: str | None = None
    loss: float | None = None
    done_before: int = 0


@dataclass
class DemoResult:
    """What `run_demo` produced: paths and the evaluation (`ensemble` is an `EnsembleResult`)."""

    out_dir: Path
    synthetic: bool
    dataset: str
    data_dir: Path
    train_identities: int
    test_identities: int
    train_images: int
    test_images: int
    pairs_path: Path
    report_path: Path
    roc_path: Path
    model_paths: dict[str, Path]
    ensemble: Any
    reused_models: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, Any]]:
        """(name, VerificationResult) for each model, then the ensemble."""
        return self.ensemble.results()


# ---------------------------------------------------------------------------------------------------
# Data


@dataclass
class _Split:
    name: str
    root: Path
    train: dict[str, int]  # person -> image count
    test: dict[str, int]
    synthetic: bool
    recipe: dict[str, Any]

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def test_dir(self) -> Path:
        return self.root / "test"


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _n_test(n_people: int, fraction: float) -> int:
    return max(2, min(n_people - 2, int(round(n_people * fraction))))


def _safe_name(name: str) -> str:
    # LFW's pairs file is whitespace separated: a folder name with spaces becomes underscores.
    return "_".join(name.split())


def _reusable(root: Path, recipe: dict[str, Any]) -> dict[str, Any] | None:
    manifest = root / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("format") != DATA_FORMAT or data.get("recipe") != recipe:
        return None
    for part in ("train", "test"):
        for person, count in data.get(part, {}).items():
            folder = root / part / person
            if not all((folder / f"{person}_{k:04d}.png").is_file() for k in range(1, count + 1)):
                return None
    return data


def _replace_dir(partial: Path, root: Path) -> None:
    """Move a finished `partial` folder to `root`, removing an older demo data folder there."""
    if root.exists():
        if not (root / "manifest.json").is_file():
            raise FaceverError(f"{root} exists and is not a facever demo data folder; choose another `out`", options=('out',))
        shutil.rmtree(root)
    partial.rename(root)


def _write_manifest(root: Path, split: _Split, extra: dict[str, Any]) -> None:
    from facever.core.atomic import write_text_atomic

    data = {
        "format": DATA_FORMAT,
        "synthetic": split.synthetic,
        "name": split.name,
        "recipe": split.recipe,
        "train": split.train,
        "test": split.test,
        **extra,
    }
    write_text_atomic(root / "manifest.json", json.dumps(data, indent=2) + "\n")


def _synthetic_data(out_dir: Path, settings: DemoSettings, seed: int, emit) -> _Split:
    from facever.data_prep.synthetic_faces import SyntheticSpec, identity_name, write_synthetic_dataset

    spec = SyntheticSpec(identities=settings.synthetic_identities, images_per_identity=settings.synthetic_images,
                         size=tuple(settings.input_size))
    n_test = _n_test(spec.identities, settings.test_fraction)
    recipe = {"source": "synthetic", "seed": seed, "spec": spec.to_dict(), "test_identities": n_test}
    root = out_dir / "data" / "synthetic"
    # Test people are the last indices: a fixed split, independent of anything a model does.
    test_idx = list(range(spec.identities - n_test, spec.identities))
    train_idx = list(range(spec.identities - n_test))
    split = _Split("synthetic", root, {identity_name(i): spec.images_per_identity for i in train_idx},
                   {identity_name(i): spec.images_per_identity for i in test_idx}, True, recipe)
    if _reusable(root, recipe) is not None:
        emit(DemoEvent("data", message=f"reusing the synthetic dataset in {root}"))
        return split
    total = spec.identities * spec.images_per_identity
    emit(DemoEvent("data", total=total, message=(
        f"generating a SYNTHETIC dataset: {spec.identities} drawn identities x {spec.images_per_identity} images "
        f"({len(train_idx)} for training, {n_test} held out for testing), {spec.size[0]}x{spec.size[1]} px")))
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(str(root) + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    done = lambda n: emit(DemoEvent("data", done=n))  # noqa: E731
    write_synthetic_dataset(partial / "train", spec, seed=seed, identities=train_idx, progress=done)
    write_synthetic_dataset(partial / "test", spec, seed=seed, identities=test_idx, progress=done)
    split.root = partial
    _write_manifest(partial, split, {"note": SYNTHETIC_NOTE})
    _replace_dir(partial, root)
    split.root = root
    return split


@dataclass
class _FolderScan:
    """A real identity folder read and split (nothing written yet): `members`/`holdout` map each person
    to their images, `safe` each person to their folder name in the copy."""

    data: Path
    members: dict[str, list[str]]
    holdout: dict[str, list[str]]
    files: list[tuple[str, int]]
    safe: dict[str, str]
    n_test: int
    left_out: str


def _scan_folder(data: Path, settings: DemoSettings, seed: int) -> _FolderScan:
    """Read and split `data`, refusing what the demo cannot use, before anything is written."""
    from facever.data_prep.identity_folder import scan_identity_folder

    data = Path(data)
    if not data.is_dir():
        raise FaceverError(f"{data}: not a folder (expected one sub-folder of images per person)")
    # Count the people with 2+ images (only they give same-person test pairs), then split.
    first = scan_identity_folder(data, min_images=2)
    people = first.classes
    left_out = f"; {len(first.dropped)} people with fewer than 2 images left out" if first.dropped else ""
    if len(people) < 4:
        raise FaceverError(f"{data}: {len(people)} people have 2 or more images; the demo needs at least 4 "
                           "(2 to train on and 2 to test)")
    n_test = _n_test(len(people), settings.test_fraction)
    folder = scan_identity_folder(data, min_images=2, holdout_identities=n_test, seed=seed)
    members: dict[str, list[str]] = {}
    for rel, cls in folder.samples:
        members.setdefault(folder.classes[cls], []).append(rel)
    files = [(rel, (data / rel).stat().st_size) for group in (members, folder.holdout)
             for name in sorted(group) for rel in sorted(group[name])]
    safe = {name: _safe_name(name) for name in list(members) + list(folder.holdout)}
    if len(set(safe.values())) != len(safe):
        raise FaceverError(f"{data}: two person folders differ only in whitespace; rename one")
    return _FolderScan(data, members, folder.holdout, files, safe, n_test, left_out)


def _folder_data(scan: _FolderScan, out_dir: Path, settings: DemoSettings, seed: int, emit) -> _Split:
    import numpy as np

    from facever.core.images import ImageDecodeError, read_image_rgb
    from facever.data_prep.synthetic_faces import encode_png
    from facever.core.crop import fit_to_input

    data, members, safe, n_test, files = scan.data, scan.members, scan.safe, scan.n_test, scan.files
    recipe = {"source": str(data.resolve()), "seed": seed, "size": list(settings.input_size),
              "test_identities": n_test, "files": _digest(files)}
    name = _safe_name(data.resolve().name) or "data"
    root = out_dir / "data" / name
    split = _Split(name, root, {safe[n]: len(v) for n, v in members.items()},
                   {safe[n]: len(v) for n, v in scan.holdout.items()}, False, recipe)
    if _reusable(root, recipe) is not None:
        emit(DemoEvent("data", message=f"reusing the prepared copy of {data} in {root}"))
        return split
    total = len(files)
    emit(DemoEvent("data", total=total, message=(
        f"preparing {data}: {len(members)} people for training, {n_test} held out for testing, "
        f"images resized to {settings.input_size[0]}x{settings.input_size[1]} px{scan.left_out}")))
    partial = Path(str(root) + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    from facever.core.atomic import write_bytes_atomic

    sources: list[str] = []
    for part, group in (("train", members), ("test", scan.holdout)):
        for person in sorted(group):
            for k, rel in enumerate(sorted(group[person]), start=1):
                try:
                    image = read_image_rgb(data / rel)
                except ImageDecodeError as exc:
                    raise FaceverError(f"{exc} (the demo needs every image of {data} to decode)") from None
                crop = np.ascontiguousarray(fit_to_input(image, tuple(settings.input_size)))
                target = f"{part}/{safe[person]}/{safe[person]}_{k:04d}.png"
                write_bytes_atomic(partial / target, encode_png(crop))
                sources.append(f"{target}\t{rel}")
                emit(DemoEvent("data", done=1))
    from facever.core.atomic import write_text_atomic

    write_text_atomic(partial / "sources.tsv", "copy\toriginal\n" + "".join(s + "\n" for s in sources))
    split.root = partial
    _write_manifest(partial, split, {"source_folder": str(data.resolve())})
    _replace_dir(partial, root)
    split.root = root
    return split


# ---------------------------------------------------------------------------------------------------
# Training


_RUN_FILES = ("checkpoint.pt", "model.pt", "model_last.pt", "metrics.jsonl", "config.json", "classes.txt",
              "corrupt_images.txt", "demo.json")


def _train_config(split: _Split, settings: DemoSettings, head: str, seed: int, device: str, cache_dir: Path):
    from facever.training.config import TrainConfig

    return TrainConfig(
        data=str(split.train_dir), arch=settings.arch, input_size=tuple(settings.input_size), width=settings.width,
        embedding_dim=settings.embedding_dim, head=head, alpha2=settings.alpha2,
        epochs=epochs_for(settings, sum(split.train.values())),
        batch_size=min(settings.batch_size, max(2, sum(split.train.values()) // 2)), lr=settings.lr,
        schedule="cosine", warmup_epochs=settings.warmup_epochs,
        seed=seed, amp="off", device=device, workers=0, cache="memmap", cache_dir=str(cache_dir),
        checkpoint_every=0,
    )


def _train_one(name: str, config, split: _Split, run_dir: Path, emit, stop_requested) -> tuple[Path, bool]:
    """Train (or reuse, or resume) one model; return (model.pt, reused)."""
    from facever.core.atomic import write_text_atomic
    from facever.training.config import RUNTIME_FIELDS
    from facever.training.loop import train

    recipe = {"config": {k: v for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS},
              "data": split.recipe}
    marker = run_dir / "demo.json"
    try:
        previous = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = None
    model_path = run_dir / "model.pt"
    if previous == recipe and model_path.is_file():
        emit(DemoEvent(f"train:{name}", message=f"{name}: reusing the trained model {model_path}"))
        return model_path, True
    resume = previous == recipe and (run_dir / "checkpoint.pt").is_file()
    if not resume:
        # A run for other settings or data: its files are the demo's own, replace them.
        for file in _RUN_FILES:
            (run_dir / file).unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(marker, json.dumps(recipe, indent=2) + "\n")
    stage = f"train:{name}"
    state = {"started": False}

    def on_step(info) -> None:
        if not state["started"]:
            state["started"] = True
            emit(DemoEvent(stage, done=0, total=info.total_steps, message=(
                f"training {name}: {config.arch} (width {config.width}, {config.embedding_dim}-d) at "
                f"{config.input_size[0]}x{config.input_size[1]}, {config.epochs} epochs, {info.total_steps} steps"
                + (f", resuming at step {info.step - 1}" if resume else "")), done_before=info.step))
            return  # its bar starts after this step: the steps so far are counted, not timed
        emit(DemoEvent(stage, done=1, loss=info.loss))

    def on_message(text: str) -> None:
        if not text.startswith("stopped at step"):  # the demo's resume is "run it again", said by DemoInterrupted
            emit(DemoEvent(stage, message=f"{name}: {text}"))

    result = train(config, run_dir, resume=resume, progress=on_step, stop_requested=stop_requested,
                   on_message=on_message)
    if result.interrupted or result.model_path is None:
        raise DemoInterrupted(f"stopped while training {name} at step {result.steps} of {result.total_steps} "
                              f"(checkpoint saved in {run_dir}); run the same command again to resume")
    return result.model_path, False


# ---------------------------------------------------------------------------------------------------
# The whole run


def _claim_out_dir(out_dir: Path) -> None:
    """Create `out_dir`, or accept an empty one or an earlier demo's (the one rule for output folders)."""
    from facever.core.output_folders import claim_output_folder

    if out_dir.exists() and not out_dir.is_dir():
        raise FaceverError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    claim_output_folder(out_dir, "demo")


def run_demo(
    out_dir: str | Path,
    *,
    data: str | Path | None = None,
    quick: bool = False,
    seed: int = 0,
    device: str = "cpu",
    progress: Callable[[DemoEvent], None] | None = None,
    settings: DemoSettings | None = None,
    threads: int | None = 1,
    stop_requested: Callable[[], bool] | None = None,
) -> DemoResult:
    """Run the demo into `out_dir` (module docstring); `progress` receives `DemoEvent`s.

    `data`: a real identity folder instead of the synthetic data. `quick`: smaller data and shorter
    training (for tests). `settings` overrides the sizes entirely. `threads`: torch's intra-op
    threads while the demo runs (restored afterwards; None leaves them): the demo's network is so
    small that a second thread gains little, while on a busy machine two spinning threads per process
    can run ten times slower than one. `stop_requested()` is polled after each training step: when
    true, training saves a checkpoint and `DemoInterrupted` is raised (a rerun resumes). Raises
    FaceverError for unusable data (too few people) or an `out_dir` holding something other than the
    demo's files.
    """
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    try:
        return _run_demo(Path(out_dir), data=data, quick=quick, seed=seed, device=device, progress=progress,
                         settings=settings, stop_requested=stop_requested)
    finally:
        torch.set_num_threads(before)


def _run_demo(out_dir: Path, *, data, quick, seed, device, progress, settings, stop_requested) -> DemoResult:
    from facever.protocols.lfw import read_lfw_pairs
    from facever.protocols.pair_lists import make_pair_list, max_pairs_per_fold
    from facever.embedding.ensemble import evaluate_ensemble
    from facever.embedding.extract import embed_images
    from facever.embedding.loading import load_embedding_model
    from facever.core.embeddings_file import save_embeddings
    from facever.core.atomic import write_text_atomic
    from facever.verification.report import write_ensemble_report

    synthetic = data is None
    settings = settings or default_settings(quick=quick)

    def emit(event: DemoEvent) -> None:
        if event.message:
            log.info("%s", event.message)
        if progress is not None:
            progress(event)

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    scan = None if synthetic else _scan_folder(Path(data), settings, seed)  # refused data: nothing written
    _claim_out_dir(out_dir)
    split = (_synthetic_data(out_dir, settings, seed, emit) if synthetic
             else _folder_data(scan, out_dir, settings, seed, emit))
    seconds["data"] = time.perf_counter() - t0

    # Pairs: as many per fold as the test people allow, up to the setting.
    per_fold = min(settings.pairs_per_fold, max_pairs_per_fold(split.test))
    if per_fold < 1:
        raise FaceverError(f"the {len(split.test)} test people have too few images for 10 folds of same-person pairs")
    pairs = make_pair_list(split.test, per_fold=per_fold, seed=seed)
    pairs_path = out_dir / "pairs.txt"
    write_text_atomic(pairs_path, pairs.to_text())
    protocol = dataclasses.replace(read_lfw_pairs(pairs_path, ext=".png"), name=f"demo-{split.name}")
    emit(DemoEvent("pairs", message=f"wrote {pairs_path}: 10 folds x ({per_fold} same + {per_fold} different) "
                                    f"pairs among {len(split.test)} held-out people"))

    model_paths: dict[str, Path] = {}
    reused: list[str] = []
    epochs = 0
    for name in MODEL_NAMES:
        t = time.perf_counter()
        config = _train_config(split, settings, name, seed, device, out_dir / "cache")
        path, was_reused = _train_one(name, config, split, out_dir / "models" / name, emit,
                                     stop_requested)
        model_paths[name] = path
        epochs = config.epochs
        if was_reused:
            reused.append(name)
        seconds[f"train:{name}"] = time.perf_counter() - t

    items = protocol.items()
    per_model = []
    for name in MODEL_NAMES:
        t = time.perf_counter()
        model = load_embedding_model(model_paths[name], device=device)
        emit(DemoEvent(f"embed:{name}", total=len(items), message=f"embedding {len(items)} test images with {name}"))
        # float32 like the training (amp off): the same table on every CPU, AMX or not.
        emb, _bad = embed_images(model, split.test_dir, items, flip=settings.flip, batch_size=128, workers=0,
                                 device=device, amp="off", progress=lambda n, s=f"embed:{name}": emit(DemoEvent(s, done=n)))
        save_embeddings(out_dir / "embeddings" / f"{name}.npz", emb.paths, emb.embeddings, emb.metadata)
        per_model.append(emb)
        seconds[f"embed:{name}"] = time.perf_counter() - t

    t = time.perf_counter()
    emit(DemoEvent("evaluate", message="10-fold verification of each model and of their ensemble"))
    ensemble = evaluate_ensemble(protocol, per_model, list(MODEL_NAMES), fusion="concat")
    for name in MODEL_NAMES:
        ensemble.models[name].settings.update({"pairs_file": str(pairs_path), "model": str(model_paths[name])})
    ensemble.ensemble.settings["pairs_file"] = str(pairs_path)
    seconds["evaluate"] = time.perf_counter() - t

    demo_block = {
        "synthetic": synthetic,
        "data": SYNTHETIC_NOTE if synthetic else f"real identity folder {Path(data).resolve()}",
        "dataset": split.name,
        "data_dir": str(split.root),
        "seed": seed,
        "quick": quick,
        "settings": settings.to_dict(),
        "epochs": epochs,
        "train_identities": len(split.train),
        "test_identities": len(split.test),
        "train_images": sum(split.train.values()),
        "test_images": sum(split.test.values()),
        "models": {name: str(path) for name, path in model_paths.items()},
        "reused_models": reused,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    what = "SYNTHETIC data" if synthetic else split.name
    written = write_ensemble_report(out_dir, ensemble, extra={"demo": demo_block},
                                    title=f"demo on {what}: held-out people, 10 folds")
    report_path, roc_path = written["report"], written["roc"]
    return DemoResult(
        out_dir=out_dir, synthetic=synthetic, dataset=split.name, data_dir=split.root,
        train_identities=len(split.train), test_identities=len(split.test),
        train_images=sum(split.train.values()), test_images=sum(split.test.values()),
        pairs_path=pairs_path, report_path=report_path, roc_path=roc_path, model_paths=model_paths,
        ensemble=ensemble, reused_models=reused, seconds=seconds,
    )
