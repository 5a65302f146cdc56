"""Every choice the command line offers (the Enums) and the options several commands share, defined once
so they read and behave the same everywhere; and what the command line itself says (which options were
typed). Typer only reads these objects; sharing them is safe.

Each Enum spells the choices of one library setting; tests/test_cli_options.py checks that they agree
with the library's own lists (`FLIP_MODES`, `HEADS`, ...).
"""

from __future__ import annotations

import functools
import inspect
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import typer

from facever.core import settings


# -- choices -----------------------------------------------------------------------------------------
# Each Enum is made from the library's vocabulary in facever.core.settings: the CLI never restates one.


def choice_enum(name: str, values: tuple[str, ...], doc: str = "") -> type[Enum]:
    """The Enum typer offers for a vocabulary of the library (members are its values)."""
    members = [(value.replace("-", "_"), value) for value in values]
    enum = Enum(name, members, type=str, module=__name__)  # type: ignore[misc]
    enum.__doc__ = doc or f"One of {', '.join(values)} (facever.core.settings)."
    return enum


Flip = choice_enum("Flip", settings.FLIP_MODES)
Select = choice_enum("Select", settings.SELECT_METHODS)
OutputFormat = choice_enum("OutputFormat", settings.OUTPUT_FORMATS)
OnMiss = choice_enum("OnMiss", settings.ON_MISS)
ThresholdMode = choice_enum("ThresholdMode", settings.THRESHOLD_MODES)
Metric = choice_enum("Metric", settings.METRICS)
Convention = choice_enum("Convention", settings.CONVENTIONS)
Benchmark = choice_enum("Benchmark", settings.BENCHMARKS, "Every benchmark a pair list (or splits file, or .bin) can be.")
Variant = choice_enum("Variant", settings.FGLFW_VARIANTS, "The LFW-photo pair lists of `eval-fglfw`.")
IJBSet = choice_enum("IJBSet", settings.IJB_SETS)
Layout = choice_enum("Layout", settings.YTF_LAYOUTS, "Which YouTube Faces frames: auto, frame_images_DB or aligned_images_DB.")
Fusion = choice_enum("Fusion", settings.FUSIONS)
ExportFormat = choice_enum("ExportFormat", settings.EXPORT_FORMATS)
Head = choice_enum("Head", settings.HEADS)
Noise = choice_enum("Noise", settings.NOISE_CHOICES)
Classifier = choice_enum("Classifier", settings.CLASSIFIERS)
Schedule = choice_enum("Schedule", settings.SCHEDULES)
Amp = choice_enum("Amp", settings.AMP_MODES)
Cache = choice_enum("Cache", settings.CACHE_MODES)
SearchBackend = choice_enum("SearchBackend", settings.SEARCH_BACKENDS)


#: What every command that takes a model says about TorchScript (facever.core.model_files).
TORCHSCRIPT_HELP = ("TorchScript is code: it runs only from a file named *.torchscript or *.ts, never because of "
                    "what a file holds (a TorchScript model.pt is refused); load only files you trust.")


# -- options several commands share ------------------------------------------------------------------

FLIP_HELP = (
    "Also embed the mirrored face: none; concat = f(x) then f(flip x), 2x longer (SphereFace, "
    "davidsandberg/facenet); sum = f(x) + f(flip x) (insightface)."
)
DEVICE_HELP = "cpu, cuda, cuda:N, or auto (CUDA when available)."
WEIGHTS_HELP = "facenet:* / arcface:* only: the state dict, e.g. backbone.pth or 20180402-114759-vggface2.pt."


def _prefixed(when: str, help: str) -> str:
    return when + help[0].lower() + help[1:] if when else help


def flip_option(*, when: str = "", help: str = FLIP_HELP) -> Any:
    """`--flip`, default `settings.DEFAULT_FLIP` everywhere; `when` prefixes the help, e.g. "With --model: "."""
    return typer.Option(Flip(settings.DEFAULT_FLIP), "--flip", help=_prefixed(when, help))


def device_option(*, when: str = "", default: str | None = settings.DEFAULT_DEVICE, help: str = DEVICE_HELP) -> Any:
    return typer.Option(default, "--device", help=_prefixed(when, help))


def batch_size_option(*, when: str = "", what: str = "images", default: int = settings.EMBED_BATCH_SIZE) -> Any:
    return typer.Option(default, "--batch-size", "-b", min=1, help=_prefixed(when, f"{what.capitalize()} per forward pass."))


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
CONVENTION = typer.Option(
    Convention(settings.DEFAULT_CONVENTION), "--convention",
    help="Whose number to report: facever (this engine with the options given), or the number insightface's, "
    "facenet's or SphereFace's evaluation script would print on these embeddings (its flip fusion, distance, "
    "mean subtraction, folds, threshold grid and tie rule, VAL rule; on IJB insightface's test mode F1N1D1 and "
    "its 1:N numbers). Example: --convention insightface. See docs/conventions.md.",
)
JSON_OUTPUT = typer.Option(False, "--json", help="Print report.json's content on stdout instead of the table.")
AMP_HELP = (f"Mixed precision: auto ({settings.AMP_AUTO_RULE}), bf16, fp16 or off (float32). Embeddings are float32 "
            "either way; bf16 on a CPU with AMX or AVX512-BF16 is faster.")
