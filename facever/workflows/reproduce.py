"""`reproduce`: the paper's experiment in one resumable pipeline, from datasets to a paper-versus-ours report.

Stages, in order (each writes `OUT/stages/NAME.json` atomically once it has finished; a rerun
skips every stage that has its marker, and a stage interrupted half-way resumes where its own
files allow: alignment skips written crops, training continues from its checkpoint, embedding
reuses its cache):

1. `align-casia`, `align-lfw`, `align-ytf`: align what is not aligned yet (see `looks_aligned`)
   into `OUT/aligned/`; aligned input (or RecordIO, or `assume_aligned`) is used in place.
2. `train-noisy-a`, `train-noisy-b`, `train-softmax`: the recipe trained twice with Noisy Softmax
   (seeds s and s+1) and once with plain softmax (seed s: paired with noisy-a, same initial
   weights and batches, so the head is the only difference) into `OUT/runs/NAME/`.
3. `eval-noisy-a`, `eval-noisy-b`, `eval-softmax`: each model on LFW, FGLFW (when given) and YTF,
   reports in `OUT/runs/NAME/eval/BENCH/` (report.json, roc.png, roc.npz).
4. `ensemble`: the two noisy models fused (concatenated normalised embeddings = mean cosine) on
   every benchmark, reports in `OUT/ensemble/BENCH/`.
5. `report`: `OUT/report.md` and `OUT/report.json` (ours beside the paper's numbers),
   `OUT/roc_BENCH.png` (every model and the ensemble) and `OUT/training_curves.png` (loss and
   validation accuracy of softmax vs noisy softmax). It only reads OUT's files, so every run
   rebuilds it (seconds).

The settings that decide the results are saved in `OUT/reproduce.json`; rerunning into the same
OUT with different ones is refused (device, batch size and workers may change).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from facever.core.atomic import atomic_path, write_text_atomic
from facever.core.errors import FaceverError
from facever.core.output_folders import claim_output_folder, make_folder
from facever.core.settings import DEFAULT_FLIP, DEFAULT_ON_MISS, DEFAULT_SELECT, EMBED_BATCH_SIZE, FLIP_MODES, check_choice
from facever.core.progress import ProgressFactory, no_progress

log = logging.getLogger(__name__)

# The paper's numbers (percent): Chen, Deng, Du, "Noisy Softmax: Improving the Generalization Ability of
# DCNN via Postponing the Early Softmax Saturation", CVPR 2017, trained on CASIA-WebFace: one Noisy
# Softmax model (alpha^2 = 0.1) LFW 99.18, YTF 94.88; the softmax baseline YTF 94.22; an ensemble of two
# Noisy Softmax models LFW 99.31, FGLFW 94.43, YTF 95.37.
PAPER_RESULTS: dict[str, dict[str, float]] = {
    "softmax": {"ytf": 94.22},
    "noisy-softmax": {"lfw": 99.18, "ytf": 94.88},
    "ensemble": {"lfw": 99.31, "fglfw": 94.43, "ytf": 95.37},
}
BENCHMARKS = ("lfw", "fglfw", "ytf")
BENCH_TITLES = {"lfw": "LFW", "fglfw": "FGLFW", "ytf": "YTF"}
# Model name -> (head, seed offset). noisy-a and softmax share a seed on purpose (paired comparison).
MODELS: dict[str, tuple[str, int]] = {"noisy-a": ("noisy-softmax", 0), "noisy-b": ("noisy-softmax", 1),
                                      "softmax": ("softmax", 0)}
NOISY = ("noisy-a", "noisy-b")
# Crop sizes (h, w) that mean "already aligned" on the 5-point template: SphereFace's 112x96 and
# ArcFace's 112x112, whose template is SphereFace's shifted right by 8 pixels, so the model input
# pipeline's centre crop to 112x96 gives SphereFace's alignment exactly (`facever.data_prep.templates`).
ALIGNED_SIZES = ((112, 96), (112, 112))
SIZE_SAMPLE = 64
DEFAULT_RECIPE = "paper-casia-sphere20"
# Settings that may change between a run and its continuation (they do not change the numbers).
RUNTIME_SETTINGS = frozenset({"device", "batch_size", "workers"})

STAGES = (
    "align-casia", "align-lfw", "align-ytf",
    "train-noisy-a", "train-noisy-b", "train-softmax",
    "eval-noisy-a", "eval-noisy-b", "eval-softmax",
    "ensemble", "report",
)


@dataclass(frozen=True)
class ReproduceSettings:
    """Inputs and options of one reproduction (paths are stored absolute)."""

    casia: str
    lfw: str
    ytf: str
    fglfw: str | None = None
    lfw_pairs: str | None = None  # default: LFW/pairs.txt
    ytf_splits: str | None = None  # default: YTF/splits.txt
    recipe: str = DEFAULT_RECIPE
    config_file: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields, e.g. {"epochs": 1}
    assume_aligned: bool = False
    ytf_frames: int | None = None
    flip: str = DEFAULT_FLIP
    device: str = "auto"
    batch_size: int = EMBED_BATCH_SIZE
    workers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["overrides"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides.items()}
        return data


@dataclass
class StageEvent:
    """What `on_stage` receives: a stage starting, skipped (already done) or done."""

    name: str
    event: str  # "start", "skip", "done"
    index: int
    total: int
    seconds: float | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReproduceResult:
    out_dir: Path
    report: dict[str, Any]
    ran: list[str]
    skipped: list[str]


# -- helpers ----------------------------------------------------------------------------------------

def stage_marker(out_dir: Path, name: str) -> Path:
    return out_dir / "stages" / f"{name}.json"


def read_stage(out_dir: Path, name: str) -> dict[str, Any] | None:
    """The marker of a finished stage, or None (a missing or unreadable marker means: run it)."""
    path = stage_marker(out_dir, name)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        log.warning("%s is unreadable; running the stage again", path)
        return None
    return data if isinstance(data, dict) and data.get("stage") == name else None


def _write_stage(out_dir: Path, name: str, seconds: float, outputs: dict[str, Any]) -> None:
    record = {"stage": name, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": seconds,
              "outputs": outputs}
    write_text_atomic(stage_marker(out_dir, name), json.dumps(record, indent=2) + "\n")


def image_sizes(root: Path, rels: Sequence[str], *, sample: int = SIZE_SAMPLE) -> set[tuple[int, int]]:
    """The distinct (h, w) of up to `sample` images spread evenly over `rels` (headers only, no decoding)."""
    from PIL import Image

    if not rels:
        return set()
    step = max(1, len(rels) // sample)
    sizes = set()
    for rel in list(rels)[::step][:sample]:
        try:
            with Image.open(root / rel) as im:
                sizes.add((im.height, im.width))
        except OSError:
            sizes.add((-1, -1))  # unreadable: not evidence of alignment
    return sizes


def looks_aligned(root: Path, rels: Sequence[str], input_size: Sequence[int]) -> bool:
    """True when the sampled images all have one size that is an aligned-crop size.

    Aligned sizes: 112x96 (the paper's template), 112x112 (ArcFace's) and the model's input size.
    Raw photos (LFW's 250x250, CASIA-WebFace's 250x250, video frames) are not.
    """
    sizes = image_sizes(root, rels)
    accepted = {tuple(int(v) for v in input_size), *ALIGNED_SIZES}
    return len(sizes) == 1 and next(iter(sizes)) in accepted


def _save_roc(path: Path, result) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        np.savez(tmp, fpr=np.asarray(result.fpr), tpr=np.asarray(result.tpr))


def _load_roc(path: Path):
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return data["fpr"], data["tpr"]


def epoch_overrides(epochs: int, *, recipe: str = DEFAULT_RECIPE, config_file: str | Path | None = None) -> dict[str, Any]:
    """Overrides for a shorter run (`--epochs N`): milestones past its end dropped, warm-up kept inside it."""
    from facever.training.config_files import read_config_file
    from facever.training.recipes import load_recipe

    base = {**load_recipe(recipe).options, **(read_config_file(config_file) if config_file else {})}
    overrides: dict[str, Any] = {"epochs": int(epochs)}
    if base.get("milestones"):
        overrides["milestones"] = [m for m in base["milestones"] if m < epochs]
    if float(base.get("warmup_epochs", 0.0)) >= epochs:
        overrides["warmup_epochs"] = 0.0
    return overrides


def reproduce_settings(
    *,
    casia: str | Path,
    lfw: str | Path,
    ytf: str | Path,
    fglfw: str | Path | None = None,
    lfw_pairs: str | Path | None = None,
    ytf_splits: str | Path | None = None,
    recipe: str = DEFAULT_RECIPE,
    config_file: str | Path | None = None,
    epochs: int | None = None,
    **options: Any,
) -> ReproduceSettings:
    """The settings of a reproduction from its inputs (made absolute) and options (`ReproduceSettings`'
    fields); `epochs` shortens the recipe, keeping its step schedule inside the shorter run
    (`epoch_overrides`)."""
    def absolute(path):
        return None if path is None else str(Path(path).resolve())

    overrides = epoch_overrides(epochs, recipe=recipe, config_file=config_file) if epochs is not None else {}
    return ReproduceSettings(
        casia=absolute(casia), lfw=absolute(lfw), ytf=absolute(ytf), fglfw=absolute(fglfw),
        lfw_pairs=absolute(lfw_pairs), ytf_splits=absolute(ytf_splits), recipe=recipe,
        config_file=absolute(config_file), overrides=overrides, **options,
    )


class Reproduction:
    """One reproduction run into `out_dir` (see the module docstring). Use `run()`."""

    def __init__(
        self,
        settings: ReproduceSettings,
        out_dir: str | Path,
        *,
        on_stage: Callable[[StageEvent], None] | None = None,
        on_message: Callable[[str], None] | None = None,
        progress: ProgressFactory | None = None,
        stop_requested: Callable[[], bool] | None = None,
    ):
        self.settings = settings
        self.out = Path(out_dir)
        self.on_stage = on_stage or (lambda event: None)
        self.say = on_message or (lambda text: log.info("%s", text))
        self.progress = progress or no_progress
        self.stop_requested = stop_requested
        self.lfw_pairs = Path(settings.lfw_pairs) if settings.lfw_pairs else Path(settings.lfw) / "pairs.txt"
        self.ytf_splits = Path(settings.ytf_splits) if settings.ytf_splits else Path(settings.ytf) / "splits.txt"
        self._base_options: dict[str, Any] | None = None
        self._sources: dict[str, str] = {}

    # -- settings ---------------------------------------------------------------------------------
    def base_options(self) -> dict[str, Any]:
        """Training options: recipe < config file < overrides (validated, before data/head/seed)."""
        if self._base_options is None:
            from facever.training.config_files import parse_options, read_config_file
            from facever.training.options import layer_options
            from facever.training.recipes import load_recipe

            layers: list[tuple[str, dict[str, Any]]] = [
                (f"recipe {self.settings.recipe}", load_recipe(self.settings.recipe).options)]
            if self.settings.config_file:
                layers.append((f"config file {self.settings.config_file}", read_config_file(self.settings.config_file)))
            layers.append(("reproduce options", parse_options(self.settings.overrides, where="reproduce options")))
            resolved = layer_options(layers)
            resolved.values.pop("data", None)
            self._base_options, self._sources = resolved.values, resolved.sources
        return dict(self._base_options)

    def input_size(self) -> tuple[int, int]:
        options = self.base_options()
        if options.get("input_size"):
            return tuple(options["input_size"])
        from facever.models import create_model

        return tuple(int(v) for v in create_model(options.get("arch", "sphere20"), **{
            k: options[k] for k in ("embedding_dim", "width") if options.get(k) is not None}).input_size)

    def check_inputs(self) -> None:
        """Fail before any work on missing inputs and malformed protocol files (naming the file)."""
        from facever.protocols import lfw, ytf

        s = self.settings
        for what, path in (("casia", s.casia), ("lfw", s.lfw), ("ytf", s.ytf)):
            if not Path(path).exists():
                raise FaceverError(f"{path}: not found (`{what}`)", options=(what,))
        from facever.training.data import is_recordio

        for what, path, holds in (("lfw", s.lfw, "the LFW images, Name/Name_0001.jpg"),
                                  ("ytf", s.ytf, "frame_images_DB/ or aligned_images_DB/"),
                                  ("casia", s.casia, "identity folders, or train.rec")):
            if not Path(path).is_dir() and not (what == "casia" and is_recordio(Path(path))):
                raise FaceverError(f"{path}: not a folder (`{what}` is the folder holding {holds})", options=(what,))
        out = Path(os.path.realpath(self.out))
        for what, path in (("casia", s.casia), ("lfw", s.lfw), ("ytf", s.ytf)):
            data = Path(os.path.realpath(path))
            if out == data or data in out.parents:
                raise FaceverError(f"{self.out}: inside the input {path} (`{what}`); the run would write into "
                                   "the data set. Choose an output folder outside it", options=(what,))
        lfw.read_lfw_pairs(self.lfw_pairs)
        ytf.read_ytf_splits(self.ytf_splits)
        # Find the YTF layout now, not after the long CASIA and LFW alignments.
        ytf.find_video_tree(s.ytf, prefer="aligned")
        if s.fglfw:
            self.fglfw_protocol()
        check_choice("flip", s.flip, FLIP_MODES)
        self.base_options()

    def fglfw_protocol(self):
        from facever.protocols.fglfw import read_fglfw_pairs

        path = Path(self.settings.fglfw)
        try:
            n_pairs = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) // 2
        except (OSError, UnicodeDecodeError):
            n_pairs = 0  # the reader below names the problem
        # 10 folds of equal size whatever the list's length (the real list: 6000 pairs, 600 per fold).
        per_fold = n_pairs // 10 if n_pairs % 10 == 0 and (n_pairs // 10) % 2 == 0 else 600
        return read_fglfw_pairs(path, pairs_per_fold=per_fold)

    def _check_settings(self) -> None:
        path = self.out / "reproduce.json"
        current = self.settings.to_dict()
        if path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))["settings"]
            except (ValueError, KeyError, TypeError):
                raise FaceverError(f"{path}: unreadable; remove it (and OUT's stages/) to start again") from None
            diffs = [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in current
                     if k not in RUNTIME_SETTINGS and saved.get(k) != current.get(k)]
            if diffs:
                raise FaceverError(f"{self.out} holds a reproduction made with other settings ({'; '.join(diffs)}); "
                                   "rerun with the same ones to continue it, or choose another `out`", options=('out',))
        from facever import __version__

        write_text_atomic(path, json.dumps({"facever_version": __version__, "settings": current}, indent=2) + "\n")

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> ReproduceResult:
        self.check_inputs()
        make_folder(self.out)
        claim_output_folder(self.out, "reproduce")  # new, empty, or an earlier reproduction (core.output_folders)
        self._check_settings()
        ran, skipped = [], []
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("align-casia", self.align_casia), ("align-lfw", self.align_lfw), ("align-ytf", self.align_ytf),
            *[(f"train-{m}", (lambda m=m: self.train_model(m))) for m in MODELS],
            *[(f"eval-{m}", (lambda m=m: self.evaluate_model(m))) for m in MODELS],
            ("ensemble", self.ensemble), ("report", self.write_report),
        ]
        for index, (name, work) in enumerate(steps, start=1):
            done = read_stage(self.out, name)
            if done is not None and name != "report":
                skipped.append(name)
                self.on_stage(StageEvent(name, "skip", index, len(steps), done.get("seconds"), done.get("outputs", {})))
                continue
            self.on_stage(StageEvent(name, "start", index, len(steps)))
            started = time.perf_counter()
            outputs = work()
            seconds = time.perf_counter() - started
            _write_stage(self.out, name, seconds, outputs)
            ran.append(name)
            self.on_stage(StageEvent(name, "done", index, len(steps), seconds, outputs))
        report = json.loads((self.out / "report.json").read_text(encoding="utf-8"))
        return ReproduceResult(self.out, report, ran, skipped)

    def _stage_output(self, name: str, key: str) -> Any:
        done = read_stage(self.out, name)
        if done is None or key not in done.get("outputs", {}):
            raise FaceverError(f"stage {name} has not finished in {self.out} (its marker is missing)")
        return done["outputs"][key]

    # -- 1. alignment -----------------------------------------------------------------------------
    def _already_aligned(self, root: Path, rels: Sequence[str]) -> str | None:
        """Why the images under `root` need no alignment, or None when they do."""
        if self.settings.assume_aligned:
            return "assume_aligned"
        if looks_aligned(root, rels, self.input_size()):
            return "images are aligned crops already"
        return None

    def _align(self, what: str, src: Path, dst: Path, *, select: str = DEFAULT_SELECT,
               on_miss: str = DEFAULT_ON_MISS) -> dict[str, Any]:
        """`facever align SRC DST` at the model's input size, in a child process of its own
        (`facever.workflows.align.align_in_child` says why); rerunning resumes."""
        from facever.data_prep.align_dataset import AlignConfig
        from facever.workflows.align import align_in_child, default_workers

        workers = self.settings.workers if self.settings.workers is not None else default_workers()
        config = AlignConfig(size=self.input_size(), select=select, on_miss=on_miss, device=self.settings.device,
                             workers=workers)
        self.say(f"{what}: aligning into {dst} (as facever align; rerunning resumes)")
        summary = align_in_child(src, dst, config, say=self.say, progress=self.progress,
                                 stop_requested=self.stop_requested, description=f"align {what}")
        return {"path": str(dst), "aligned_here": True, "summary": summary}

    def _image_list(self, path: Path, files: Sequence[Path]) -> Path:
        """A list file for `facever align` (absolute paths: outputs mirror them below their common folder)."""
        write_text_atomic(path, "".join(f"{Path(f).resolve()}\n" for f in files))
        return path

    def align_casia(self) -> dict[str, Any]:
        from facever.core.images import list_images
        from facever.training.data import is_recordio

        src = Path(self.settings.casia)
        if is_recordio(src):
            return {"path": str(src), "aligned_here": False, "why": "RecordIO crops are aligned"}
        why = self._already_aligned(src, list_images(src))
        if why:
            return {"path": str(src), "aligned_here": False, "why": why}
        return self._align("CASIA", src, self.out / "aligned" / "casia", on_miss="skip")

    def align_lfw(self) -> dict[str, Any]:
        from facever.protocols.lfw import read_lfw_pairs

        src = Path(self.settings.lfw)
        items = read_lfw_pairs(self.lfw_pairs).items()
        if self.settings.fglfw:
            items = list(dict.fromkeys([*items, *self.fglfw_protocol().items()]))
        why = self._already_aligned(src, items)
        if why:
            return {"path": str(src), "aligned_here": False, "why": why}
        # Only the images the pairs need. LFW practice: the face nearest the centre of the 250x250
        # photo, and a centre crop when none is found (every pair keeps both images).
        listed = self._image_list(self.out / "aligned" / "lfw_images.txt", [src / i for i in items])
        return self._align("LFW", listed, self.out / "aligned" / "lfw", select="center", on_miss="center-crop")

    def align_ytf(self) -> dict[str, Any]:
        from facever.protocols import ytf

        tree = ytf.find_video_tree(self.settings.ytf, prefer="aligned")
        videos = ytf.read_ytf_splits(self.ytf_splits).items()
        frames = ytf.select_frames(ytf.list_video_frames(tree, videos), frames=self.settings.ytf_frames)
        needed = list(dict.fromkeys(f for v in videos for f in frames[v]))
        why = self._already_aligned(tree.base, needed)
        if why:
            return {"path": str(tree.base), "layout": tree.layout, "aligned_here": False, "why": why}
        # Only the frames the evaluation uses, mirrored as <DB>/Name/video/frame.jpg.
        listed = self._image_list(self.out / "aligned" / "ytf_frames.txt", [tree.base / f for f in needed])
        out = self._align("YTF frames", listed, self.out / "aligned" / "ytf" / tree.base.name, select="center",
                          on_miss="center-crop")
        out["layout"] = tree.layout
        return out

    # -- 2. training ------------------------------------------------------------------------------
    def train_config(self, model: str):
        from facever.training.options import make_train_config

        head, offset = MODELS[model]
        options = self.base_options()
        options.update(data=self._stage_output("align-casia", "path"), head=head,
                       seed=int(options.get("seed", 0)) + offset, device=self.settings.device)
        if self.settings.workers is not None:
            options["workers"] = self.settings.workers
        return make_train_config(options, where=f"reproduce ({model})")

    def train_model(self, model: str) -> dict[str, Any]:
        from facever.training.config_files import write_run_config
        from facever.training.loop import CHECKPOINT_NAME, train

        config = self.train_config(model)
        run_dir = self.out / "runs" / model
        resume = (run_dir / CHECKPOINT_NAME).is_file()
        run_dir.mkdir(parents=True, exist_ok=True)
        head, offset = MODELS[model]
        sources = dict(self._sources)
        sources.update(data="stage align-casia", head=f"reproduce: {model} uses {head}",
                       seed=f"reproduce: recipe seed + {offset}")
        write_run_config(run_dir, config, sources=sources)
        self.say(f"{model}: training {config.arch} with {config.head} (seed {config.seed}) into {run_dir}"
                 + (" (resuming from its checkpoint)" if resume else ""))
        with contextlib.ExitStack() as stack:
            bars: dict[str, Any] = {}

            def progress(step_info) -> None:
                if "bar" in bars:
                    bars["bar"](1)
                else:  # the bar starts after this step: steps so far (a resumed run's too) counted, not timed
                    bars["bar"] = stack.enter_context(self.progress(f"train {model}", step_info.total_steps, unit="step",
                                                                    done=step_info.step))

            result = train(config, run_dir, resume=resume, progress=progress, on_message=self.say,
                           stop_requested=self.stop_requested)
        if result.interrupted:
            raise KeyboardInterrupt(f"training {model} stopped at step {result.steps}; rerun to continue")
        return {"run": str(run_dir), "model": str(result.model_path), "steps": result.steps,
                "best_validation_accuracy": result.best_accuracy, "best_step": result.best_step,
                "num_images": result.num_images, "num_classes": result.num_classes, "last_loss": result.last_loss}

    # -- 3. evaluation ----------------------------------------------------------------------------
    def _evaluate(self, protocol, embeddings, out_dir: Path, settings: dict[str, Any]):
        from facever.verification.evaluate import evaluate_protocol
        from facever.verification.report import write_report

        result = evaluate_protocol(protocol, embeddings, metric="cosine", thresholds="exact")
        result.settings.update(settings)
        write_report(out_dir, result)
        _save_roc(out_dir / "roc.npz", result)
        return result

    def evaluate_model(self, model: str) -> dict[str, Any]:
        from facever.protocols import ytf
        from facever.embedding.videos import embed_videos
        from facever.protocols.lfw import read_lfw_pairs
        from facever.embedding.cache import embed_items_cached
        from facever.embedding.loading import load_embedding_model
        from facever.core.embeddings_file import save_embeddings

        s = self.settings
        model_path = Path(self._stage_output(f"train-{model}", "model"))
        eval_dir = self.out / "runs" / model / "eval"
        net = load_embedding_model(model_path, device=s.device)
        outputs: dict[str, Any] = {}

        protocols = {"lfw": read_lfw_pairs(self.lfw_pairs)}
        if s.fglfw:
            protocols["fglfw"] = self.fglfw_protocol()
        lfw_root = Path(self._stage_output("align-lfw", "path"))
        items = list(dict.fromkeys(i for p in protocols.values() for i in p.items()))
        if Path(lfw_root).is_file():  # pragma: no cover - align-lfw always yields a folder
            raise FaceverError(f"{lfw_root}: expected a folder of aligned LFW images")
        with self.progress(f"embed LFW ({model})", len(items)) as advance:
            emb, _, _ = embed_items_cached(
                net, lfw_root, items, cache=eval_dir / "embedding_cache", flip=s.flip, batch_size=s.batch_size,
                workers=s.workers, device=s.device, progress=advance, on_plan=lambda done, todo: advance(done),
            )
        save_embeddings(eval_dir / "lfw_embeddings.npz", emb.paths, emb.embeddings, emb.metadata)
        for bench, protocol in protocols.items():
            result = self._evaluate(protocol, emb, eval_dir / bench,
                                    {"model": str(model_path), "images": str(lfw_root), "flip": s.flip})
            outputs[bench] = {"accuracy": result.kfold.mean, "std": result.kfold.std, "auc": result.auc}

        tree = ytf.VideoTree(Path(self._stage_output("align-ytf", "path")), self._stage_output("align-ytf", "layout"))
        proto = ytf.read_ytf_splits(self.ytf_splits)
        videos = proto.items()
        frame_lists = ytf.list_video_frames(tree, videos)
        n_frames = len({f for fl in ytf.select_frames(frame_lists, frames=s.ytf_frames).values() for f in fl})
        with self.progress(f"embed YTF frames ({model})", n_frames, unit="frame") as advance:
            video_emb, facts = embed_videos(
                net, tree, videos, frames=s.ytf_frames, cache_dir=eval_dir / "ytf_frame_cache", flip=s.flip,
                batch_size=s.batch_size, device=s.device, progress=advance, frame_lists=frame_lists,
            )
        save_embeddings(eval_dir / "ytf_video_embeddings.npz", video_emb.paths, video_emb.embeddings, video_emb.metadata)
        result = self._evaluate(proto, video_emb, eval_dir / "ytf", {
            "model": str(model_path), "frames": s.ytf_frames or "all", "flip": s.flip,
            "aggregation": "mean of L2-normalised frame embeddings, L2-normalised", **facts})
        outputs["ytf"] = {"accuracy": result.kfold.mean, "std": result.kfold.std, "auc": result.auc}
        return outputs

    # -- 4. ensemble ------------------------------------------------------------------------------
    def ensemble(self) -> dict[str, Any]:
        from facever.protocols import ytf
        from facever.protocols.lfw import read_lfw_pairs
        from facever.embedding.ensemble import evaluate_ensemble
        from facever.core.embeddings_file import load_embeddings
        from facever.verification.report import write_ensemble_report

        protocols = {"lfw": read_lfw_pairs(self.lfw_pairs)}
        if self.settings.fglfw:
            protocols["fglfw"] = self.fglfw_protocol()
        protocols["ytf"] = ytf.read_ytf_splits(self.ytf_splits)
        outputs = {}
        for bench, protocol in protocols.items():
            name = "ytf_video_embeddings.npz" if bench == "ytf" else "lfw_embeddings.npz"
            per_model = [load_embeddings(self.out / "runs" / m / "eval" / name) for m in NOISY]
            result = evaluate_ensemble(protocol, per_model, list(NOISY), fusion="concat", metric="cosine",
                                       thresholds="exact")
            out_dir = self.out / "ensemble" / bench
            write_ensemble_report(out_dir, result,
                                  title=f"{BENCH_TITLES[bench]} ROC: noisy-a, noisy-b and their ensemble")
            _save_roc(out_dir / "roc.npz", result.ensemble)
            outputs[bench] = {"accuracy": result.ensemble.kfold.mean, "std": result.ensemble.kfold.std,
                              "auc": result.ensemble.auc}
        return outputs

    # -- 5. report --------------------------------------------------------------------------------
    def write_report(self) -> dict[str, Any]:
        report = build_report(self.out, self.settings)
        from facever.verification.report import write_json

        write_json(self.out / "report.json", report)
        write_text_atomic(self.out / "report.md", format_report_markdown(report))
        plots = write_plots(self.out, report)
        return {"report": str(self.out / "report.md"), "json": str(self.out / "report.json"), "plots": plots}


# -- the report (plain functions over OUT's files, so it can be rebuilt at any time) -----------------

def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def build_report(out_dir: Path, settings: ReproduceSettings) -> dict[str, Any]:
    """Everything the report shows, from the stage markers and report files in OUT."""
    rows = []
    for model in (*NOISY, "softmax"):
        paper_key = "softmax" if model == "softmax" else "noisy-softmax"
        evals = (read_stage(out_dir, f"eval-{model}") or {}).get("outputs", {})
        train = read_stage(out_dir, f"train-{model}") or {}
        rows.append({
            "model": model, "head": MODELS[model][0], "paper_row": paper_key,
            "ours": {b: evals[b] for b in BENCHMARKS if b in evals},
            "paper": PAPER_RESULTS[paper_key],
            "training": {**train.get("outputs", {}), "seconds": train.get("seconds")},
        })
    ens = (read_stage(out_dir, "ensemble") or {}).get("outputs", {})
    rows.append({"model": "ensemble (noisy-a + noisy-b)", "head": "noisy-softmax", "paper_row": "ensemble",
                 "ours": {b: ens[b] for b in BENCHMARKS if b in ens}, "paper": PAPER_RESULTS["ensemble"],
                 "training": {}})
    from facever import __version__

    recipe_options = {}
    with contextlib.suppress(FaceverError, OSError):
        recipe_options = _read_json(out_dir / "runs" / "noisy-a" / "config.json")
    return {
        "title": "Noisy Softmax (Chen, Deng, Du, CVPR 2017): paper versus this reproduction",
        "facever_version": __version__,
        "settings": settings.to_dict(),
        "training_config_noisy_a": recipe_options,
        "benchmarks": [b for b in BENCHMARKS if any(b in r["ours"] for r in rows)],
        "rows": rows,
        "paper_results": PAPER_RESULTS,
        "protocol": "10-fold verification, threshold chosen on 9 folds (exact), cosine of "
                    f"L2-normalised embeddings, flip fusion {settings.flip}; YTF video = mean of normalised "
                    f"frame embeddings ({settings.ytf_frames or 'all'} frames)",
    }


def _cell(ours: dict | None) -> str:
    if not ours:
        return "-"
    return f"{100 * ours['accuracy']:.2f} +- {100 * ours['std']:.2f}"


def format_report_markdown(report: dict[str, Any]) -> str:
    benches = report["benchmarks"]
    lines = [f"# {report['title']}", "",
             "Verification accuracy in percent (mean +- std over the 10 folds); the paper's number in the column beside.",
             ""]
    header = "| model | " + " | ".join(f"{BENCH_TITLES[b]} ours | {BENCH_TITLES[b]} paper" for b in benches) + " |"
    lines += [header, "|---" * (1 + 2 * len(benches)) + "|"]
    for row in report["rows"]:
        cells = []
        for b in benches:
            paper = row["paper"].get(b)
            cells += [_cell(row["ours"].get(b)), f"{paper:.2f}" if paper is not None else "-"]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    lines += ["", "Paper rows: noisy-a and noisy-b against the paper's single Noisy Softmax model, softmax against "
              "its softmax baseline, the ensemble against its ensemble of two Noisy Softmax models.", "",
              "## Training", "", "| model | head | steps | best validation accuracy | final loss | training time |",
              "|---|---|---|---|---|---|"]
    for row in report["rows"]:
        t = row["training"]
        if not t:
            continue
        best = t.get("best_validation_accuracy")
        best_text = f"{100 * best:.2f}% (step {t.get('best_step')})" if best is not None else "-"
        loss = t.get("last_loss")
        secs = t.get("seconds")
        lines.append(f"| {row['model']} | {row['head']} | {t.get('steps', '-')} | {best_text} | "
                     f"{f'{loss:.4f}' if loss is not None else '-'} | {f'{secs / 60:.1f} min' if secs else '-'} |")
    lines += ["", "## Protocol", "", report["protocol"], "",
              "Plots: `training_curves.png` (loss and validation accuracy, softmax vs noisy softmax), "
              + ", ".join(f"`roc_{b}.png`" for b in benches) + ".", ""]
    return "\n".join(lines)


def write_plots(out_dir: Path, report: dict[str, Any]) -> list[str]:
    """ROC curves per benchmark (every model and the ensemble) and the training curves."""
    from facever.workflows.compare import plot_curves, read_metrics
    from facever.verification.report import plot_roc

    written = []
    for bench in report["benchmarks"]:
        curves = []
        for model in (*NOISY, "softmax"):
            path = out_dir / "runs" / model / "eval" / bench / "roc.npz"
            if path.is_file():
                fpr, tpr = _load_roc(path)
                row = next(r for r in report["rows"] if r["model"] == model)
                curves.append((f"{model} ({_cell(row['ours'].get(bench))}%)", fpr, tpr))
        path = out_dir / "ensemble" / bench / "roc.npz"
        if path.is_file():
            fpr, tpr = _load_roc(path)
            row = report["rows"][-1]
            curves.append((f"ensemble ({_cell(row['ours'].get(bench))}%)", fpr, tpr))
        if curves:
            written.append(str(plot_roc(curves, out_dir / f"roc_{bench}.png", title=f"{BENCH_TITLES[bench]} ROC")))
    series = [(f"{m} ({MODELS[m][0]})", read_metrics(out_dir / "runs" / m)) for m in ("softmax", *NOISY)]
    written.append(str(plot_curves(series, out_dir / "training_curves.png",
                                   title="Softmax vs Noisy Softmax: training loss and validation accuracy")))
    return written


def reproduce(settings: ReproduceSettings, out_dir: str | Path, **hooks) -> ReproduceResult:
    """Run (or continue) a reproduction; see `Reproduction` for the hooks."""
    return Reproduction(settings, out_dir, **hooks).run()
