"""`facever data`: fetch the public benchmark files (LFW images and pairs, YTF splits) and list them."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    name="data",
    help="Download the public benchmark files: `facever data list`, `facever data fetch lfw --dest data/`.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("list")
def list_datasets() -> None:
    """List the files `facever data fetch` knows: name, size, checksum used, default URL.

    Override a URL with `--url`, the environment variable shown (e.g. FACEVER_URL_LFW_PAIRS) or a
    mirror base URL (`--mirror` / FACEVER_MIRROR).
    """
    from facever.data_prep.fetch import CATALOGUE, env_var_for, format_size

    for entry in CATALOGUE.values():
        checksum = "sha256" if entry.sha256 else ("md5" if entry.md5 else "none (not verified)")
        result = f"{entry.extracts_to}/" if entry.is_archive else entry.filename
        typer.echo(f"{entry.name}\t{format_size(entry.size)}\tchecksum: {checksum}\t-> DEST/{result}")
        typer.echo(f"    {entry.description}")
        typer.echo(f"    url: {entry.url}  (override: --url or {env_var_for(entry.name)})")
        for alternative in entry.alternatives:
            typer.echo(f"    also: {alternative}")
        if entry.note:
            typer.echo(f"    note: {entry.note}")


@app.command("fetch")
def fetch(
    name: str = typer.Argument(..., help="What to fetch: lfw, lfw-funneled, lfw-deepfunneled, lfw-pairs, ytf-splits."),
    dest: Path = typer.Option(..., "--dest", help="Folder to put it in, e.g. `data/` (created if needed)."),
    url: str = typer.Option(None, "--url", help="Download from this URL instead (same file expected)."),
    mirror: str = typer.Option(
        None, "--mirror", help="Base URL of a mirror; the file name is appended (env FACEVER_MIRROR)."
    ),
    sha256: str = typer.Option(None, "--sha256", help="Expected sha256 (replaces the catalogue's digests)."),
    force: bool = typer.Option(False, "--force", help="Download and extract again even if already present."),
    keep_archive: bool = typer.Option(False, "--keep-archive", help="Keep the .tgz/.zip after extracting it."),
    timeout: float = typer.Option(30.0, "--timeout", min=1.0, help="Seconds without data before giving up."),
    retries: int = typer.Option(2, "--retries", min=0, help="Resume this many times after a dropped connection."),
) -> None:
    """Download NAME into DEST: resumable, checksum-verified, archives extracted safely.

    Example: `facever data fetch lfw --dest data/` gives data/lfw/<Name>/<Name>_0001.jpg.

    Example: `facever data fetch lfw-pairs --dest data/` gives data/pairs.txt.

    An interrupted download resumes when you run the same command again (HTTP Range, DEST/<file>.part).

    Offline? Download the URL by hand, put it at the path the error names, and run again.

    Prints the resulting file or folder on stdout; messages go to stderr.
    """
    from facever.cli._console import DownloadProgress, info, user_errors, warn
    from facever.core.locks import file_lock
    from facever.data_prep.fetch import fetch as fetch_entry
    from facever.data_prep.fetch import get_entry

    with user_errors():
        entry = get_entry(name)
        # Two fetches of one file into one DEST would append to the same .part: the second is refused.
        with file_lock(dest / entry.filename), DownloadProgress(entry.filename) as shown:
            result = fetch_entry(
                name, dest, url=url, mirror=mirror, sha256=sha256, force=force, keep_archive=keep_archive,
                timeout=timeout, retries=retries, progress=shown.advance, on_start=shown.on_start,
                on_extract=shown.on_extract, extract_progress=shown.extract_advance,
            )

    got = result.download
    if got is None:
        info(f"{name}: already present at {result.path} (use --force to fetch again)")
    elif got.already_present:
        info(f"{name}: {got.path} already downloaded")
    else:
        info(f"{name}: downloaded {got.bytes_received:,} bytes from {result.entry.url}")
    if got is not None:
        if got.verified:
            info(f"{name}: {got.verified} verified")
        else:
            warn(f"{name}: no checksum known, integrity NOT verified (pass --sha256 HEX to check one)")
    if result.extracted:
        info(f"{name}: extracted to {result.path}")
    typer.echo(str(result.path))
