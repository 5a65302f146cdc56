"""`facever verify`: two photos (or a list of pairs) in, cosine similarity and "same person" / "different people" out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from facever.cli._options import TORCHSCRIPT_HELP, Select, model_options
from facever.cli.embed import BGR_HELP, MEAN_HELP, STD_HELP
from facever.core.settings import DEFAULT_MIN_FACE, DEFAULT_SELECT

if TYPE_CHECKING:
    from facever.workflows.evaluate import EmbedSettings


def verify(
    image_a: Optional[Path] = typer.Argument(None, help="First photo.", show_default=False),
    image_b: Optional[Path] = typer.Argument(None, help="Second photo.", show_default=False),
    model: str = typer.Option(
        ..., "--model", "-m", help="A pretrained model by name (arcface-r50-webface600k, ...: `facever models list`; "
        "pulled on first use), a facever model (RUN/model.pt), arcface:r50 / facenet:vggface2 with --weights, "
        "a .onnx graph or an exported TorchScript file (model.torchscript). " + TORCHSCRIPT_HELP,
    ),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", "-t", help="Cosine similarity (-1..1) above which two faces are the same person."
    ),
    threshold_from: Optional[Path] = typer.Option(
        None, "--threshold-from", help="report.json of `facever eval-*` with the same model: use the mean of its "
        "fold thresholds.",
    ),
    far: Optional[float] = typer.Option(
        None, "--far", help="Decide at the threshold calibrated for this false-accept rate (`facever calibrate`), "
        "from --calibration or the calibration attached to the model.",
    ),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="With --far: a calibration.json (default: the one attached to the model file).",
    ),
    pairs: Optional[Path] = typer.Option(
        None, "--pairs", help="Many pairs: a CSV/TSV with columns a,b, or a list from `facever pairs`.",
    ),
    images: Optional[Path] = typer.Option(
        None, "--images", help="With --pairs: folder the relative paths start from (default: the pairs file's folder)."
    ),
    aligned: bool = typer.Option(
        False, "--aligned", help="The photos are aligned crops already (no face detection; resized to the model's input)."
    ),
    select: Select = typer.Option(Select(DEFAULT_SELECT), "--select", help="Which face of a photo with several: largest or center."),
    min_face: int = typer.Option(DEFAULT_MIN_FACE, "--min-face", help="Smallest face to look for, in pixels."),
    mean: Optional[str] = typer.Option(None, "--mean", help=MEAN_HELP),
    std: Optional[str] = typer.Option(None, "--std", help=STD_HELP),
    bgr: Optional[bool] = typer.Option(None, "--bgr/--rgb", help=BGR_HELP),
    embedding: "EmbedSettings" = model_options(what="photos"),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON instead of text."),
) -> None:
    """Say whether two photos show the same person: align both, embed, compare.

    Prints the cosine similarity of the two embeddings and, given a threshold, the decision
    ("same person" iff cosine > threshold). A photo with several faces uses the largest (or --select
    center) and says so; a photo without a face is an error naming it.

    Examples:

        facever verify me.jpg passport.jpg --model runs/noisy/model.pt --far 1e-3

        facever verify me.jpg passport.jpg --model runs/noisy/model.pt --threshold-from results/lfw/report.json

        facever verify a.jpg b.jpg --model arcface-r50-webface600k --threshold 0.3

        facever verify --pairs pairs.csv --images photos/ --model arcface:r50 --weights backbone.pth -t 0.3 --json
    """
    import json

    from facever.cli._console import library_warnings, user_errors
    from facever.cli._evaluation import console_hooks

    _check_arguments(image_a, image_b, pairs, images, (threshold, threshold_from, far), calibration)
    with user_errors(), library_warnings():
        from facever.cli._options import explicit_parameters
        from facever.embedding.loading import preprocessing_overrides
        from facever.workflows.verify import verify as verify_photos

        given = explicit_parameters(["flip"])  # None outside a click command: then the flip counts as chosen
        result = verify_photos(
            model, None if pairs is not None else [(str(image_a), str(image_b))], pairs_file=pairs, images=images,
            threshold=threshold, threshold_from=threshold_from, far=far, calibration=calibration, aligned=aligned,
            select=select.value, min_face=min_face, preprocessing=preprocessing_overrides(mean, std, bgr),
            embed=embedding,
            flip_given=given is None or "flip" in given, hooks=console_hooks(),
        )
    _say_which_faces(result, select.value)
    if json_output:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_pairs(result, single=pairs is None)


def _check_arguments(image_a, image_b, pairs, images, decision_sources, calibration) -> None:
    """The combinations of arguments that make no sense, as usage errors before any model loads."""
    from facever.cli._console import fail

    far = decision_sources[2]
    if pairs is None and (image_a is None or image_b is None):
        fail("give two photos (IMG_A IMG_B) or --pairs FILE")
    if pairs is not None and image_a is not None:
        fail("give either two photos or --pairs FILE, not both")
    if sum(v is not None for v in decision_sources) > 1:
        fail("give one of --threshold, --threshold-from and --far")
    if calibration is not None and far is None:
        fail("--calibration applies with --far (the target false-accept rate to decide at)")
    if images is not None and pairs is None:
        fail("--images applies with --pairs only")


def _say_which_faces(result, select: str) -> None:
    from facever.cli._console import info

    for name, choice in result.faces.items():
        if choice.faces > 1:
            box = ", ".join(f"{v:.0f}" for v in choice.box or [])
            info(f"{name}: {choice.faces} faces found; using the {select} one (box x1,y1,x2,y2 = {box})")


def _print_pairs(result, *, single: bool) -> None:
    from facever.cli._console import info

    source = result.threshold_source
    if result.calibration is not None:
        info(result.calibration.describe())
    elif source is not None:
        info(f"threshold {source.describe()} (uncalibrated: no bound on false accepts; see `facever calibrate`)")
    elif result.threshold is not None:
        info(f"threshold {result.threshold:g} given by hand (uncalibrated: no bound on false accepts; see "
             "`facever calibrate`)")
    else:
        hint = (f"; this model is calibrated for --far {', '.join(f'{f:g}' for f in result.calibrated_fars)}"
                if result.calibrated_fars else "")
        info("no threshold given (--far F, --threshold T or --threshold-from report.json): printing the similarity "
             "only" + hint)
    if single:
        p = result.pairs[0]
        verdict = "" if p.same is None else ("same person" if p.same else "different people")
        typer.echo(f"cosine {p.cosine:.4f}" + (f"  {verdict} (threshold {result.threshold:.4f})" if verdict else ""))
        return
    from facever.cli._console import print_table
    from facever.workflows.verify import decision_word

    has_expected = any(p.expected is not None for p in result.pairs)
    print_table(["a", "b", "cosine", "decision"] + (["expected"] if has_expected else []),
                [[p.a, p.b, f"{p.cosine:.4f}", p.decision or "-"] + ([decision_word(p.expected) or "-"] if has_expected else [])
                 for p in result.pairs])
    decided = [p for p in result.pairs if p.same is not None and p.expected is not None]
    if decided:
        right = sum(p.same == p.expected for p in decided)
        info(f"{right} of {len(decided)} decisions agree with the list's labels ({100 * right / len(decided):.1f}%)")
