"""The command line's choices (facever/cli/_options.py) are the library's vocabularies (facever/core/settings.py),
and the library's own lists are those same tuples: a choice added to one side and not the other fails here."""

from __future__ import annotations

import pytest

from facever.cli import _options as o
from facever.core import settings
from facever.data_prep.align import SELECT_METHODS
from facever.data_prep.align_dataset import ON_MISS, OUTPUT_FORMATS
from facever.embedding.ensemble import FUSIONS
from facever.embedding.export import FORMATS as EXPORT_FORMATS
from facever.protocols.catalog import BENCHMARKS
from facever.protocols.fglfw import VARIANTS
from facever.protocols.ijb import SETS as IJB_SETS
from facever.protocols.ytf import LAYOUTS
from facever.training.heads import HEADS as HEAD_CLASSES
from facever.verification.scores import METRICS

PAIRS = [
    (o.Flip, settings.FLIP_MODES), (o.Select, SELECT_METHODS), (o.OutputFormat, OUTPUT_FORMATS), (o.OnMiss, ON_MISS),
    (o.Metric, METRICS), (o.Benchmark, BENCHMARKS + IJB_SETS), (o.IJBSet, IJB_SETS), (o.Variant, VARIANTS),
    (o.Layout, ("auto", *LAYOUTS)), (o.Fusion, FUSIONS), (o.ExportFormat, EXPORT_FORMATS),
    (o.Head, tuple(HEAD_CLASSES)), (o.Noise, settings.NOISE_CHOICES), (o.Classifier, settings.CLASSIFIERS),
    (o.Schedule, settings.SCHEDULES), (o.Amp, settings.AMP_MODES), (o.Cache, settings.CACHE_MODES),
    (o.ThresholdMode, settings.THRESHOLD_MODES), (o.SearchBackend, settings.SEARCH_BACKENDS),
]


@pytest.mark.parametrize("enum, library", PAIRS, ids=lambda x: getattr(x, "__name__", ""))
def test_cli_choices_are_the_library_choices(enum, library):
    assert [e.value for e in enum] == list(library)


def test_every_default_is_one_of_its_choices():
    pairs = [("DEFAULT_FLIP", "FLIP_MODES"), ("DEFAULT_AMP", "AMP_MODES"), ("DEFAULT_HEAD", "HEADS"),
             ("DEFAULT_NOISE", "NOISE_MODES"), ("DEFAULT_METRIC", "METRICS"), ("DEFAULT_THRESHOLDS", "THRESHOLD_MODES"),
             ("DEFAULT_FUSION", "FUSIONS"), ("DEFAULT_SELECT", "SELECT_METHODS"),
             ("DEFAULT_SEARCH_BACKEND", "SEARCH_BACKENDS")]
    for default, choices in pairs:
        assert getattr(settings, default) in getattr(settings, choices), default


def test_check_choice_names_the_setting():
    from facever.core.errors import FaceverError

    assert settings.check_choice("flip", "sum", settings.FLIP_MODES) == "sum"
    with pytest.raises(FaceverError, match=r"`flip` must be one of none, concat, sum, got 'both'") as err:
        settings.check_choice("flip", "both", settings.FLIP_MODES)
    assert err.value.options == ("flip",) and isinstance(err.value, ValueError)


def test_threshold_modes_are_the_engines(tmp_path):
    import numpy as np

    from facever.verification.tenfold import kfold_accuracy

    scores = np.linspace(0, 1, 40)
    labels = np.tile([True, False], 20)
    folds = np.repeat(np.arange(10), 4)
    for mode in o.ThresholdMode:
        kfold_accuracy(scores, labels, folds, thresholds=mode.value, greater_is_same=mode is o.ThresholdMode.exact)
    with pytest.raises(ValueError, match="thresholds must be"):
        kfold_accuracy(scores, labels, folds, thresholds="other")


def test_every_enum_in_the_cli_lives_in_options():
    import ast
    from pathlib import Path

    cli = Path(o.__file__).parent
    stray = []
    for path in sorted(cli.glob("*.py")):
        if path.name == "_options.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any("Enum" in ast.unparse(b) for b in node.bases):
                stray.append(f"{path.name}:{node.lineno} {node.name}")
    assert not stray, f"CLI choices defined outside cli/_options.py: {stray}"


