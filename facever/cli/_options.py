"""Every choice the command line offers (the Enums) and the options several commands share, defined once
so they read and behave the same everywhere; and what the command line itself says (which options were
typed). Typer only reads these objects; sharing them is safe.

Each Enum spells the choices of one library setting; tests/test_cli_options.py checks that they agree
with the library's own lists (`FLIP_MODES`, `HEADS`, ...).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Iterable

import typer


# -- choices -----------------------------------------------------------------------------------------


class Flip(str, Enum):
    none = "none"
    concat = "concat"
    sum = "sum"


class Select(str, Enum):
    largest = "largest"
    center = "center"


class OutputFormat(str, Enum):
    jpg = "jpg"
    png = "png"


class OnMiss(str, Enum):
    skip = "skip"
    center_crop = "center-crop"


class ThresholdMode(str, Enum):
    exact = "exact"
    grid = "grid"


class Metric(str, Enum):
    cosine = "cosine"
    l2 = "l2"


class Benchmark(str, Enum):
    """Every benchmark a pair list (or splits file, or .bin) can be."""

    lfw = "lfw"
    fglfw = "fglfw"
    calfw = "calfw"
    cplfw = "cplfw"
    ytf = "ytf"
    bin = "bin"
    ijbc = "ijbc"
    ijbb = "ijbb"


class Variant(str, Enum):
    """The LFW-photo pair lists of `eval-fglfw`."""

    fglfw = "fglfw"
    calfw = "calfw"
    cplfw = "cplfw"


class IJBSet(str, Enum):
    ijbc = "ijbc"
    ijbb = "ijbb"


class Layout(str, Enum):
    """Which YouTube Faces frames: auto, frame_images_DB or aligned_images_DB."""

    auto = "auto"
    frames = "frames"
    aligned = "aligned"


class Fusion(str, Enum):
    concat = "concat"
    score_mean = "score-mean"


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"


class Head(str, Enum):
    noisy_softmax = "noisy-softmax"
    softmax = "softmax"


class Noise(str, Enum):
    batch = "batch"
    sample = "sample"


class Classifier(str, Enum):
    full = "full"
    sharded = "sharded"


class Schedule(str, Enum):
    step = "step"
    cosine = "cosine"


class Amp(str, Enum):
    auto = "auto"
    bf16 = "bf16"
    fp16 = "fp16"
    off = "off"


class Cache(str, Enum):
    none = "none"
    memmap = "memmap"
    device = "device"


# -- options several commands share ------------------------------------------------------------------

FLIP_HELP = (
    "Also embed the mirrored face: none; concat = f(x) then f(flip x), 2x longer (SphereFace, "
    "davidsandberg/facenet); sum = f(x) + f(flip x) (insightface)."
)
DEVICE_HELP = "cpu, cuda, cuda:N, or auto (CUDA when available)."


def _prefixed(when: str, help: str) -> str:
    return when + help[0].lower() + help[1:] if when else help


def flip_option(*, when: str = "", default: Flip = Flip.none, help: str = FLIP_HELP) -> Any:
    """`--flip`; `when` prefixes the help, e.g. "With --model: "."""
    return typer.Option(default, "--flip", help=_prefixed(when, help))


def device_option(*, when: str = "", default: str | None = "auto", help: str = DEVICE_HELP) -> Any:
    return typer.Option(default, "--device", help=_prefixed(when, help))


def batch_size_option(*, when: str = "", what: str = "images", default: int = 64) -> Any:
    return typer.Option(default, "--batch-size", "-b", min=1, help=_prefixed(when, f"{what.capitalize()} per forward pass."))


def model_weights_option() -> Any:
    """`--weights` of the commands that embed with `--model`: the state dict of a facenet:* or arcface:* model."""
    return typer.Option(None, "--weights", help="With --model facenet:* or arcface:*: the state dict file.")


def allow_missing_option(help: str = "Drop pairs whose images have no embedding (folds stay as in the file).") -> Any:
    return typer.Option(False, "--allow-missing", help=help)


THRESHOLDS = typer.Option(
    ThresholdMode.exact,
    "--thresholds",
    help="exact: midpoints between training scores (best possible); grid: facenet/insightface's 0:4:0.01 grid.",
)
METRIC = typer.Option(
    None, "--metric", help="cosine (default) or l2 (squared distance of normalised embeddings; default for grid)."
)
SUBTRACT_MEAN = typer.Option(
    False, "--subtract-mean", help="Subtract the 9 training folds' mean embedding first (SphereFace)."
)
JSON_OUTPUT = typer.Option(False, "--json", help="Print report.json's content on stdout instead of the table.")
AMP = typer.Option(
    None, "--amp/--no-amp", help="bf16 autocast (default: on for CUDA and for CPUs with native bf16, AMX/AVX512-BF16; "
    "--no-amp for float32). Output is float32.",
)


def explicit_parameters(names: Iterable[str]) -> set[str] | None:
    """Which of `names` the user gave on the command line (or through the environment).

    Uses click's parameter source of the running command; None outside a click command (then
    every non-None value counts as given).
    """
    try:  # typer >= 0.2x vendors click as typer._click; older typer depends on click itself
        from typer._click.core import ParameterSource
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - depends on the installed typer
        try:
            from click import get_current_context
            from click.core import ParameterSource
        except ImportError:
            return None
    ctx = get_current_context(silent=True)
    if ctx is None:
        return None
    given = set()
    for name in names:
        source = ctx.get_parameter_source(name)
        # None: not a parameter of this command (a value the caller computed): counts as given.
        if source not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            given.add(name)
    return given
