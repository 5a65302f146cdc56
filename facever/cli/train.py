"""`facever train DATA --out RUN`: train a face embedding model with Noisy Softmax (or plain softmax).

Its options are the training settings, built from one table (`facever.training.config.OPTION_HELP`:
one help line per TrainConfig field; the type, the choices and the default come from the field
itself), plus the few that belong to the command. The workflow (`facever.workflows.train`) does the
rest: layering, resume, the run folder, ranks.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from facever.cli._options import choice_enum
from facever.training.config import OPTION_HELP, TrainConfig
from facever.training.config_files import CHOICES, PATH_KEYS

SHORT_FLAGS = {"batch_size": "-b", "workers": "-j"}
METAVARS = {"input_size": "HxW", "milestones": "EPOCHS", "sphereface_lambda": "BASE,GAMMA,POWER,MIN"}
# Settings typed as comma-separated numbers, and what the error says they should look like.
NUMBER_LISTS = {"milestones": "comma-separated epochs such as 10,15,18",
                "sphereface_lambda": "4 comma-separated numbers such as 1000,0.12,1,5"}


def train(
    data: Optional[Path] = typer.Argument(
        None, help="Identity folder (DATA/<person>/<crop>.jpg), a RecordIO train.rec, or a folder with train.rec + "
        "train.idx. May come from --config (key `data`) instead.", show_default=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: checkpoint.pt, model.pt, metrics.jsonl, config.toml. "
                             "Running the same command again continues the run in it."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Start from a shipped recipe (`facever recipes` lists them), e.g. paper-casia-sphere20; --config and options override it."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="TOML file of options (keys as the options: arch = \"sphere20\", batch_size = 512, milestones = [16, 24]); options given here override it. RUN/config.toml of a run works."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its checkpoint.pt exactly, its own options being the defaults (DATA too); without --resume the command must be the one that started it."),
    log_every: Optional[int] = typer.Option(None, "--log-every", min=1, help="Steps per line in metrics.jsonl (default 10; a continued run keeps its own)."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log loss, learning rate and validation to RUN/tensorboard (needs the tensorboard package)."),
    json_output: bool = typer.Option(False, "--json", help="Print a JSON summary of the run on stdout."),
    **settings: Any,
) -> None:
    """Train a face embedding model on an identity folder or an InsightFace RecordIO file.

    Writes RUN/model.pt (the embedding model `facever embed` loads; the best by validation accuracy
    when validating), RUN/checkpoint.pt (full state; Ctrl-C saves it and running the same command
    again continues exactly) and RUN/metrics.jsonl. Under `torchrun --nproc_per_node=N -m facever
    train ...` it trains with DistributedDataParallel (NCCL on GPUs, gloo on CPU).

    Examples:

        facever train casia/ --out runs/ns --epochs 28 --milestones 16,24 --amp bf16 --channels-last --cache memmap

        facever train faces_webface_112x112/ --out runs/rec --head softmax --holdout-identities 200

        facever train casia/ --out runs/ns --resume

        facever train casia/ --recipe paper-casia-sphere20 --out runs/paper --epochs 2

        facever train --config runs/paper/config.toml --out runs/paper-again
    """
    from facever.cli._console import (
        TrainingProgress, info, library_warnings, log_on_request, stop_on_signal, user_errors, warn,
    )
    from facever.workflows.train import TrainHooks, TrainRequest, train_run

    request = TrainRequest(out=out, data=data, options=_typed(settings), recipe=recipe, config_file=config_file,
                           resume=resume, log_every=log_every, tensorboard=tensorboard)
    bars = TrainingProgress()
    hooks = TrainHooks(say=info, warn=warn, progress=bars.step, scan_progress=bars.scan, stop_signals=stop_on_signal)
    # RUN/training.log (rank 0) gets what this console shows once the run starts, its last line included.
    with log_on_request() as log_to, library_warnings(), user_errors():
        try:
            outcome = train_run(request, dataclasses.replace(hooks, log_to=log_to))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        finally:
            bars.close()
        if outcome.is_main:
            _report(outcome, out, json_output)
    if outcome.is_main and outcome.result.interrupted:
        raise typer.Exit(130)


# -- the training settings as options ----------------------------------------------------------------------


def _typed(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings typed on the command line as TrainConfig values; those left at their default are
    not given (a recipe's or config file's value stands)."""
    from facever.cli._options import explicit_parameters
    from facever.core.sizes import parse_size

    typed = explicit_parameters(settings)
    values = {}
    for name, value in settings.items():
        if value is None or (typed is not None and name not in typed):
            continue
        try:
            if name == "input_size":
                value = parse_size(value)
            elif name in NUMBER_LISTS:
                value = tuple(float(p) for p in value.split(",") if p.strip())
        except ValueError as exc:
            detail = str(exc) if name == "input_size" else f"expected {NUMBER_LISTS[name]}, got {value!r}"
            raise typer.BadParameter(detail, param_hint=_flag(name)) from None
        if isinstance(value, Enum):
            value = value.value
        values[name] = str(Path(value).resolve()) if name in PATH_KEYS else value
    return values


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _setting_option(field: dataclasses.Field, hint: Any) -> inspect.Parameter:
    """One typer option for a TrainConfig field: flag, type, choices, help (settings in backticks written
    as flags) and the field's default shown, while the value stays None when not given (so that a
    recipe or config file keeps its own)."""
    name = field.name
    args = typing.get_args(hint)
    base = next(a for a in args if a is not type(None)) if type(None) in args else hint  # X | None -> X
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    flags = [_flag(name)] + ([SHORT_FLAGS[name]] if name in SHORT_FLAGS else [])
    kind: Any = base
    extra: dict[str, Any] = {}
    if base is bool:
        flags = [f"{_flag(name)}/--no-{_flag(name)[2:]}"]
        default = None  # a switch shows both spellings; the help says what it does
    elif name in CHOICES:
        kind = choice_enum(name.title().replace("_", ""), CHOICES[name])
        default = None if default is None else kind(default)  # None: the help says what it depends on
    elif name in PATH_KEYS:
        kind = Path
    elif typing.get_origin(base) is tuple:
        kind, extra["metavar"] = str, METAVARS.get(name)
        default = None if default is None else ",".join(f"{v:g}" for v in default)
    help_text = re.sub(r"`(\w+)`", lambda m: _flag(m[1]) if m[1] in OPTION_HELP else m[0], OPTION_HELP[name])
    option = typer.Option(default, *flags, help=help_text, show_default=default is not None, **extra)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind])


