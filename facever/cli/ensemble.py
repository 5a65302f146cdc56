"""`facever ensemble`: two or more models on one protocol, each alone and fused, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facever.cli._options import (
    AMP, Amp, JSON_OUTPUT, METRIC, SUBTRACT_MEAN, THRESHOLDS, Benchmark, Flip, Fusion, Metric, ThresholdMode,
    allow_missing_option, batch_size_option, device_option, flip_option,
)


def read_protocol(name: str, pairs: Path, *, ext: str):
    """The `PairProtocol` of `--protocol NAME --pairs FILE` (image-pair benchmarks, YTF splits, a .bin)."""
    if name in ("ytf", "bin"):
        from facever.protocols.catalog import read_benchmark

        return read_benchmark(name, pairs)
    if name == "lfw":
        from facever.protocols.lfw import read_lfw_pairs

        return read_lfw_pairs(pairs, ext=ext)
    from facever.protocols.fglfw import read_variant_pairs

    return read_variant_pairs(pairs, protocol=name, ext=ext if ext != ".jpg" else None)


def _split_list(text: Optional[str], option: str) -> Optional[list[str]]:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if any(not p for p in parts):
        from facever.core.errors import FaceverError

        raise FaceverError(f"{option} {text!r}: expected a comma-separated list such as a,b")
    return parts


def _default_names(sources: list[str]) -> list[str]:
    names = []
    for src in sources:
        if src.startswith("facenet:"):
            base = src.split("=", 1)[0].replace(":", "-")
        else:
            path = Path(src)
            base = path.parent.name if path.name == "model.pt" and path.parent.name else path.stem
        name, k = base or "model", 2
        while name in names or name == "ensemble":
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def format_comparison(result) -> str:
    """One row per model and one for the ensemble: accuracy mean +- std, AUC, TAR at FAR 1e-3/1e-2/1e-1."""
    rows = result.results()
    width = max(8, *(len(name) for name, _ in rows))
    fars = list(rows[0][1].tar_at_far)
    header = f"{'model':<{width}}  {'accuracy':>17}  {'AUC':>6}  " + "  ".join(f"{'TAR@' + format(float(f), 'g'):>10}" for f in fars)
    lines = [header]
    for name, res in rows:
        acc = f"{100 * res.kfold.mean:.2f}% +- {100 * res.kfold.std:.2f}"
        tars = "  ".join(f"{100 * res.tar_at_far[f]:>9.2f}%" for f in fars)
        lines.append(f"{name:<{width}}  {acc:>17}  {res.auc:>6.4f}  {tars}")
    return "\n".join(lines)


def ensemble(
    sources: List[str] = typer.Argument(
        ...,
        help="Two or more embeddings files (.npz from `facever embed`) of the same images; with --images, models "
        "instead (RUN/model.pt, facenet:vggface2, facenet:vggface2=WEIGHTS.pt).",
        show_default=False,
    ),
    pairs: Path = typer.Option(
        ..., "--pairs", help="The protocol's pair list, e.g. LFW's pairs.txt (ytf: splits.txt; bin: the .bin file; "
        "ijbc/ijbb: the IJB_release folder)."
    ),
    protocol: Benchmark = typer.Option(Benchmark.lfw, "--protocol", "-p", help="Which benchmark the pair list is."),
    ext: str = typer.Option(".jpg", "--ext", help="Image extension the pairs refer to (e.g. .png for aligned crops)."),
    fusion: Fusion = typer.Option(
        Fusion.concat,
        "--fusion",
        help="concat: concatenate L2-normalised embeddings (x sqrt(weight)), i.e. average the cosines; "
        "score-mean: average each model's own scores (differs from concat only with --subtract-mean).",
    ),
    weights: Optional[str] = typer.Option(None, "--weights", help="One weight per model, e.g. 2,1 (default equal)."),
    names: Optional[str] = typer.Option(None, "--names", help="One name per model for the table, e.g. noisy,facenet."),
    images: Optional[Path] = typer.Option(
        None, "--images", help="SOURCES are models: embed the protocol's images from this folder (cached in --out); "
        "ijbc/ijbb: the IJB root again (images aligned from the landmarks, as eval-ijb --model)."
    ),
    flip: Flip = flip_option(when="With --images: "),
    batch_size: int = batch_size_option(when="With --images: "),
    device: str = device_option(when="With --images: "),
    amp: Amp = AMP,
    thresholds: ThresholdMode = THRESHOLDS,
    metric: Optional[Metric] = METRIC,
    subtract_mean: bool = SUBTRACT_MEAN,
    allow_missing: bool = allow_missing_option("Drop pairs missing from any model (the same pairs for every row)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for report.json and roc.png (every curve)."),
    save_embeddings: Optional[Path] = typer.Option(
        None, "--save-embeddings", help="Write the fused embeddings (.npz) to evaluate or ensemble again."
    ),
    ijb_mode: str = typer.Option(
        "F1N0D0", "--mode", help="ijbc/ijbb: the test mode (see `facever eval-ijb --help`), e.g. F1N1D1."
    ),
    json_output: bool = JSON_OUTPUT,
) -> None:
    """Evaluate an ensemble of models: each model alone and the fusion, on the same pairs, side by side.

    The default fusion concatenates each model's L2-normalised embedding scaled by sqrt(weight), so the
    ensemble's cosine is exactly the weighted mean of the models' cosines.

    Examples:

        facever ensemble noisy1.npz noisy2.npz --pairs pairs.txt --out results/ens

        facever ensemble runs/a/model.pt facenet:vggface2=vggface2.pt --images lfw_aligned/ --pairs pairs.txt --names a,facenet --weights 2,1 --out results/ens
    """
    import json

    from facever.cli._console import info, progress_bar, user_errors
    from facever.cli._console import library_warnings

    from facever.core.locks import folder_lock

    with user_errors(), library_warnings(), folder_lock(out, kind="evaluation"):
        from facever.embedding.ensemble import evaluate_ensemble
        from facever.core.embeddings_file import load_embeddings
        from facever.core.embeddings_file import save_embeddings as write_embeddings
        from facever.core.errors import FaceverError
        from facever.verification.report import write_ensemble_report

        if save_embeddings is not None:
            from facever.core.paths import check_output_is_not_an_input

            check_output_is_not_an_input(save_embeddings, [s.split("=", 1)[-1] for s in sources] + [pairs])
        if len(sources) < 2:
            raise FaceverError(f"an ensemble needs at least two embeddings files or models, got {len(sources)}")
        model_names = _split_list(names, "--names") or _default_names(list(sources))
        if len(model_names) != len(sources):
            raise FaceverError(f"--names gives {len(model_names)} names for {len(sources)} models")
        from facever.embedding.ensemble import check_model_names

        check_model_names(model_names)
        weight_values = None
        if weights is not None:
            try:
                weight_values = [float(w) for w in _split_list(weights, "--weights") or []]
            except ValueError:
                raise FaceverError(f"--weights {weights!r}: expected numbers such as 2,1") from None
        if protocol.value in ("ijbc", "ijbb"):
            _ensemble_ijb(protocol.value, pairs, sources, model_names, weight_values, ijb_mode, models=images is not None,
                          out=out, json_output=json_output, device=device, amp=amp.value, batch_size=batch_size)
            return
        proto = read_protocol(protocol.value, pairs, ext=ext)

        if protocol.value in ("ytf", "bin"):
            # ytf: frame embeddings files are averaged per video; models embed the videos under --images (the YTF
            # root; frames cached in OUT/frame_cache). bin: models embed the .bin's own images.
            from facever.embedding.protocol_embeddings import benchmark_embeddings

            per_model = []
            for src, name in zip(sources, model_names):
                with progress_bar(f"embedding ({name})", total=None) as advance:
                    per_model.append(benchmark_embeddings(
                        protocol.value, proto, src, data=images, flip=flip.value, batch_size=batch_size,
                        device=device, amp=amp.value, cache_dir=out / "frame_cache" if out is not None else None, progress=advance,
                    ))
        elif images is None:
            per_model = [load_embeddings(src) for src in sources]
        else:
            from facever.cli._evaluation import embed_protocol_images

            per_model = [
                embed_protocol_images(proto, src, images, name=name, flip=flip.value, batch_size=batch_size,
                                      device=device, amp=amp.value, allow_missing=allow_missing,
                                      cache=out / "embedding_cache" if out is not None else None,
                                      save_to=out / f"embeddings_{name}.npz" if out is not None else None)
                for src, name in zip(sources, model_names)
            ]

        result = evaluate_ensemble(
            proto, per_model, model_names, fusion=fusion.value, weights=weight_values,
            metric=metric.value if metric else None, thresholds=thresholds.value,
            subtract_mean=subtract_mean, allow_missing=allow_missing,
        )
        for name, src, emb in zip(model_names, sources, per_model):
            result.models[name].settings.update(
                {"pairs_file": str(pairs), "source": str(src), "embeddings_metadata": emb.metadata}
            )
        result.ensemble.settings["pairs_file"] = str(pairs)

        if json_output:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            typer.echo(f"{proto.name.upper()} {len(proto)} pairs from {pairs}: {len(sources)} models, fusion {fusion.value}")
            typer.echo(format_comparison(result))
        if result.ensemble.dropped_pairs:
            info(f"dropped {result.ensemble.dropped_pairs} pairs missing from some model (--allow-missing)")
        if out is not None:
            written = write_ensemble_report(out, result)
            info(f"wrote {written['report']} and {written['roc']}")
        if save_embeddings is not None:
            from facever.embedding.ensemble import common_paths, fuse_embeddings

            fused = fuse_embeddings(per_model, weights=result.weights, method=fusion.value,
                                    items=common_paths(per_model), names=model_names)
            fused.metadata["sources"] = [str(s) for s in sources]
            write_embeddings(save_embeddings, fused.paths, fused.embeddings, fused.metadata)
            info(f"wrote {save_embeddings}: {len(fused)} fused embeddings of dimension {fused.dim}")


def _ensemble_ijb(set_name: str, root: Path, sources, names, weights, mode: str, *, models: bool, out, json_output,
                  device: str, amp: str, batch_size: int) -> None:
    """IJB-B/C: per-image embeddings files keyed by the meta image names (or models, embedded as
    `facever eval-ijb --model` does, cached in OUT/embedding_cache/, written to OUT/embeddings_NAME.npz); fused
    at the template level."""
    import json

    from facever.cli._console import info
    from facever.cli.eval_ijb import parse_modes
    from facever.core.embeddings_file import load_embeddings, save_embeddings
    from facever.core.errors import FaceverError
    from facever.embedding.ensemble import evaluate_ensemble_ijb
    from facever.protocols import ijb as reader
    from facever.verification.report import format_ijb_table, write_ensemble_report

    modes = parse_modes(mode)
    if len(modes) != 1:
        raise FaceverError("--mode: give one test mode for an ensemble")
    meta = reader.read_ijb(root, set_name)
    landmarks = reader.read_landmarks(meta.landmarks_path()) if modes[0].detector or models else None
    if not models:
        per_model = [load_embeddings(src) for src in sources]
    else:
        from facever.cli._console import progress_bar
        from facever.embedding.loading import load_embedding_model
        from facever.embedding.protocol_embeddings import ijb_crops, ijb_embeddings

        if out is None:
            raise FaceverError(f"{set_name} with models: give --out DIR for the aligned crops and embeddings")
        per_model = []
        n_images = len(meta.image_names())
        for src, name in zip(sources, names):
            net = load_embedding_model(src, device=device)
            h, w = (int(v) for v in net.input_size)
            with progress_bar(f"aligning ({name})", total=n_images) as on_crop:
                ijb_crops(meta, landmarks, (h, w), out / f"crops_{h}x{w}", progress=on_crop)
            with progress_bar(f"embedding ({name})", total=n_images) as advance:
                emb, _ = ijb_embeddings(net, meta, out / f"crops_{h}x{w}", cache=out / "embedding_cache",
                                        batch_size=batch_size, device=device, amp=amp, progress=advance,
                                        on_plan=lambda done, todo: advance(done))
            save_embeddings(out / f"embeddings_{name}.npz", emb.paths, emb.embeddings, emb.metadata)
            per_model.append(emb)
    result = evaluate_ensemble_ijb(meta, per_model, names, weights=weights, mode=modes[0], landmarks=landmarks)
    for name, src in zip(names, sources):
        result.models[name].settings["source"] = str(src)
    rows = result.results()
    if json_output:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        first = result.ensemble
        typer.echo(f"{set_name.upper()} 1:1: {first.n_pairs} template pairs, {first.n_templates} templates; "
                   f"{len(sources)} models, test mode {modes[0].label}")
        typer.echo(format_ijb_table([r for _, r in rows], names=[n for n, _ in rows]))
    if out is not None:
        written = write_ensemble_report(out, result, title=f"{set_name.upper()} ROC: models and ensemble", min_fpr=1e-6)
        info(f"wrote {written['report']} and {written['roc']}")
