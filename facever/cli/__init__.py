"""The `facever` command line: one module per command, assembled here explicitly.

Command modules import only typer, the standard library and torch-free library modules (settings,
the training settings' table) at module level, so `facever --help` never imports torch; each command
imports the library it needs when it runs.
"""

from __future__ import annotations

import sys

import typer
from typer.core import TyperGroup

from facever import __version__


class FaceverGroup(TyperGroup):
    """The `facever` command group: the parser's own errors (a missing option, an extra argument, a bad
    choice) are printed like facever's, as one `error: ...` line with a hint where the mistake can be
    told, exit code 2; click's `Usage: ... Error: ...` block never shows."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode: bool = True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from facever.cli._console import click_module, print_error, usage_error_line

        click = click_module()
        try:
            # Not standalone: typer returns an Exit's code instead of exiting, and raises click's errors here.
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as exc:
            print_error(usage_error_line(exc))
            sys.exit(exc.exit_code)
        except click.exceptions.ClickException as exc:
            print_error(exc.format_message())
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            print_error("aborted")
            sys.exit(1)
        sys.exit(code if type(code) is int else 0)


app = typer.Typer(
    name="facever",
    cls=FaceverGroup,
    help=(
        "Face verification toolkit: align photos, train with Noisy Softmax, extract embeddings, "
        "score them on LFW / FGLFW / YTF with the 10-fold protocol, and ensemble models."
    ),
    no_args_is_help=True,
    add_completion=True,
    # Plain click help: at 80 columns every option name stays whole and its help wraps below.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"facever {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Face verification toolkit."""
    from facever.cli._console import user_errors
    from facever.core.environment import check_environment

    with user_errors():  # environment variables are options: a bad one is refused before any work
        check_environment()


def _command(name: str, function) -> None:
    """Register `function` as `facever NAME`, its option groups (`facever.cli._options.OptionGroup`:
    shared options taken as one settings object) expanded into their options."""
    from facever.cli._options import expand_option_groups

    app.command(name)(expand_option_groups(function))


def _register() -> None:
    # Order here is the order in `facever --help`: the data flow align -> train -> embed -> verify -> ensemble.
    from facever.cli import align, data, eval_lfw

    _command("align", align.align)
    from facever.cli import train

    _command("train", train.train)
    from facever.cli import embed

    _command("embed", embed.embed)
    from facever.cli import export, pairs, verify

    _command("verify", verify.verify)
    from facever.cli import calibrate, check, identify

    _command("calibrate", calibrate.calibrate)
    _command("enroll", identify.enroll)
    _command("identify", identify.identify)
    _command("check", check.check)
    _command("pairs", pairs.pairs)
    _command("export", export.export)
    app.add_typer(data.app, name="data")
    from facever.cli import models

    app.add_typer(models.app, name="models")
    _command("eval-lfw", eval_lfw.eval_lfw)
    from facever.cli import eval_bin, eval_fglfw, eval_ijb, eval_ytf

    _command("eval-fglfw", eval_fglfw.eval_fglfw)
    _command("eval-ytf", eval_ytf.eval_ytf)
    _command("eval-bin", eval_bin.eval_bin)
    _command("eval-ijb", eval_ijb.eval_ijb)

    from facever.cli import ensemble

    _command("ensemble", ensemble.ensemble)
    from facever.cli import demo

    _command("demo", demo.demo)
    from facever.cli import compare, recipes, reproduce

    _command("recipes", recipes.recipes)
    _command("reproduce", reproduce.reproduce)
    _command("compare", compare.compare)


_register()

# Types as words users know in --help (click's convention), not Python's (`<str>`, `<list[Path]>`).
_TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "int range": "INTEGER", "float": "NUMBER", "float range": "NUMBER",
               "path": "PATH", "Path": "PATH", "file": "FILE", "directory": "DIR", "bool": "BOOLEAN"}


def _plain_metavars(command, ctx=None) -> None:
    for param in getattr(command, "params", []):
        if param.metavar is not None or getattr(param, "is_flag", False) or not hasattr(param, "display_type"):
            continue
        try:
            label = param.display_type(ctx).strip("<>")
        except Exception:  # noqa: BLE001 - help must never fail over a label
            continue
        many = label.startswith("list[") or param.nargs == -1
        inner = label[5:-1] if label.startswith("list[") else label
        if param.param_type_name == "argument":
            param.metavar = param.name.upper()
        elif "|" in inner:
            param.metavar = "[" + inner + "]"
        elif inner in _TYPE_WORDS:
            param.metavar = _TYPE_WORDS[inner] + ("..." if many else "")
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub, ctx)


def build_command():
    """The click command behind `facever`, with plain type names in --help."""
    command = typer.main.get_command(app)
    _plain_metavars(command)
    return command


def main() -> None:
    build_command()(prog_name="facever")
