"""What the scoring commands (eval-lfw, eval-fglfw, eval-ytf, eval-bin, eval-ijb, ensemble) share on the
command line: the usage check of their embeddings' source, the console as the workflow's hooks, and
printing a result. The work itself is `facever.workflows.evaluate`.

Imported only inside command bodies, never at CLI start-up.
"""

from __future__ import annotations

import json

import typer

from facever.cli._console import fail, info, print_table, progress_bar, report_bad_images, warn
from facever.core.progress import Hooks


def require_embeddings_or_model(embeddings, model, *, data=None, data_option: str | None = None,
                                data_help: str = "") -> None:
    """Exactly one of `--embeddings FILE` and `--model MODEL`; with `--model`, its data option (when the
    command has one) is needed too. A usage error (one line, exit 2) otherwise, before any work."""
    model_usage = f"--model MODEL {data_option} {data_help.split(' ')[0]}" if data_option else "--model MODEL"
    if (embeddings is None) == (model is None):
        fail(f"give either --embeddings FILE or {model_usage}")
    if model is not None and data_option is not None and data is None:
        fail(f"--model needs {data_option} {data_help}".rstrip())


def console_hooks() -> Hooks:
    """The workflow's messages and warnings on stderr, its progress as bars, bad images listed."""
    return Hooks(message=info, warning=warn, progress=progress_bar, bad_images=report_bad_images)


def print_evaluation(evaluation, json_output: bool) -> None:
    """A workflow's result: report.json's content (`--json`) or its tables on stdout (tab-separated into a
    pipe, the title then on stderr); on stderr the dropped pairs and the files written."""
    if json_output:
        typer.echo(json.dumps(evaluation.to_dict(), indent=2))
    else:
        for k, table in enumerate(evaluation.tables()):
            if k:
                typer.echo("")
            print_table(*table, title=evaluation.title if k == 0 else None)
        lines = evaluation.verbatim() if hasattr(evaluation, "verbatim") else []
        if lines:
            typer.echo("\n" + "\n".join(lines))
        if evaluation.note:
            info(evaluation.note)
    if evaluation.dropped_pairs:
        info(f"dropped {evaluation.dropped_pairs} pairs whose items have no embedding (--allow-missing)")
    if evaluation.written:
        info("wrote " + ", ".join(str(p) for p in evaluation.written.values()))
