"""Every vocabulary and every shared default of facever, stated once.

The command line's choices and option defaults, the training config's fields, the config files' keys,
the library's keyword defaults and the docs' tables all read these names; nothing else restates them.
Torch-free on purpose: `facever --help` imports this module.

Adding a choice (a head, a flip mode, a benchmark) starts here; the CLI offers it from here and the
library checks against it with `check_choice`.
"""

from __future__ import annotations

import math
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

#: The crop an aligned face is written at, (height, width): the paper's 112x96 template.
DEFAULT_CROP_SIZE = (112, 96)
SELECT_METHODS = ("largest", "center")
DEFAULT_SELECT = "largest"
#: The smallest face, in pixels, MTCNN looks for when a command aligns photos.
DEFAULT_MIN_FACE = 20
#: Images per detector call when aligning a folder.
ALIGN_BATCH_SIZE = 64
OUTPUT_FORMATS = ("jpg", "png")
DEFAULT_OUTPUT_FORMAT = "jpg"
ON_MISS = ("skip", "center-crop")
DEFAULT_ON_MISS = "skip"

# -- training --------------------------------------------------------------------------------------------

#: The classification heads: plain softmax, Noisy Softmax (the paper), and the margin heads the field
#: trains with since 2018. Each is one transform of the target logit (facever.training.heads).
HEADS = ("noisy-softmax", "softmax", "sphereface", "cosface", "arcface")
DEFAULT_HEAD = "noisy-softmax"
#: The heads that change the target logit by a margin (`margin` is theirs alone).
MARGIN_HEADS = ("sphereface", "cosface", "arcface")
#: Each margin head's default margin, as its paper and reference code: SphereFace's m = 4 (the
#: multiplicative angular margin, an integer), CosFace's m = 0.35 (the cosine margin of its paper;
#: insightface's arcface_torch uses 0.4), ArcFace's m = 0.5 (radians, insightface).
DEFAULT_MARGINS = {"sphereface": 4.0, "cosface": 0.35, "arcface": 0.5}
#: The margins each accepts: SphereFace's layer types SINGLE..QUADRUPLE (m = 1..4); a cosine margin in
#: [0, 1]; an angle margin in [0, pi/2) radians.
SPHEREFACE_MARGINS = (1, 2, 3, 4)
COSFACE_MARGIN_RANGE = (0.0, 1.0)
ARCFACE_MARGIN_RANGE = (0.0, math.pi / 2)
#: The cosine scale s of each head (`cosine_scale`; 0 = unnormalised logits). CosFace and ArcFace score
#: cosines only (s > 0; 64 in both papers); SphereFace keeps ||x|| (its class weights are normalised).
DEFAULT_COSINE_SCALES = {"noisy-softmax": 0.0, "softmax": 0.0, "sphereface": 0.0, "cosface": 64.0, "arcface": 64.0}
COSINE_ONLY_HEADS = ("cosface", "arcface")
#: SphereFace's annealed blend lambda = max(lambda_min, base * (1 + gamma * iteration) ** -power), as
#: (base, gamma, power, lambda_min): the values of SphereFace's own training prototxt.
DEFAULT_SPHEREFACE_LAMBDA = (1000.0, 0.12, 1.0, 5.0)
#: Noisy Softmax draws one xi per mini-batch (the authors' Caffe layer) or one per sample.
NOISE_MODES = ("batch", "sample")
#: `noise` as an option: off, or one of the modes. Noisy Softmax's default is `batch`; every other head
#: has no noise unless asked (`noise = "batch"` on a margin head is Noisy ArcFace, and so on).
NOISE_OFF = "off"
NOISE_CHOICES = (NOISE_OFF, *NOISE_MODES)
DEFAULT_NOISE = "batch"
#: The paper's alpha^2 on faces (0.05 on CIFAR-10).
DEFAULT_ALPHA2 = 0.1
#: A sample counts as saturated when its target probability exceeds this (the training instruments).
SATURATION_LEVEL = 0.99
#: The training instruments every line of a run's metrics.jsonl holds beside the loss (means over the
#: line's steps and every rank's samples): the target class's probability p_y; the share of samples
#: with p_y > SATURATION_LEVEL; the size of the cross-entropy's gradient on the plain target logit
#: ((1 - p_y) times the head's d f'_y / d f_y; 1 - p_y for softmax); the angle between embedding and
#: class weight (degrees); the size of the noise's change of the target logit (noisy heads only); the
#: share of samples whose plain target logit is the largest (training accuracy; the epoch line holds
#: it over the whole epoch).
TRAINING_INSTRUMENTS = ("target_prob", "saturated", "target_grad", "target_angle", "noise", "train_accuracy")
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


def default_noise(head: str) -> str:
    """The noise a head has when `noise` is not set: Noisy Softmax's `batch`, off for every other head."""
    return DEFAULT_NOISE if head == "noisy-softmax" else NOISE_OFF
