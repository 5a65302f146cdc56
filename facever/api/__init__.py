"""facever's Python API: the quick start's steps as functions (docs/api.md).

    import facever

    facever.align("photos", "aligned")                                   # 1. find, align, crop each face
    facever.write_pairs("aligned/test", "pairs.txt", per_fold=30)        #    pairs of the test people
    facever.train("aligned/train", "runs/a", recipe="cpu-small")         # 2. train a model
    model = facever.load_model("runs/a")
    test = facever.embed(model, "aligned/test")                          # 3. embed the test people
    result = facever.evaluate("pairs.txt", test)                         # 4. 10-fold accuracy, AUC, TAR@FAR
    facever.verify(model, "a.jpg", "b.jpg", threshold=result.threshold)  # two photos

Each function is the library path of the command of the same name (`facever align`, `pairs`, `train`,
`embed`, `eval-lfw`, `verify`): same defaults (`facever.core.settings`), same checks, same files, same
numbers. Nothing here prints; progress, where a function has any, goes to an optional callback.
`import facever` itself imports none of this (and no torch): the names are looked up on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

import numpy as np

from facever.core.embeddings_file import Embeddings, load_embeddings, save_embeddings
from facever.core.errors import FaceverError
from facever.core.settings import (
    DEFAULT_AMP, DEFAULT_CROP_SIZE, DEFAULT_DEVICE, DEFAULT_FLIP, DEFAULT_OUTPUT_FORMAT, DEFAULT_SELECT,
    DEFAULT_THRESHOLDS, EMBED_BATCH_SIZE,
)

if TYPE_CHECKING:  # the types named in signatures; imported for type checkers only (they pull in torch)
    from facever.data_prep.align_dataset import AlignSummary
    from facever.embedding.loading import EmbeddingModel
    from facever.verification.evaluate import VerificationResult
    from facever.workflows.train import TrainOutcome
    from facever.workflows.verify import PairResult

__all__ = [
    "Embeddings", "FaceverError", "align", "embed", "evaluate", "load_embeddings", "load_model", "save_embeddings",
    "train", "verify", "write_pairs",
]

PathLike = Union[str, Path]
#: A model as the functions take it: a loaded one (`load_model`), or what `load_model` takes.
ModelLike = Union["EmbeddingModel", str, Path]


def align(src: PathLike, dst: PathLike, *, size: tuple[int, int] = DEFAULT_CROP_SIZE, select: str = DEFAULT_SELECT,
          device: str = DEFAULT_DEVICE, image_format: str = DEFAULT_OUTPUT_FORMAT,
          say: Callable[[str], None] | None = None) -> "AlignSummary":
    """`facever align SRC DST`: detect the face of each photo under `src` (MTCNN), align it on the 5-point
    template and write the crop under `dst` at the same relative path; photos without a face are listed
    in `dst/align_report.csv`. A rerun resumes. `size` is (height, width)."""
    from facever.data_prep.align_dataset import AlignConfig
    from facever.workflows.align import align as align_folder
    from facever.workflows.align import default_workers

    config = AlignConfig(size=tuple(size), select=select, device=device, format=image_format,
                         workers=default_workers())
    return align_folder(src, dst, config, say=say)


def write_pairs(folder: PathLike, out: PathLike, *, per_fold: int, folds: int = 10, seed: int = 0,
                different_per_fold: int | None = None) -> Path:
    """`facever pairs FOLDER --out OUT`: `folds` x (`per_fold` same + `per_fold`, or `different_per_fold`,
    different) pairs of the people of an identity folder (one sub-folder per person), written to `out`;
    returns `out`."""
    from facever.protocols.pair_lists import write_identity_pairs

    write_identity_pairs(folder, out, folds=folds, per_fold=per_fold, seed=seed, different_per_fold=different_per_fold)
    return Path(out)


def train(data: PathLike, out: PathLike, *, recipe: str | None = None, config: PathLike | None = None,
          say: Callable[[str], None] | None = None, **options: Any) -> "TrainOutcome":
    """`facever train DATA --out OUT [--recipe R] [--config FILE] [--OPTION VALUE ...]`: train a model on the
    identity folder `data` into the run folder `out` (`out/model.pt`). `options` are training settings by
    their config-file names (`epochs=10`, `head="softmax"`, `input_size=(56, 48)`; docs/train.md), over the
    config file, over the recipe. Running it again continues an interrupted run; a run that changed a
    setting is refused, naming it. Returns the outcome (`.result.model_path`, `.config`)."""
    from facever.workflows.train import TrainHooks, TrainRequest, train_run

    request = TrainRequest(out=Path(out), data=Path(data), options=dict(options), recipe=recipe,
                           config_file=Path(config) if config is not None else None)
    return train_run(request, TrainHooks(say=say))


def load_model(spec: PathLike, *, weights: PathLike | None = None, device: str = DEFAULT_DEVICE) -> "EmbeddingModel":
    """A model to embed with: a run folder or `model.pt` of `facever train`, a pretrained model's name
    (`facever models list`), `facenet:vggface2`, `arcface:r50` with `weights`, an `.onnx` graph or an
    exported TorchScript file (docs/models.md)."""
    from facever.embedding.loading import load_embedding_model

    return load_embedding_model(spec, weights=weights, device=device)


def _model(model: ModelLike, device: str):
    return model if not isinstance(model, (str, Path)) else load_model(model, device=device)


def embed(model: ModelLike, images: PathLike | Sequence[PathLike] | np.ndarray | Sequence[np.ndarray], *,
          flip: str = DEFAULT_FLIP, batch_size: int = EMBED_BATCH_SIZE, device: str = DEFAULT_DEVICE,
          amp: str = DEFAULT_AMP, align: bool = False) -> Embeddings:
    """Embeddings of face images: the rows `facever embed` writes for the same images and settings.

    `images`: a folder (every image under it, keyed by its path relative to the folder, e.g.
    `s31/1.jpg`), a text file listing images, or a list of image files (keyed by their paths relative to
    their common folder); or crops already in memory (an N x H x W x 3 uint8 RGB array, or a list of
    H x W x 3 arrays), keyed `0`, `1`, ... and fitted to the model's input as every command fits crops.
    `align`: the files are photos, not crops: find and align one face in each first. An unreadable
    image, or a photo without a face, raises FaceverError naming it. `model`: a loaded model
    (`load_model`) or what `load_model` takes.
    """
    from facever.core.devices import resolve_device

    net = _model(model, device)
    dev = resolve_device(device)
    if isinstance(images, np.ndarray) or (isinstance(images, (list, tuple)) and len(images) > 0
                                          and isinstance(images[0], np.ndarray)):
        return _embed_crops(net, images, flip=flip, batch_size=batch_size, device=dev, amp=amp)
    from facever.embedding.cache import embed_items_cached

    root, rel_paths = _image_files(images)
    aligner = None
    if align:
        from facever.data_prep.align import FaceAligner

        aligner = FaceAligner(size=tuple(net.input_size), device=device)
    emb, _, _ = embed_items_cached(net, root, rel_paths, cache=None, flip=flip, batch_size=batch_size, device=dev,
                                   amp=amp, align=aligner, workers=0 if align else None)
    emb.metadata.pop("cache", None)
    return emb


def _image_files(images: PathLike | Sequence[PathLike]) -> tuple[Path, list[str]]:
    """(root, relative paths): of a folder or a list file as `facever embed` reads them, or of a list of
    files under their common folder."""
    import os

    from facever.data_prep.align_dataset import collect_sources

    if isinstance(images, (str, Path)):
        root, sources = collect_sources(images)
        if not sources:
            raise FaceverError(f"{images}: no images found")
        return root, [rel for _, rel in sources]
    files = [Path(p).resolve() for p in images]
    if not files:
        raise FaceverError("no images given")
    root = Path(os.path.commonpath([str(p.parent) for p in files]))
    return root, [p.relative_to(root).as_posix() for p in files]


def _embed_crops(net, crops, *, flip: str, batch_size: int, device, amp: str) -> Embeddings:
    from facever.core.crop import fit_to_input
    from facever.embedding.extract import array_batches, embed_pixels

    size = tuple(int(v) for v in net.input_size)
    fitted = np.stack([fit_to_input(np.asarray(c, dtype=np.uint8), size) for c in crops])
    rows, settings = embed_pixels(net, array_batches(fitted, batch_size), flip=flip, device=device, amp=amp,
                                  count=len(fitted))
    return Embeddings([str(i) for i in range(len(fitted))], rows, {**net.metadata(), **settings, "flip": flip})


def evaluate(pairs: PathLike, embeddings: PathLike | Embeddings | None = None, *, model: ModelLike | None = None,
             images: PathLike | None = None, benchmark: str = "lfw", ext: str | None = None,
             thresholds: str = DEFAULT_THRESHOLDS, out: PathLike | None = None, flip: str = DEFAULT_FLIP,
             device: str = DEFAULT_DEVICE) -> "VerificationResult":
    """`facever eval-lfw --pairs PAIRS -e EMBEDDINGS` (or another pair benchmark: fglfw, calfw, cplfw,
    ytf, bin): the k-fold protocol on `pairs` (LFW's pairs.txt or a `write_pairs` file) with
    `embeddings` (a file, or `Embeddings` in memory), or with `model` run now over `images`.

    Returns the result: `accuracy_mean`, `kfold` (per-fold thresholds and accuracies), `auc`, `eer`,
    `tar_at_far`, `threshold` (the mean of the fold thresholds, the one `verify` can use) and `to_dict()`
    (report.json). With `out`, report.json, roc.png, det.png and scores.png are written there.
    """
    from facever.workflows.evaluate import EmbedSettings, ScoringSettings, Source, evaluate as run, open_benchmark

    if (embeddings is None) == (model is None):
        raise FaceverError("give either embeddings or a model", options=("embeddings", "model"))
    bench = open_benchmark(benchmark, pairs, data=images, ext=ext)
    if model is not None and not isinstance(model, (str, Path)):
        raise FaceverError("evaluate takes a model by its name or path (the workflow loads it on its device)")
    source = Source(model=str(model)) if model is not None else Source(embeddings=embeddings)
    evaluation = run(bench, source, embed=EmbedSettings(flip=flip, device=device),
                     scoring=ScoringSettings(thresholds=thresholds), out=out)
    return evaluation.result


def verify(model: ModelLike, image_a: PathLike, image_b: PathLike, *, threshold: float | None = None,
           aligned: bool = False, flip: str = DEFAULT_FLIP, device: str = DEFAULT_DEVICE,
           amp: str = DEFAULT_AMP) -> "PairResult":
    """`facever verify A B`: the cosine similarity of two photos' faces and, given a `threshold`, the
    decision (`same` iff cosine > threshold). `aligned`: the files are aligned crops already."""
    from facever.core.devices import resolve_device
    from facever.workflows.verify import verify_pairs

    net = _model(model, device)
    aligner = None
    if not aligned:
        from facever.data_prep.align import FaceAligner

        aligner = FaceAligner(size=tuple(net.input_size), device=device)
    result = verify_pairs(net, [(str(image_a), str(image_b))], threshold=threshold, aligner=aligner, flip=flip,
                          device=resolve_device(device), amp=amp)
    return result.pairs[0]
