"""`facever models`: the public pretrained models facever knows by name; pull one into the cache."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="models",
    help="Public pretrained face models by name: `facever models list`, `facever models pull arcface-r50-webface600k`. "
    "Any command's --model NAME pulls on first use.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("list")
def list_models(
    json_output: bool = typer.Option(False, "--json", help="Every field of every entry as JSON (contract, sources, notes)."),
) -> None:
    """The models `--model NAME` accepts: source, licence, input contract, training data, claimed accuracy.

    Accuracy is what each publisher claims (quoted from its README), not measured by facever. The
    licence is the publisher's own statement: insightface's models are for non-commercial research only.

    Examples:

        facever models list

        facever models list | cut -f1,7        # names and licences (tab-separated in a pipe)

        facever models list --json
    """
    import json

    from facever.cli._console import print_table, user_errors
    from facever.data_prep.pretrained import cache_root, registry_rows

    with user_errors():
        rows = registry_rows()
        root = cache_root()
    if json_output:
        typer.echo(json.dumps({"cache": str(root), "models": rows}, indent=2))
        return
    columns = ["name", "cached", "format", "input", "trained on", "claimed accuracy", "licence", "source"]
    table = []
    for row in rows:
        contract = row["contract"]
        h, w = contract["input_size"]
        table.append([
            row["name"], "yes" if row["cached"] else "no", row["format"],
            f"{h}x{w} {contract['color']}, {contract['normalisation']}", row["training_data"],
            row["claimed_accuracy"], row["licence"], row["source_url"],
        ])
    print_table(columns, table)


@app.command("pull")
def pull(
    name: str = typer.Argument(..., help="A model name from `facever models list`, e.g. arcface-r50-webface600k."),
    force: bool = typer.Option(False, "--force", help="Download again even if cached (still checked against the pin)."),
    timeout: float = typer.Option(30.0, "--timeout", min=1.0, help="Seconds without data before giving up."),
    retries: int = typer.Option(2, "--retries", min=0, help="Resume this many times after a dropped connection."),
) -> None:
    """Download a pretrained model into the cache: resumable, checked, archives extracted safely.

    The file goes to $FACEVER_HOME/models/NAME/ (else ~/.cache/facever/models/NAME/). Where the
    publisher gives no checksum, the first download's SHA-256 is pinned in the cache's models.lock
    ("trust on first use") and a later file that differs is refused. Run the same command again to
    resume an interrupted download. Prints the model file's path on stdout.

    Examples:

        facever models pull arcface-r50-webface600k

        FACEVER_MODEL_MIRROR=https://files.example.org/models/ facever models pull facenet-vggface2

        facever verify a.jpg b.jpg --model arcface-r50-webface600k   # pulls on first use too
    """
    from facever.cli._console import info, pull_events, user_errors
    from facever.data_prep.pretrained import TRUST_PUBLISHER, ensure_model, get

    with user_errors():
        entry = get(name)
        got = ensure_model(entry, force=force, events=pull_events(), timeout=timeout, retries=retries)
    if got.downloaded:
        resumed = f" (resumed from byte {got.resumed_from:,})" if got.resumed_from else ""
        info(f"{name}: downloaded {got.bytes_received:,} bytes from {got.url}{resumed}")
    else:
        info(f"{name}: already in the cache at {got.path} (use --force to download again)")
    if got.trust == TRUST_PUBLISHER:
        info(f"{name}: sha256 verified against the publisher's checksum")
    elif not got.pinned_now:
        info(f"{name}: sha256 {got.sha256} matches the one pinned in {got.lock_file} (trust on first use)")
    if not got.licence_shown:
        info(f"{name}: licence, as {entry.publisher} states it: {entry.licence}")
    typer.echo(str(got.path))