# -- shared options: declared once, the same on every command, defaults from facever.core.settings ---------

SCORING_COMMANDS = ["eval-lfw", "eval-fglfw", "eval-ytf", "eval-bin", "ensemble"]
EMBEDDING_COMMANDS = ["embed", "verify", "eval-lfw", "eval-fglfw", "eval-ytf", "eval-bin", "eval-ijb", "ensemble"]


def _options_of(name: str) -> dict:
    from facever.cli import build_command

    command = build_command().commands[name]
    return {opt: p for p in command.params for opt in getattr(p, "opts", []) if opt.startswith("--")}


@pytest.mark.parametrize("name", EMBEDDING_COMMANDS)
def test_every_command_that_embeds_has_the_model_options_with_settings_defaults(name):
    from facever.core import settings

    options = _options_of(name)
    assert options["--flip"].default.value == settings.DEFAULT_FLIP
    assert options["--device"].default == settings.DEFAULT_DEVICE
    assert "--amp" in options
    assert options["--batch-size"].default == settings.EMBED_BATCH_SIZE


@pytest.mark.parametrize("name", SCORING_COMMANDS)
def test_every_pair_scoring_command_has_the_scoring_options(name):
    from facever.core import settings

    options = _options_of(name)
    assert options["--thresholds"].default.value == settings.DEFAULT_THRESHOLDS
    assert options["--metric"].default is None and options["--subtract-mean"].default is False
    assert ("--allow-missing" in options) == (name != "eval-bin")  # a .bin has every image or is refused


def test_an_option_group_is_one_settings_object(tmp_path):
    """A command declares a group as one parameter; its options appear on the command line, typed and
    checked, and the command receives one settings object; `skip` leaves options out."""
    import typer
    from typer.testing import CliRunner

    from facever.workflows.evaluate import EmbedSettings, ScoringSettings

    got = {}

    def command(name: str = typer.Option("x", "--name"), embedding=o.model_options(skip=("weights",)),
                scoring=o.scoring_options(skip=("allow_missing",))) -> None:
        got.update(name=name, embedding=embedding, scoring=scoring)

    app = typer.Typer()
    app.command("run")(o.expand_option_groups(command))
    app.command("other")(lambda: None)
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--flip", "sum", "-b", "7", "--thresholds", "grid", "--metric", "l2",
                                 "--name", "y"])
    assert result.exit_code == 0, result.output
    assert got["name"] == "y"
    assert got["embedding"] == EmbedSettings(flip="sum", batch_size=7)
    assert got["scoring"] == ScoringSettings(thresholds="grid", metric="l2")
    for refused in (["--weights", "w.pt"], ["--allow-missing"], ["--flip", "sideways"], ["-b", "0"]):
        assert runner.invoke(app, ["run", *refused]).exit_code == 2, refused

    def clash(weights: str = typer.Option("1,1", "--weights"), embedding=o.model_options()) -> None:
        pass

    with pytest.raises(TypeError, match="'weights' of group 'embedding' clashes"):
        o.expand_option_groups(clash)


def test_every_training_setting_is_an_option_of_train_with_its_default_shown():
    """`facever train`'s settings are built from TrainConfig and its help table: a field added with a help
    line is an option (type, choices and default from the field); a field without one is config-file only,
    and the list of those is this one."""
    import dataclasses

    from facever.cli import build_command
    from facever.training.config import OPTION_HELP, TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert set(OPTION_HELP) <= set(fields)
    assert set(fields) - set(OPTION_HELP) == {"data", "lr_gamma"}
    params = {p.name: p for p in build_command().commands["train"].params}
    for name in OPTION_HELP:
        field, param = fields[name], params[name]
        assert param.opts[0] == "--" + name.replace("_", "-") or param.secondary_opts, name
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        if isinstance(default, bool):
            assert param.default is None and param.secondary_opts == ["--no-" + name.replace("_", "-")], name
        elif isinstance(default, tuple):
            assert tuple(float(v) for v in param.default.split(",")) == default, name
        else:
            assert getattr(param.default, "value", param.default) == default, name
    assert params["batch_size"].opts == ["--batch-size", "-b"] and params["workers"].opts == ["--workers", "-j"]
    assert params["head"].metavar == "[" + "|".join(settings.HEADS) + "]"
