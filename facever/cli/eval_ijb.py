"""`facever eval-ijb`: IJB-B / IJB-C template-based 1:1 verification and 1:N search (InsightFace's layout)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from facever.cli._options import JSON_OUTPUT, PAIR_ONLY, IJBSet, model_options, scoring_options

if TYPE_CHECKING:
    from facever.workflows.evaluate import EmbedSettings, ScoringSettings

MODE_HELP = ("Test mode(s): F1 flip (f(x)+f(mirror x)) / F0, N0 L2-normalise image features / N1 keep the norm, "
             "D1 multiply by the faceness score / D0. A comma list (F1N0D0,F1N1D1) or `all`. insightface's "
             "script uses F1N1D1.")


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
    mode: str = typer.Option("F1N0D0", "--mode", help=MODE_HELP),
    one_to_n: bool = typer.Option(
        False, "--one-to-n", help="Also 1:N: mixed probes against galleries G1 and G2 (IJB-B: S1, S2); first mode."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Folder for report.json, scores.npz, roc.png (with --model: crops and embeddings)."
    ),
    crops: Optional[Path] = typer.Option(
        None, "--crops", help="With --model: folder for the aligned crops (default OUT/crops_HxW); resumable."
    ),
    scoring: "ScoringSettings" = scoring_options(skip=PAIR_ONLY),
    embedding: "EmbedSettings" = model_options(
        when="With --model: ", help={"flip": "concat keeps f(x) and f(mirror x), so F0 and F1 both score."}),
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
    from facever.cli._console import fail, library_warnings, user_errors
    from facever.cli._evaluation import console_hooks, print_evaluation, require_embeddings_or_model
    from facever.core.locks import folder_lock

    require_embeddings_or_model(embeddings, model)
    if model is not None and out is None and crops is None:
        fail("--model writes aligned crops and an embeddings cache: give --out DIR (or --crops DIR)")
    with user_errors(), library_warnings(), folder_lock(out, kind="evaluation"):
        from facever.workflows.evaluate import Source, evaluate, open_ijb

        hooks = console_hooks()
        bench = open_ijb(root, set_name.value, modes=mode, one_to_n=one_to_n, hooks=hooks)
        result = evaluate(bench, Source(embeddings, model), embed=embedding, scoring=scoring, out=out, crops=crops,
                          hooks=hooks)
        print_evaluation(result, json_output)
