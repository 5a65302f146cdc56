"""The `facever` command line: one module per command, assembled here explicitly.

Command modules import only typer and the standard library at module level, so `facever --help`
never imports torch; each command imports the library it needs when it runs.
"""

from __future__ import annotations

import typer

from facever import __version__

app = typer.Typer(
    name="facever",
    help=(
        "Face verification toolkit: align photos, train with Noisy Softmax, extract embeddings, "
        "score them on LFW / FGLFW / YTF with the 10-fold protocol, and ensemble models."
    ),
    no_args_is_help=True,
    add_completion=False,
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
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Face verification toolkit."""


def _register() -> None:
    # Order here is the order in `facever --help`: the data flow align -> train -> embed -> verify -> ensemble.
    from facever.cli import align, data, eval_lfw

    app.command("align")(align.align)
    from facever.cli import train

    app.command("train")(train.train)
    from facever.cli import embed

    app.command("embed")(embed.embed)
    from facever.cli import export, pairs, verify

    app.command("verify")(verify.verify)
    app.command("pairs")(pairs.pairs)
    app.command("export")(export.export)
    app.add_typer(data.app, name="data")
    app.command("eval-lfw")(eval_lfw.eval_lfw)
    from facever.cli import eval_bin, eval_fglfw, eval_ijb, eval_ytf

    app.command("eval-fglfw")(eval_fglfw.eval_fglfw)
    app.command("eval-ytf")(eval_ytf.eval_ytf)
    app.command("eval-bin")(eval_bin.eval_bin)
    app.command("eval-ijb")(eval_ijb.eval_ijb)

    from facever.cli import ensemble

    app.command("ensemble")(ensemble.ensemble)
    from facever.cli import demo

    app.command("demo")(demo.demo)
    from facever.cli import compare, recipes, reproduce

    app.command("recipes")(recipes.recipes)
    app.command("reproduce")(reproduce.reproduce)
    app.command("compare")(compare.compare)


_register()


def main() -> None:
    app()
