"""`facever enroll` (identity folders -> gallery.npz) and `facever identify` (photos -> who, from the gallery)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from facever.cli._options import AMP, Amp, Flip, SearchBackend, Select, batch_size_option, device_option, flip_option
from facever.core.settings import DEFAULT_TOP_K

MODEL_HELP = ("A facever model (RUN/model.pt), arcface:r50 / facenet:vggface2 with --weights, a .onnx graph or an "
              "exported TorchScript file.")
ALIGNED_HELP = "The images are aligned crops already (no face detection; fitted to the model's input)."


def _aligner(aligned: bool, model, select, min_face: int, device: str):
    if aligned:
        return None
    from facever.data_prep.align import FaceAligner

    return FaceAligner(size=tuple(model.input_size), select=select.value, min_face=min_face, device=device)


def enroll(
    galleries: List[Path] = typer.Argument(..., help="Folders with one sub-folder of photos per person.",
                                           show_default=False),
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Gallery file to write, e.g. gallery.npz."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="facenet:* / arcface:* only: the state dict."),
    aligned: bool = typer.Option(False, "--aligned", help=ALIGNED_HELP),
    select: Select = typer.Option(Select.largest, "--select", help="Which face of a photo with several."),
    min_face: int = typer.Option(20, "--min-face", help="Smallest face to look for, in pixels."),
    flip: Flip = flip_option(),
    batch_size: int = batch_size_option(),
    device: str = device_option(),
    amp: Amp = AMP,
) -> None:
    """Enrol people for `facever identify`: one template per person, the mean of the normalised embeddings
    of their photos (as IJB templates are pooled).

    Photos without a face are listed; so is a person none of whose photos could be used (not enrolled).
    The same name twice (also differing only by case or accents) is refused.

    Example:

        facever enroll staff/ --model runs/a/model.pt --out staff.npz
    """
    from facever.cli._console import info, library_warnings, progress_bar, user_errors, warn
    from facever.core.locks import file_lock

    with user_errors(), library_warnings(), file_lock(out):
        import shutil

        from facever.embedding.loading import load_embedding_model
        from facever.workflows.gallery import enroll as enroll_people, gallery_people, save_gallery

        people = gallery_people(galleries)
        emb_model = load_embedding_model(model, weights=weights, device=device)
        # Embeddings are kept next to OUT while enrolling, so an interrupted run resumes where it stopped.
        partial = out.parent / f".{out.stem}.partial"
        with progress_bar("enrolling", total=sum(len(rels) for _, _, rels in people)) as advance:
            result = enroll_people(emb_model, galleries, people=people, cache=partial, flip=flip.value,
                                   align=_aligner(aligned, emb_model, select, min_face, device), batch_size=batch_size,
                                   device=device, amp=amp.value, progress=advance)
        for name, reasons in result.failed_people.items():
            warn(f"{name}: not enrolled, none of their {len(reasons)} images could be used ("
                 + "; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else "") + ")")
        for reason in result.bad_images[:20]:
            warn(f"left out {reason}")
        if len(result.bad_images) > 20:
            warn(f"... and {len(result.bad_images) - 20} more images left out")
        save_gallery(out, result.gallery)
        shutil.rmtree(partial, ignore_errors=True)
    g = result.gallery
    info(f"wrote {out}: {len(g)} people from {int(g.images.sum())} images ({emb_model.model_id}, flip {flip.value})"
         + (f"; {len(result.failed_people)} people not enrolled" if result.failed_people else ""))


def identify(
    photos: List[Path] = typer.Argument(..., help="Photos, folders of photos, or text files listing photos.",
                                        show_default=False),
    gallery: Path = typer.Option(..., "--gallery", "-g", help="Gallery from `facever enroll`."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The model the gallery was enrolled with "
                                        "(default: the one it names)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="facenet:* / arcface:* only: the state dict."),
    far: Optional[float] = typer.Option(None, "--far", help="Answer unknown below the threshold calibrated for this "
                                        "false-accept rate (`facever calibrate`)."),
    calibration: Optional[Path] = typer.Option(None, "--calibration", help="With --far: a calibration.json (default: "
                                               "the one attached to the model)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", help="Or a cosine threshold by hand."),
    top: int = typer.Option(DEFAULT_TOP_K, "--top", "-k", min=1, help="People listed per photo."),
    backend: SearchBackend = typer.Option(SearchBackend.numpy, "--backend", help="numpy (exact) or faiss (exact flat "
                                          "index; pip install 'facever[faiss]')."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the answers to a .csv or .json file."),
    aligned: bool = typer.Option(False, "--aligned", help=ALIGNED_HELP),
    select: Select = typer.Option(Select.largest, "--select", help="Which face of a photo with several."),
    min_face: int = typer.Option(20, "--min-face", help="Smallest face to look for, in pixels."),
    flip: Flip = flip_option(help="Flip mode (default: the gallery's)."),
    batch_size: int = batch_size_option(),
    device: str = device_option(),
    amp: Amp = AMP,
    json_output: bool = typer.Option(False, "--json", help="Print the answers as JSON."),
) -> None:
    """Who is in each photo? The best --top people of the gallery with their cosine, and with --far (or
    --threshold) a decision: the best person, or "unknown" when nobody scores above the threshold.

    Examples:

        facever identify visitor.jpg --gallery staff.npz --far 1e-4

        facever identify cctv_frames/ --gallery staff.npz --far 1e-4 --out answers.csv
    """
    from facever.cli._console import fail, info, library_warnings, progress_bar, user_errors, warn

    if far is not None and threshold is not None:
        fail("give either --far or --threshold, not both")
    if calibration is not None and far is None:
        fail("--calibration applies with --far")
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        fail(f"--out {out}: write a .csv or a .json file")
    import contextlib

    from facever.core.locks import file_lock

    with user_errors(), library_warnings(), file_lock(out) if out is not None else contextlib.nullcontext():
        import shutil

        from facever.cli._options import explicit_parameters
        from facever.data_prep.align_dataset import collect_sources
        from facever.workflows.gallery import identify as identify_photos, load_gallery, model_spec_of

        g = load_gallery(gallery)
        given = explicit_parameters(["flip"])
        run_flip = flip.value if given is None or "flip" in given else g.metadata.get("flip", flip.value)
        emb_model = _load(model or model_spec_of(g, gallery), weights, device)
        calibrated = None
        if far is not None:
            from facever.verification.search import open_set_fpir_bound
            from facever.workflows.verify import calibrated_threshold

            calibrated, problems = calibrated_threshold(emb_model, far, calibration=calibration, flip=run_flip)
            threshold = calibrated.threshold
            for problem in problems:
                warn(problem)
            info(calibrated.describe())
            info(f"a person not enrolled is matched to one of the {len(g)} people with probability <= "
                 f"{open_set_fpir_bound(calibrated.point.far_bound, len(g)):.3g} (union bound over the gallery)")
        elif threshold is not None:
            info(f"threshold {threshold:g} given by hand (uncalibrated: no bound on false matches)")
        else:
            info("no threshold (--far F or --threshold T): listing the best people without a decision")
        groups = [(root, [rel for _, rel in items]) for root, items in map(collect_sources, photos)]
        partial = out.parent / f".{out.stem}.partial" if out is not None else None  # resumes a long run
        with progress_bar("identifying", total=sum(len(r) for _, r in groups)) as advance:
            result = identify_photos(emb_model, g, groups, k=top, threshold=threshold, backend=backend.value,
                                     align=_aligner(aligned, emb_model, select, min_face, device), flip=run_flip,
                                     batch_size=batch_size, device=device, amp=amp.value, cache=partial,
                                     progress=advance)
        if calibrated is not None:
            result.settings["calibration"] = calibrated.to_dict()
        if out is not None:
            from facever.workflows.gallery import write_answers

            write_answers(out, result)
            shutil.rmtree(partial, ignore_errors=True)
            info(f"wrote {out}")
    _print_answers(result, json_output)


def _load(spec: str, weights, device):
    from facever.embedding.loading import load_embedding_model

    return load_embedding_model(spec, weights=weights, device=device)


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
            rows.append([r.photo, "-", "-", "no face" if "face" in r.error else "error"])
            continue
        best = ", ".join(f"{n} {s:.3f}" for n, s in r.matches)
        rows.append([r.photo, r.decision or "-", f"{r.matches[0][1]:.4f}", best])
    print_table(["photo", "decision", "best cosine", "best people"], rows)