def _with_settings(command):
    """`command` with its `**settings` replaced by one option per entry of OPTION_HELP, in its order."""
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    own = [p.replace(annotation=typing.get_type_hints(command).get(p.name, p.annotation)) for p in own]
    first, last = own[:4], own[4:]  # DATA, --out, --recipe, --config; then the settings; then the rest
    added = [_setting_option(fields[name], hints[name]) for name in OPTION_HELP]
    command.__signature__ = signature.replace(parameters=[
        *first, *(p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in added), *last])
    return command


train = _with_settings(train)


# -- what the run says at the end ------------------------------------------------------------------------


def _report(outcome, out: Path, json_output: bool) -> None:
    import json
    import sys

    from facever.cli._console import info

    result = outcome.result
    summary = {
        "out": str(result.out_dir), "steps": result.steps, "total_steps": result.total_steps,
        "interrupted": result.interrupted, "model": str(result.model_path) if result.model_path else None,
        "model_last": str(result.last_model_path) if result.last_model_path else None,
        "best_accuracy": result.best_accuracy, "best_step": result.best_step, "num_classes": result.num_classes,
        "num_images": result.num_images, "skipped_images": len(result.failures), "last_loss": result.last_loss,
    }
    if json_output:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    elif result.interrupted:
        info(f"stopped at step {result.steps}/{result.total_steps}; run the same command again to continue "
             f"(or: facever train {outcome.data} --out {out} --resume)")
    else:
        acc = f", best validation accuracy {result.best_accuracy:.4f} at step {result.best_step}" if result.best_accuracy is not None else ""
        done = "was trained before: " if outcome.already_done else ""
        info(f"{done}trained {result.steps} steps on {result.num_images} images of {result.num_classes} identities{acc}; "
             f"model: {result.model_path}")
