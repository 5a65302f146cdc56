"""`facever recipes`: the shipped training recipes, with the results and training time (and hardware) to expect."""

from __future__ import annotations

from typing import Optional

import typer


def recipes(
    name: Optional[str] = typer.Argument(None, help="Show one recipe in full (its options as TOML).", show_default=False),
    json_output: bool = typer.Option(False, "--json", help="Print the recipes (options, expected results) as JSON."),
) -> None:
    """List the training recipes: what each trains, the paper's (or expected) results, the training time and on what.

    Use one with `facever train DATA --recipe NAME --out RUN` (a --config file and options override
    it) or `facever reproduce --recipe NAME ...`.

    Examples:

        facever recipes

        facever recipes paper-casia-sphere20
    """
    import json

    from facever.cli._console import print_table, user_errors

    with user_errors():
        from facever.training.recipes import list_recipes, load_recipe

        chosen = [load_recipe(name)] if name else list_recipes()
    if json_output:
        typer.echo(json.dumps([r.to_dict() for r in chosen], indent=2))
        return
    if name:
        from facever.training.config_files import toml_value

        r = chosen[0]
        typer.echo(f"# {r.name}: {r.summary}")
        typer.echo(f"# data: {r.data}")
        typer.echo(f"# expected: {_expected(r)}  ({r.expected_source})")
        typer.echo(f"# training time: {r.train_time}")
        for key, value in r.options.items():
            typer.echo(f"{key} = {toml_value(value)}")
        return
    # On a terminal a table; piped, tab-separated lines (`facever recipes | grep NAME` finds it whole).
    print_table(("recipe", "what", "expected (%)", "training time"),
                [(r.name, r.summary, _expected(r), r.train_time) for r in chosen], show_lines=True)


def _expected(recipe) -> str:
    parts = [f"{k.upper()} {v:.2f}" for k, v in recipe.expected.items()]
    if recipe.expected_ensemble:
        parts.append("ensemble of two: " + ", ".join(f"{k.upper()} {v:.2f}" for k, v in recipe.expected_ensemble.items()))
    return "; ".join(parts) or recipe.expected_source or "-"
