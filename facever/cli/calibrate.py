"""`facever calibrate`: thresholds at target false-accept rates, each with an exact bound, from your own pairs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from facever.cli._options import Benchmark, allow_missing_option, model_options
from facever.core.settings import CALIBRATION_CONFIDENCE, DEFAULT_FARS

if TYPE_CHECKING:
    from facever.workflows.evaluate import EmbedSettings

FAR_HELP = "Target false-accept rates, comma-separated."


def parse_fars(text: str) -> list[float]:
    """`1e-2,1e-3` -> [0.01, 0.001] (FaceverError on anything else)."""
    from facever.core.errors import FaceverError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise FaceverError(f"--far {text!r}: expected comma-separated rates such as 1e-2,1e-3") from None


def calibrate(
    pairs: Path = typer.Option(..., "--pairs", help="Labelled pairs of your own people: `facever pairs` output, "
                               "LFW's pairs.txt, or (with --protocol) an FGLFW/CALFW/CPLFW list or a .bin."),
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", "-e", help="Embeddings file of the pairs' images."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Or embed now with this model (needs --images)."),
    images: Optional[Path] = typer.Option(None, "--images", help="With --model: the folder the pairs' paths start from."),
    protocol: Benchmark = typer.Option(Benchmark.lfw, "--protocol", "-p", help="Which format --pairs is in "
                                       "(lfw also reads `facever pairs` lists)."),
    ext: Optional[str] = typer.Option(None, "--ext", help="lfw: image extension of the pairs (default .jpg)."),
    far: str = typer.Option(",".join(f"{f:g}" for f in DEFAULT_FARS), "--far", help=FAR_HELP),
    confidence: float = typer.Option(CALIBRATION_CONFIDENCE, "--confidence", min=0.5, max=0.9999,
                                     help="Confidence of the one-sided bound on each threshold's FAR."),
    probability: bool = typer.Option(False, "--probability", help="Also fit a score-to-probability map (isotonic "
                                     "and logistic compared on held-out folds; the better one kept)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="calibration.json to write."),
    attach: bool = typer.Option(False, "--attach", help="Store the calibration in the --model file (model.pt or "
                                ".onnx); `facever export` carries it on."),
    embedding: "EmbedSettings" = model_options(when="With --model: "),
    allow_missing: bool = allow_missing_option(),
    json_output: bool = typer.Option(False, "--json", help="Print calibration.json's content instead of the table."),
) -> None:
    """Calibrate a model's thresholds on pairs of your own people: for each target FAR, the lowest threshold
    whose exact (Clopper-Pearson) upper bound on the false-accept rate is within the target, and the TAR there.

    Targets that the different-person pairs are too few to bound are refused, saying how many pairs they
    need (about 3/FAR at 95%). The bound assumes the pairs are independent draws of the pairs you will
    verify: use many people, not the ones the model was trained on.

    Examples:

        facever pairs photos_aligned/calib --out calib_pairs.txt --per-fold 300 --different-per-fold 3000

        facever calibrate --pairs calib_pairs.txt --model runs/a/model.pt --images photos_aligned/calib --attach --out calibration.json

        facever calibrate --pairs calib_pairs.txt -e calib.npz --far 1e-2,1e-3 --probability --out calibration.json
    """
    import json

    from facever.cli._console import fail, user_errors
    from facever.cli._evaluation import console_hooks, require_embeddings_or_model

    bin_file = protocol.value == "bin"
    require_embeddings_or_model(embeddings, model, data=pairs if bin_file else images,
                                data_option=None if bin_file else "--images",
                                data_help="DIR (the folder the pairs' images are in)")
    if protocol.value not in ("lfw", "fglfw", "calfw", "cplfw", "bin"):
        fail(f"--protocol {protocol.value}: calibrate takes image pairs (lfw, fglfw, calfw, cplfw, bin)")
    if out is None and not attach:
        fail("give --out calibration.json, --attach, or both")
    if attach and model is None:
        fail("--attach stores the calibration in the model file: give it with --model")
    from facever.core.locks import file_lock

    with user_errors(), file_lock(out or Path(model)):
        from facever.workflows.calibrate import calibrate as calibrate_pairs
        from facever.workflows.evaluate import Source, open_benchmark

        bench = open_benchmark(protocol.value, pairs, data=None if bin_file else images, ext=ext)
        source = Source(embeddings=embeddings) if embeddings is not None else Source(model=model)
        run = calibrate_pairs(bench, source, embed=embedding, fars=parse_fars(far), confidence=confidence,
                              probability=probability, allow_missing=allow_missing, out=out, attach=attach,
                              hooks=console_hooks())
    if json_output:
        typer.echo(json.dumps(run.calibration.to_dict(), indent=2))
    else:
        print_calibration(run.calibration)


def print_calibration(cal) -> None:
    """The operating points as a table on stdout, the probability map's comparison on stderr."""
    from facever.cli._console import info, print_table

    c = f"{100 * cal.confidence:g}%"
    rows = [[f"{p.far_target:g}", f"{p.threshold:.4f}", f"{p.false_accepts} of {p.impostor_pairs}", f"{p.far_bound:.3g}",
             f"{100 * p.tar:.2f}% ({100 * p.tar_interval[0]:.1f}-{100 * p.tar_interval[1]:.1f})"] for p in cal.points]
    rows += [[f"{r.far_target:g}", "refused", f"needs {r.impostor_pairs_needed} different-person pairs, has "
              f"{r.impostor_pairs}", "-", "-"] for r in cal.refused]
    print_table(["target FAR", "threshold (cosine)", "false accepts", f"FAR bound ({c})", f"TAR ({c} interval)"], rows)
    info(f"same person iff cosine > threshold; FAR bound: exact one-sided {c} bound on new pairs like these "
         f"({cal.pairs['same']} same-person and {cal.pairs['different']} different-person pairs)")
    if cal.probability:
        p = cal.probability
        held = ", ".join(f"{m}: log loss {v['log_loss']:.4f}, Brier {v['brier']:.4f}" for m, v in p["held_out"].items())
        info(f"probability map: {p['method']} ({p['chosen_by']} on {p['folds']}; {held}); prior P(same) = "
             f"{p['prior_same']:.3g}, the calibration pairs' share")
