"""`facever eval-ijb`: IJB-B / IJB-C template-based 1:1 verification and 1:N search (InsightFace's layout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from facever.cli._options import (
    AMP, Amp, JSON_OUTPUT, Flip, IJBSet, batch_size_option, device_option, flip_option, model_weights_option,
)



def parse_modes(text: str):
    """`F1N0D0`, a comma-separated list of modes, or `all` (the eight)."""
    from facever.core.errors import FaceverError
    from facever.verification.ijb import ALL_MODES, TestMode

    if text.strip().lower() == "all":
        return list(ALL_MODES)
    modes = []
    for part in text.split(","):
        try:
            mode = TestMode.parse(part)
        except ValueError as exc:
            raise FaceverError(f"--mode: {exc}") from None
        if mode not in modes:
            modes.append(mode)
    return modes


def eval_ijb(
    root: Path = typer.Argument(..., help="IJB_release folder (holding IJBC/ or IJBB/) or the set folder itself."),
    set_name: IJBSet = typer.Option(IJBSet.ijbc, "--set", help="Which set: ijbc or ijbb."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Align loose_crop/ from the given landmarks and embed it now (a facever model.pt, "
        "run folder, facenet:vggface2, arcface:* or .onnx)."
    ),
    embeddings: Optional[Path] = typer.Option(
        None, "--embeddings", "-e", help="Instead of --model: per-image embeddings keyed by the meta files' image "
        "names (OUT/embeddings.npz of an earlier run, or `facever embed --flip concat` over aligned crops)."
    ),
    mode: str = typer.Option(
        "F1N0D0", "--mode",
        help="Test mode(s): F1 flip (f(x)+f(mirror x)) / F0, N0 L2-normalise image features / N1 keep the norm, "
        "D1 multiply by the faceness score / D0. A comma list (F1N0D0,F1N1D1) or `all`. insightface's "
        "script uses F1N1D1.",
    ),
    one_to_n: bool = typer.Option(
        False, "--one-to-n", help="Also 1:N: mixed probes against galleries G1 and G2 (IJB-B: S1, S2); first mode."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Folder for report.json, scores.npz, roc.png (with --model: crops and embeddings)."
    ),
    crops: Optional[Path] = typer.Option(
        None, "--crops", help="With --model: folder for the aligned crops (default OUT/crops_HxW); resumable."
    ),
    flip: Flip = flip_option(when="With --model (concat keeps f(x) and f(mirror x), so F0 and F1 both score): "),
    weights: Optional[Path] = model_weights_option(),
    device: str = device_option(when="With --model: "),
    amp: Amp = AMP,
    batch_size: int = batch_size_option(when="With --model: "),
    json_output: bool = JSON_OUTPUT,
) -> None:
    """Score a model on IJB-C or IJB-B: templates, 1:1 TAR at FAR 1e-6..1e-1 (two definitions), optionally 1:N.

    A template's feature is the sum over its media of the mean image feature per media, L2-normalised;
    a pair's score is the cosine of its two templates. The test mode (flip, norm, detector score) is
    printed beside every number and written in report.json. See docs/ijb.md for every definition.

    Examples:

        facever eval-ijb IJB_release --set ijbc --model runs/a/model.pt --out results/ijbc

        facever eval-ijb IJB_release --set ijbc --embeddings results/ijbc/embeddings.npz --mode all --one-to-n -o r2
    """
    import time

    from facever.cli._console import fail, info, library_warnings, progress_bar, user_errors

    from facever.cli._evaluation import require_embeddings_or_model

    require_embeddings_or_model(embeddings, model)
    if model is not None and out is None and crops is None:
        fail("--model writes aligned crops and an embeddings cache: give --out DIR (or --crops DIR)")

    from facever.core.locks import folder_lock

    with user_errors(), library_warnings(), folder_lock(out, kind="evaluation"):
        from facever.core.embeddings_file import load_embeddings
        from facever.protocols import ijb as reader
        from facever.verification.ijb import evaluate_ijb, evaluate_search, ijb_template_features
        from facever.verification.report import format_ijb_table, write_ijb_report

        modes = parse_modes(mode)
        start = time.perf_counter()
        meta = reader.read_ijb(root, set_name.value)
        info(f"{set_name.value}: {len(meta.pairs)} template pairs, {len(meta.media)} image lines "
             f"({time.perf_counter() - start:.1f}s to read)")
        landmarks = None
        if model is not None or any(m.detector for m in modes):
            landmarks = reader.read_landmarks(meta.landmarks_path())
        search_sets = None
        if one_to_n:
            galleries, probe_path = reader.search_files(meta.folder, set_name.value)
            search_sets = ([(name, reader.read_search_set(path)) for name, path in galleries],
                           reader.read_search_set(probe_path))

        if model is not None:
            from facever.cli._evaluation import load_model
            from facever.embedding.protocol_embeddings import ijb_crops, ijb_embeddings

            net = load_model(model, weights=weights, device=device)
            h, w = (int(v) for v in net.input_size)
            crops_dir = crops if crops is not None else out / f"crops_{h}x{w}"
            cache = out / "embedding_cache" if out is not None else None
            n_images = len(meta.image_names())
            with progress_bar("aligning", total=n_images) as on_crop:
                summary = ijb_crops(meta, landmarks, (h, w), crops_dir, progress=on_crop)
            info(f"crops: {summary.written} aligned now, {summary.reused} kept in {crops_dir}")
            with progress_bar("embedding", total=n_images) as advance:
                emb, reused = ijb_embeddings(
                    net, meta, crops_dir, cache=cache, flip=flip.value, batch_size=batch_size, device=device, amp=amp.value,
                    progress=advance, on_plan=lambda done, todo: advance(done),
                )
            info(f"embeddings: {len(emb) - reused} computed, {reused} reused" + (f" from {cache}" if cache else ""))
            if out is not None:
                from facever.core.embeddings_file import save_embeddings

                save_embeddings(out / "embeddings.npz", emb.paths, emb.embeddings, emb.metadata)
            source = f"model {model}"
        else:
            emb = load_embeddings(embeddings)
            source = str(embeddings)

        results = []
        search = None
        for k, m in enumerate(modes):
            t0 = time.perf_counter()
            feats = ijb_template_features(meta, emb, m, landmarks=landmarks)
            results.append(evaluate_ijb(meta, emb, m, template_feats=feats))
            if k == 0 and search_sets is not None:
                search = evaluate_search(*feats, *search_sets)
            info(f"{m.label}: scored in {time.perf_counter() - t0:.1f}s")
        for r in results:
            r.settings.update({"embeddings_source": source, "embeddings_metadata": emb.metadata})

        if json_output:
            from facever.verification.report import ijb_report_data

            typer.echo(json.dumps(ijb_report_data(results, search=search), indent=2))
        else:
            r0 = results[0]
            typer.echo(f"{set_name.value.upper()} 1:1: {r0.n_pairs} template pairs ({r0.n_same} same), "
                       f"{r0.n_templates} templates, {r0.n_images} images; {source}")
            typer.echo(format_ijb_table(results, search))
        if out is not None:
            written = write_ijb_report(out, results, t1=meta.pairs.t1, t2=meta.pairs.t2, search=search)
            info(f"wrote {written['report']}, {written['scores']} and {written['roc']}")
