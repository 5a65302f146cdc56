"""`facever enroll` (identity folders -> gallery.npz) and `facever identify` (photos -> who, from the gallery)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from facever.cli._options import SearchBackend, Select, model_options
from facever.core.settings import DEFAULT_MIN_FACE, DEFAULT_SEARCH_BACKEND, DEFAULT_SELECT, DEFAULT_TOP_K

if TYPE_CHECKING:
    from facever.workflows.evaluate import EmbedSettings

MODEL_HELP = ("A pretrained model by name (`facever models list`), a facever model (RUN/model.pt), arcface:r50 / "
              "facenet:vggface2 with --weights, a .onnx graph or an exported TorchScript file.")
ALIGNED_HELP = "The images are aligned crops already (no face detection; fitted to the model's input)."
SELECT = typer.Option(Select(DEFAULT_SELECT), "--select", help="Which face of a photo with several: largest or center.")
MIN_FACE = typer.Option(DEFAULT_MIN_FACE, "--min-face", help="Smallest face to look for, in pixels.")


def enroll(
    galleries: List[Path] = typer.Argument(..., help="Folders with one sub-folder of photos per person.",
                                           show_default=False),
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Gallery file to write, e.g. gallery.npz."),
    aligned: bool = typer.Option(False, "--aligned", help=ALIGNED_HELP),
    select: Select = SELECT,
    min_face: int = MIN_FACE,
    embedding: "EmbedSettings" = model_options(what="photos"),
) -> None:
    """Enrol people for `facever identify`: one template per person, the mean of the normalised embeddings
    of their photos (as IJB templates are pooled).

    Photos without a face are listed; so is a person none of whose photos could be used (not enrolled).
    The same name twice (also differing only by case or accents) is refused. An interrupted run resumes.

    Example:

        facever enroll staff/ --model runs/a/model.pt --out staff.npz
    """
    from facever.cli._console import library_warnings, user_errors
    from facever.cli._evaluation import console_hooks
    from facever.core.locks import file_lock

    with user_errors(), library_warnings(), file_lock(out):
        from facever.workflows.gallery import enroll_gallery

        enroll_gallery(model, galleries, out, embed=embedding, aligned=aligned, select=select.value,
                       min_face=min_face, hooks=console_hooks())


def identify(
    photos: List[Path] = typer.Argument(..., help="Photos, folders of photos, or text files listing photos.",
                                        show_default=False),
    gallery: Path = typer.Option(..., "--gallery", "-g", help="Gallery from `facever enroll`."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The model the gallery was enrolled with "
                                        "(default: the one it names)."),
    far: Optional[float] = typer.Option(None, "--far", help="Answer unknown below the threshold calibrated for this "
                                        "false-accept rate (`facever calibrate`)."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="With --far: a calibration.json (default: "
                                               "the one attached to the model)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", help="Or a cosine threshold by hand."),
    top: int = typer.Option(DEFAULT_TOP_K, "--top", "-k", min=1, help="People listed per photo."),
    backend: SearchBackend = typer.Option(SearchBackend(DEFAULT_SEARCH_BACKEND), "--backend", help="numpy (exact) or "
                                          "faiss (FAISS's exact flat index; pip install 'facever[faiss]')."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the answers to a .csv or .json file."),
    aligned: bool = typer.Option(False, "--aligned", help=ALIGNED_HELP),
    select: Select = SELECT,
    min_face: int = MIN_FACE,
    embedding: "EmbedSettings" = model_options(what="photos", help={"flip": "Flip mode (default: the gallery's)."}),
    json_output: bool = typer.Option(False, "--json", help="Print the answers as JSON."),
) -> None:
    """Who is in each photo? The best --top people of the gallery with their cosine, and with --far (or
    --threshold) a decision: the best person, or "unknown" when nobody scores above the threshold.

    Examples:

        facever identify visitor.jpg --gallery staff.npz --far 1e-4

        facever identify cctv_frames/ --gallery staff.npz --far 1e-4 --out answers.csv
    """
    import contextlib

    from facever.cli._console import library_warnings, user_errors
    from facever.cli._evaluation import console_hooks
    from facever.cli._options import explicit_parameters
    from facever.core.locks import file_lock

    given = explicit_parameters(["flip"])  # None outside a click command: then the flip counts as chosen
    with user_errors(), library_warnings(), file_lock(out) if out is not None else contextlib.nullcontext():
        from facever.workflows.gallery import identify_photos

        result = identify_photos(gallery, photos, model=model, embed=embedding, flip_given=given is None or "flip" in given,
                                 far=far, calibration=calibration, threshold=threshold, k=top, backend=backend.value,
                                 aligned=aligned, select=select.value, min_face=min_face, out=out,
                                 hooks=console_hooks())
    _print_answers(result, json_output)


def _print_answers(result, json_output: bool) -> None:
    import json

    from facever.cli._console import print_table, warn

    if json_output:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    rows = []
    for r in result.rows:
        if r.error:
            warn(f"{r.photo}: {r.error}")
            rows.append([r.photo, "-", "-", r.error])
            continue
        best = ", ".join(f"{n} {s:.3f}" for n, s in r.matches)
        rows.append([r.photo, r.decision or "-", f"{r.matches[0][1]:.4f}", best])
    print_table(["photo", "decision", "best cosine", "best people"], rows)
