"""Every vocabulary and every shared default of facever, stated once.

The command line's choices and option defaults, the training config's fields, the config files' keys,
the library's keyword defaults and the docs' tables all read these names; nothing else restates them.
Torch-free on purpose: `facever --help` imports this module.

Adding a choice (a head, a flip mode, a benchmark) starts here; the CLI offers it from here and the
library checks against it with `check_choice`.
"""

from __future__ import annotations

from typing import Iterable

from facever.core.errors import FaceverError

# -- embedding -----------------------------------------------------------------------------------------

#: How the mirrored face joins the embedding: none; concat = [f(x), f(flip x)] (SphereFace,
#: davidsandberg/facenet); sum = f(x) + f(flip x) (insightface).
FLIP_MODES = ("none", "concat", "sum")
#: One default for every command that embeds and for validation during training, so that a model's
#: validation accuracy and `facever eval-lfw`'s default accuracy on the same pairs are the same number.
#: concat is the convention of the paper's generation (SphereFace's evaluation, facenet).
DEFAULT_FLIP = "concat"

#: Mixed precision, one meaning everywhere (training and inference): auto, bf16, fp16, off.
AMP_MODES = ("auto", "bf16", "fp16", "off")
DEFAULT_AMP = "auto"
#: What `auto` means, for every command (facever.core.devices.resolve_amp implements it): bf16 autocast
#: on CUDA (fp16 where the GPU has no bf16), float32 on a CPU, so that a CPU's numbers do not depend on
#: which CPU ran them. `bf16` on a CPU with AMX or AVX512-BF16 is faster; elsewhere it is emulated.
AMP_AUTO_RULE = "bf16 on CUDA (fp16 on GPUs without bf16), off (float32) on a CPU"

#: Images per forward pass when embedding (embed, eval-*, verify, ensemble, validation).
EMBED_BATCH_SIZE = 64
#: cpu, cuda, cuda:N, or auto (CUDA when available).
DEFAULT_DEVICE = "auto"

# -- scoring ---------------------------------------------------------------------------------------------

METRICS = ("cosine", "l2")
DEFAULT_METRIC = "cosine"
#: exact: midpoints between training scores; grid: facenet/insightface's 0:4:0.01 grid of distances.
THRESHOLD_MODES = ("exact", "grid")
DEFAULT_THRESHOLDS = "exact"
#: Whose numbers a report gives (facever.verification.conventions): facever's engine with the settings
#: given, or the number insightface's / facenet's / SphereFace's evaluation script would print (their
#: flip fusion, distance, mean subtraction, folds, threshold grid and tie rule, VAL rule; on IJB,
#: insightface's test mode F1N1D1 and its 1:N numbers).
CONVENTIONS = ("facever", "insightface", "facenet", "sphereface")
DEFAULT_CONVENTION = "facever"
#: How `facever ensemble` joins models: concatenated normalised embeddings, or the mean of the scores.
FUSIONS = ("concat", "score-mean")
DEFAULT_FUSION = "concat"

# -- deployment: calibration, 1:N search, self-check ----------------------------------------------------

#: Target false-accept rates `facever calibrate` calibrates by default.
DEFAULT_FARS = (1e-2, 1e-3, 1e-4)
#: Confidence of the one-sided Clopper-Pearson bound on a calibrated threshold's false-accept rate.
CALIBRATION_CONFIDENCE = 0.95
#: Score-to-probability maps `facever calibrate --probability` fits (and compares on held-out folds).
PROBABILITY_MAPS = ("isotonic", "logistic")
#: How `facever identify` searches a gallery: an exact matrix product in numpy, or FAISS's exact flat index.
SEARCH_BACKENDS = ("numpy", "faiss")
DEFAULT_SEARCH_BACKEND = "numpy"
#: People listed per photo by `facever identify`.
DEFAULT_TOP_K = 5

# -- benchmarks ------------------------------------------------------------------------------------------

