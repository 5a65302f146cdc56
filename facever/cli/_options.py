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

from facever.core import settings


# -- choices -----------------------------------------------------------------------------------------
# Each Enum is made from the library's vocabulary in facever.core.settings: the CLI never restates one.


def _choices(name: str, values: tuple[str, ...], doc: str = "") -> type[Enum]:
    members = [(value.replace("-", "_"), value) for value in values]
    enum = Enum(name, members, type=str, module=__name__)  # type: ignore[misc]
    enum.__doc__ = doc or f"One of {', '.join(values)} (facever.core.settings)."
    return enum


Flip = _choices("Flip", settings.FLIP_MODES)
Select = _choices("Select", settings.SELECT_METHODS)
OutputFormat = _choices("OutputFormat", settings.OUTPUT_FORMATS)
OnMiss = _choices("OnMiss", settings.ON_MISS)
ThresholdMode = _choices("ThresholdMode", settings.THRESHOLD_MODES)
Metric = _choices("Metric", settings.METRICS)
Benchmark = _choices("Benchmark", settings.BENCHMARKS, "Every benchmark a pair list (or splits file, or .bin) can be.")
Variant = _choices("Variant", settings.FGLFW_VARIANTS, "The LFW-photo pair lists of `eval-fglfw`.")
IJBSet = _choices("IJBSet", settings.IJB_SETS)
Layout = _choices("Layout", settings.YTF_LAYOUTS, "Which YouTube Faces frames: auto, frame_images_DB or aligned_images_DB.")
Fusion = _choices("Fusion", settings.FUSIONS)
ExportFormat = _choices("ExportFormat", settings.EXPORT_FORMATS)
Head = _choices("Head", settings.HEADS)
Noise = _choices("Noise", settings.NOISE_MODES)
Classifier = _choices("Classifier", settings.CLASSIFIERS)
Schedule = _choices("Schedule", settings.SCHEDULES)
Amp = _choices("Amp", settings.AMP_MODES)
Cache = _choices("Cache", settings.CACHE_MODES)


#: What every command that takes a model says about TorchScript (facever.core.model_files).
TORCHSCRIPT_HELP = ("TorchScript is code: it runs only from a file named *.torchscript or *.ts, never because of "
                    "what a file holds (a TorchScript model.pt is refused); load only files you trust.")


# -- options several commands share ------------------------------------------------------------------

FLIP_HELP = (
    "Also embed the mirrored face: none; concat = f(x) then f(flip x), 2x longer (SphereFace, "
    "davidsandberg/facenet); sum = f(x) + f(flip x) (insightface)."
)
DEVICE_HELP = "cpu, cuda, cuda:N, or auto (CUDA when available)."


def _prefixed(when: str, help: str) -> str:
    return when + help[0].lower() + help[1:] if when else help


def flip_option(*, when: str = "", help: str = FLIP_HELP) -> Any:
    """`--flip`, default `settings.DEFAULT_FLIP` everywhere; `when` prefixes the help, e.g. "With --model: "."""
    return typer.Option(Flip(settings.DEFAULT_FLIP), "--flip", help=_prefixed(when, help))


def device_option(*, when: str = "", default: str | None = settings.DEFAULT_DEVICE, help: str = DEVICE_HELP) -> Any:
    return typer.Option(default, "--device", help=_prefixed(when, help))


def batch_size_option(*, when: str = "", what: str = "images", default: int = settings.EMBED_BATCH_SIZE) -> Any:
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
AMP_HELP = (f"Mixed precision: auto ({settings.AMP_AUTO_RULE}), bf16, fp16 or off (float32). Embeddings are float32 "
            "either way; bf16 on a CPU with AMX or AVX512-BF16 is faster.")
AMP = typer.Option(Amp(settings.DEFAULT_AMP), "--amp", help=AMP_HELP)


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