AMP = typer.Option(Amp(settings.DEFAULT_AMP), "--amp", help=AMP_HELP)


# -- option groups: one parameter of a command, several options on its command line -------------------


class OptionGroup:
    """Options that several commands share, taken by a command as ONE parameter holding one settings object.

    A command declares `embedding: "EmbedSettings" = model_options(when="With --model: ")`; when the
    command is registered (`expand_option_groups`, in `facever.cli._register`), that parameter becomes
    the group's options (`--flip`, `--batch-size`, ...) on the command line, and the command receives
    `EmbedSettings(flip=..., batch_size=..., ...)`. Adding an option to every command of a group is one
    entry here (and a field of the settings class). `skip` leaves some of the group's options out of one
    command (the settings class's default is used); `help` replaces an option's help there.
    """

    def __init__(self, options: dict[str, tuple[Any, Any]], build: Callable[[dict[str, Any]], Any]):
        self.options = options  # parameter name -> (annotation, typer.Option)
        self.build = build  # {name: value} -> the settings object

    def values(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {name: _plain(kwargs.pop(name)) for name in self.options}


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def model_options(*, when: str = "", what: str = "images", skip: Iterable[str] = (),
                  help: dict[str, str] | None = None) -> OptionGroup:
    """How a model embeds (`facever.workflows.evaluate.EmbedSettings`): --flip, --batch-size, --device, --amp,
    --weights. `when` prefixes their help ("With --model: "); `what` is what a batch holds."""
    help = help or {}
    options = {
        "weights": (Optional[Path], typer.Option(None, "--weights", help=help.get("weights", _prefixed(when, WEIGHTS_HELP)))),
        "flip": (Flip, flip_option(when=when, help=help.get("flip", FLIP_HELP))),
        "batch_size": (int, batch_size_option(when=when, what=what)),
        "device": (str, device_option(when=when)),
        "amp": (Amp, AMP),
    }

    def build(values: dict[str, Any]):
        from facever.workflows.evaluate import EmbedSettings

        return EmbedSettings(**values)

    return OptionGroup({k: v for k, v in options.items() if k not in set(skip)}, build)


#: The scoring options that only pair protocols (k-fold accuracy) have; an IJB set skips them.
PAIR_ONLY = ("thresholds", "metric", "subtract_mean", "allow_missing")


def scoring_options(*, skip: Iterable[str] = (), help: dict[str, str] | None = None) -> OptionGroup:
    """How pairs are scored (`facever.workflows.evaluate.ScoringSettings`): --thresholds, --metric,
    --subtract-mean, --allow-missing, --convention."""
    help = help or {}
    options = {
        "thresholds": (ThresholdMode, THRESHOLDS),
        "metric": (Optional[Metric], METRIC),
        "subtract_mean": (bool, SUBTRACT_MEAN),
        "allow_missing": (bool, allow_missing_option(*([help["allow_missing"]] if "allow_missing" in help else []))),
        "convention": (Convention, CONVENTION),
    }

    def build(values: dict[str, Any]):
        from facever.workflows.evaluate import ScoringSettings

        return ScoringSettings(**values)

    return OptionGroup({k: v for k, v in options.items() if k not in set(skip)}, build)


def expand_option_groups(command: Callable) -> Callable:
    """`command` with each parameter whose default is an `OptionGroup` replaced, in place, by the group's
    options; the wrapper hands the command one settings object per group. Commands without groups are
    returned as they are."""
    signature = inspect.signature(command)
    groups = {name: p.default for name, p in signature.parameters.items() if isinstance(p.default, OptionGroup)}
    if not groups:
        return command
    params = []
    for name, param in signature.parameters.items():
        if name not in groups:
            annotation = param.annotation
            if isinstance(annotation, str):  # `from __future__ import annotations`: typer needs the type
                annotation = eval(annotation, command.__globals__)  # noqa: S307 - the module's own annotation
            params.append(param.replace(annotation=annotation))
            continue
        for option, (annotation, default) in groups[name].options.items():
            if option in signature.parameters:
                raise TypeError(f"{command.__name__}: option {option!r} of group {name!r} clashes with a parameter")
            params.append(inspect.Parameter(option, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                            annotation=annotation))

    @functools.wraps(command)
    def expanded(**kwargs):
        for name, group in groups.items():
            kwargs[name] = group.build(group.values(kwargs))
        return command(**kwargs)

    expanded.__signature__ = signature.replace(parameters=params, return_annotation=None)
    expanded.__annotations__ = {p.name: p.annotation for p in params}
    return expanded


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
