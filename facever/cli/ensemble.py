"""`facever ensemble`: two or more models on one protocol, each alone and fused, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from facever.cli._options import JSON_OUTPUT, Benchmark, Fusion, model_options, scoring_options

if TYPE_CHECKING:
    from facever.workflows.evaluate import EmbedSettings, ScoringSettings


def _split_list(text: Optional[str], option: str) -> Optional[list[str]]:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if any(not p for p in parts):
        from facever.core.errors import FaceverError

        raise FaceverError(f"{option} {text!r}: expected a comma-separated list such as a,b")
    return parts


def _numbers(text: Optional[str]) -> Optional[list[float]]:
    from facever.core.errors import FaceverError

    try:
        return None if text is None else [float(w) for w in _split_list(text, "--weights")]
    except ValueError:
        raise FaceverError(f"--weights {text!r}: expected numbers such as 2,1") from None


def ensemble(
    sources: List[str] = typer.Argument(
        ...,
        help="Two or more embeddings files (.npz from `facever embed`) of the same images, or models (RUN/model.pt, "
        "facenet:vggface2, facenet:vggface2=WEIGHTS.pt) with --images; files and models may be mixed.",
        show_default=False,
    ),
    pairs: Path = typer.Option(
        ..., "--pairs", help="The protocol's pair list, e.g. LFW's pairs.txt (ytf: splits.txt; bin: the .bin file; "
        "ijbc/ijbb: the IJB_release folder)."
    ),
    protocol: Benchmark = typer.Option(Benchmark.lfw, "--protocol", "-p", help="Which benchmark the pair list is."),
    ext: Optional[str] = typer.Option(
        None, "--ext", help="Image extension the pairs refer to (e.g. .png for aligned crops; default .jpg for LFW, "
        "the list's own for FGLFW/CALFW/CPLFW)."
    ),
    fusion: Fusion = typer.Option(
        Fusion.concat,
        "--fusion",
        help="concat: concatenate L2-normalised embeddings (x sqrt(weight)), i.e. average the cosines; "
        "score-mean: average each model's own scores (differs from concat only with --subtract-mean).",
    ),
    weights: Optional[str] = typer.Option(None, "--weights", help="One weight per model, e.g. 2,1 (default equal)."),
    names: Optional[str] = typer.Option(None, "--names", help="One name per model for the table, e.g. noisy,facenet."),
    images: Optional[Path] = typer.Option(
        None, "--images", help="For models: embed the protocol's images from this folder (cached in --out); ytf: the "
        "YTF root; ijbc/ijbb: the IJB root again (images aligned from the landmarks, as eval-ijb --model)."
    ),
    embedding: "EmbedSettings" = model_options(when="With models: ", skip=("weights",)),
    scoring: "ScoringSettings" = scoring_options(
        help={"allow_missing": "Drop pairs missing from any model (the same pairs for every row)."}),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for report.json and roc.png (every curve)."),
    save_embeddings: Optional[Path] = typer.Option(
        None, "--save-embeddings", help="Write the fused embeddings (.npz) to evaluate or ensemble again."
    ),
    mode: str = typer.Option(
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
    from facever.cli._console import info, library_warnings, user_errors
    from facever.cli._evaluation import console_hooks, print_evaluation
    from facever.core.locks import folder_lock

    with user_errors(), library_warnings(), folder_lock(out, kind="evaluation"):
        from facever.workflows.evaluate import evaluate_ensemble, open_benchmark, open_ijb

        hooks = console_hooks()
        model_names, weight_values = _split_list(names, "--names"), _numbers(weights)
        if protocol.value in ("ijbc", "ijbb"):
            bench = open_ijb(pairs, protocol.value, modes=mode, hooks=hooks)
        else:
            bench = open_benchmark(protocol.value, pairs, data=images, ext=ext)
        result = evaluate_ensemble(bench, sources, names=model_names, weights=weight_values, fusion=fusion.value,
                                   embed=embedding, scoring=scoring, out=out, save_fused=save_embeddings, hooks=hooks)
        print_evaluation(result, json_output)
        if result.fused_file is not None:
            info(f"wrote {result.fused_file}: {len(result.fused)} fused embeddings of dimension {result.fused.dim}")