#: Every benchmark a pair list (or splits file, or .bin) can be, then the IJB sets.
PAIR_BENCHMARKS = ("lfw", "fglfw", "calfw", "cplfw", "ytf", "bin")
IJB_SETS = ("ijbc", "ijbb")
BENCHMARKS = PAIR_BENCHMARKS + IJB_SETS
#: The LFW-photo pair lists of `eval-fglfw`.
FGLFW_VARIANTS = ("fglfw", "calfw", "cplfw")
#: Which YouTube Faces frames: auto, frame_images_DB or aligned_images_DB.
YTF_LAYOUTS = ("auto", "frames", "aligned")

# -- alignment -------------------------------------------------------------------------------------------

SELECT_METHODS = ("largest", "center")
DEFAULT_SELECT = "largest"
#: The smallest face, in pixels, MTCNN looks for when a command aligns photos.
DEFAULT_MIN_FACE = 20
OUTPUT_FORMATS = ("jpg", "png")
ON_MISS = ("skip", "center-crop")

# -- training --------------------------------------------------------------------------------------------

HEADS = ("noisy-softmax", "softmax")
DEFAULT_HEAD = "noisy-softmax"
#: Noisy Softmax draws one xi per mini-batch (the authors' Caffe layer) or one per sample.
NOISE_MODES = ("batch", "sample")
DEFAULT_NOISE = "batch"
#: The paper's alpha^2 on faces (0.05 on CIFAR-10).
DEFAULT_ALPHA2 = 0.1
CLASSIFIERS = ("full", "sharded")
SCHEDULES = ("step", "cosine")
CACHE_MODES = ("none", "memmap", "device")
#: Batch size per process of a training run.
TRAIN_BATCH_SIZE = 256

# -- output folders --------------------------------------------------------------------------------------

#: The kinds of folder facever writes, each with the files that show a folder is facever's output of
#: that kind when it was written before facever marked its folders (facever.core.output_folders).
OUTPUT_KINDS = {
    "align": ("alignment.json", "align_report.csv"),
    "evaluation": ("report.json", "embedding_cache", "frame_cache"),
    "ijb-crops": (),
    "train": ("config.toml", "checkpoint.pt", "model.pt"),
    "compare": ("compare.json", "compare.md"),
    "demo": (".facever-demo",),
    "reproduce": ("reproduce.json", "stages"),
}

# -- models out ------------------------------------------------------------------------------------------

EXPORT_FORMATS = ("onnx", "torchscript")
#: The file names under which facever loads (and `facever export` writes) a TorchScript model.
#: TorchScript is code: it is run only from a file named so, never because of what a file holds
#: (facever.core.model_files).
TORCHSCRIPT_SUFFIXES = (".torchscript", ".ts")
#: The file name of an ONNX graph (read with onnxruntime, which runs no Python).
ONNX_SUFFIX = ".onnx"

# -- pretrained models by name (`--model arcface-r50-webface600k`, `facever models`) --------------------

#: Which facever loader a registry model's file needs: an ONNX graph run by onnxruntime, or a
#: facenet-pytorch InceptionResnetV1 state dict (read with torch.load(weights_only=True)).
PRETRAINED_FORMATS = ("onnx", "facenet")
#: Root of facever's own files; pulled models go to `$FACEVER_HOME/models/`. Unset: the platform's
#: cache folder (`~/.cache/facever`, `~/Library/Caches/facever`, `%LOCALAPPDATA%\facever\Cache`).
HOME_ENV = "FACEVER_HOME"
#: A base URL (http, https or file) serving the registry's files under their own names, used instead
#: of the publishers' URLs: for air-gapped machines and for tests.
MODEL_MIRROR_ENV = "FACEVER_MODEL_MIRROR"
#: Set to 1: never try the network for model files (the error says what to download and where to put it).
OFFLINE_ENV = "FACEVER_OFFLINE"


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """`value` when it is one of `choices`; else a `ChoiceError` naming the setting (the parameter name, which
    a front end writes its own way: `--flip`), the choices and the value."""
    choices = tuple(choices)
    if value not in choices:
        raise ChoiceError(f"`{name}` must be one of {', '.join(choices)}, got {value!r}", options=(name,))
    return value  # type: ignore[return-value]


class ChoiceError(FaceverError, ValueError):
    """A setting outside its vocabulary."""
