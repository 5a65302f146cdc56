"""Plumbing shared by the scoring commands (eval-lfw, eval-fglfw, eval-ytf, eval-bin, eval-ijb, ensemble):
where the embeddings come from (`--embeddings FILE` or `--model MODEL` over a data folder), score a
protocol, print the table, write the report.

Imported only inside command bodies (it pulls in the verification engine), never at CLI start-up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import typer

from facever.cli._console import info
from facever.core.settings import DEFAULT_AMP


def evaluate_and_report(
    protocol,
    embeddings,
    *,
    title: str,
    thresholds: str,
    metric: str | None,
    subtract_mean: bool,
    allow_missing: bool,
    out: Path | None,
    json_output: bool,
    embeddings_source: str,
    settings: dict[str, Any],
):
    """Run the one engine (the one of `facever eval-lfw`), print its table (or JSON), write report.json + roc.png."""
    from facever.verification.evaluate import evaluate_protocol
    from facever.verification.report import format_table, write_report

    result = evaluate_protocol(
        protocol,
        embeddings,
        metric=metric,
        thresholds=thresholds,
        subtract_mean=subtract_mean,
        allow_missing=allow_missing,
        embeddings_source=embeddings_source,
    )
    result.settings.update({**settings, "embeddings_metadata": embeddings.metadata})
    if json_output:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        typer.echo(title)
        typer.echo(format_table(result))
    if result.dropped_pairs:
        info(f"dropped {result.dropped_pairs} pairs whose items have no embedding (--allow-missing)")
    if out is not None:
        written = write_report(out, result)
        info(f"wrote {written['report']} and {written['roc']}")
    return result


def missing_files(root: Path, rel_paths: Sequence[str]) -> list[str]:
    return [p for p in rel_paths if not (root / p).is_file()]


def check_images_exist(root: Path, rel_paths: Sequence[str], *, what: str) -> None:
    """Fail with one line naming the missing images (before spending time on a model)."""
    from facever.core.errors import FaceverError

    if not root.is_dir():
        raise FaceverError(f"{root}: image folder not found")
    missing = missing_files(root, rel_paths)
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
        raise FaceverError(f"{len(missing)} of {len(rel_paths)} images of {what} are missing under {root}: {shown}; "
                           "use --allow-missing to drop their pairs")


def load_model(model: str, *, weights: Path | None, device: str):
    from facever.embedding.loading import load_embedding_model

    return load_embedding_model(model, weights=weights, device=device)


def require_embeddings_or_model(embeddings, model, *, data=None, data_option: str | None = None,
                                data_help: str = "") -> None:
    """Exactly one of `--embeddings FILE` and `--model MODEL`; with `--model`, its data option (when the
    command has one) is needed too. A usage error (one line, exit 2) otherwise, before any work."""
    from facever.cli._console import fail

    model_usage = f"--model MODEL {data_option} {data_help.split(' ')[0]}" if data_option else "--model MODEL"
    if (embeddings is None) == (model is None):
        fail(f"give either --embeddings FILE or {model_usage}")
    if model is not None and data_option is not None and data is None:
        fail(f"--model needs {data_option} {data_help}".rstrip())


def embed_protocol_images(protocol, model: str, images: Path, *, cache: Path | None, flip: str, batch_size: int,
                          device: str, amp: str = DEFAULT_AMP, weights: Path | None = None,
                          allow_missing: bool = False, name: str | None = None, save_to: Path | None = None):
    """Embed the images `protocol` needs from `images` with `model`, reusing (and extending) the embedding
    cache folder `cache` (content-keyed: a changed image or setting is embedded again); the embeddings
    used are written to `save_to` (unless it already holds exactly them).

    With `allow_missing` unreadable images are left out (their pairs dropped later), else they fail
    the command naming them. `name` prefixes the messages (ensemble: one model of several).
    """
    from facever.cli._console import library_warnings, progress_bar
    from facever.cli.embed import report_bad_images
    from facever.core.errors import FaceverError
    from facever.embedding.cache import embed_items_cached
    from facever.embedding.extract import BadImagesError
    from facever.embedding.loading import load_embedding_model

    if not images.is_dir():
        raise FaceverError(f"{images}: image folder not found")
    prefix = f"{name}: " if name else ""
    items = protocol.items()
    with library_warnings():
        emb_model = load_embedding_model(model, weights=weights, device=device)
        try:
            with progress_bar(f"embedding ({name})" if name else "embedding", total=len(items)) as advance:
                emb, bad, reused = embed_items_cached(
                    emb_model, images, items, cache=cache, flip=flip, batch_size=batch_size, device=device, amp=amp,
                    skip_bad=allow_missing, progress=advance, on_plan=lambda done, todo: advance(done),
                )
        except BadImagesError as exc:
            report_bad_images(exc.bad)
            raise FaceverError(f"{prefix}{exc}; use --allow-missing to drop their pairs") from None
    if bad:
        report_bad_images(bad)
    info(f"{prefix}{len(emb)} of {len(items)} images embedded with {emb_model.model_id}"
         + (f" ({reused} reused from {cache})" if reused else ""))
    if save_to is not None:
        _save_if_changed(save_to, emb)
    return emb


def _save_if_changed(path: Path, emb) -> None:
    """Write the embeddings used next to the report, unless the file already holds exactly these rows."""
    from facever.core.embeddings_file import load_embeddings, save_embeddings
    from facever.core.errors import FaceverError

    if emb.metadata.get("reused") == len(emb) and path.is_file():
        try:
            old = load_embeddings(path)
        except FaceverError:
            old = None
        if old is not None and old.paths == emb.paths and old.embeddings.shape == emb.embeddings.shape \
                and (old.embeddings == emb.embeddings).all():
            return
    save_embeddings(path, emb.paths, emb.embeddings, emb.metadata)


def protocol_embeddings(protocol, *, embeddings: Path | None, model: str | None, images: Path | None,
                        out: Path | None, what: str, **embed_options):
    """`(embeddings, source)` for an image-pair protocol: the `--embeddings` file, or `--model` run over
    `--images` now (missing images named before any model loads; cached in OUT/embedding_cache/, the
    embeddings used written to OUT/embeddings.npz).
    `source` names where they came from, for the table and the report."""
    from facever.core.embeddings_file import load_embeddings

    if model is None:
        return load_embeddings(embeddings), str(embeddings)
    if not embed_options.get("allow_missing"):
        check_images_exist(images, protocol.items(), what=what)
    cache = Path(out) / "embedding_cache" if out is not None else None
    save_to = Path(out) / "embeddings.npz" if out is not None else None
    emb = embed_protocol_images(protocol, model, images, cache=cache, save_to=save_to, **embed_options)
    return emb, str(save_to) if save_to is not None else f"<{model} on {images}>"

