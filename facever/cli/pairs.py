"""`facever pairs`: a verification pairs file (LFW's format or a path list) for any identity folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def pairs(
    identity_dir: Path = typer.Argument(..., help="Folder with one sub-folder of images per person.", show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="Pairs file to write, e.g. pairs.txt."),
    folds: int = typer.Option(10, "--folds", min=2, help="Number of folds."),
    per_fold: int = typer.Option(300, "--per-fold", "-n", min=1, help="Same-person pairs per fold (and as many different)."),
    different_per_fold: Optional[int] = typer.Option(
        None, "--different-per-fold", min=1, help="Different-person pairs per fold (default: as many as --per-fold). "
        "More of them let `facever calibrate` bound smaller false-accept rates (about 3/FAR pairs in all)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same folder: the same file."),
) -> None:
    """Write a pairs file with N same-person and N different-person pairs per fold.

    People are kept disjoint across folds when the folder has enough of them. Folders named like LFW
    (Name/Name_0001.jpg) get LFW's exact pairs.txt format (header `FOLDS\\tN`); any other folder gets a
    path list (`path_a path_b same fold`, tab separated, paths relative to IDENTITY_DIR). eval-lfw,
    ensemble and verify --pairs read both, with --images IDENTITY_DIR.

    Example:

        facever pairs orl/ --out orl_pairs.txt --folds 10 --per-fold 100 --seed 0

        facever pairs staff_aligned/ --out calib_pairs.txt --per-fold 100 --different-per-fold 1000
    """
    from facever.cli._console import info, user_errors, warn

    with user_errors():
        from facever.protocols.pair_lists import write_identity_pairs

        result, n_people = write_identity_pairs(identity_dir, out, folds=folds, per_fold=per_fold, seed=seed,
                                                different_per_fold=different_per_fold)
    if not result.disjoint:
        warn(f"{n_people} people are too few to keep them disjoint across {folds} folds of {per_fold} pairs; "
             "the folds share people")
    fmt = "LFW pairs.txt format" if result.format == "lfw" else "path list (path_a path_b same fold)"
    info(f"wrote {out}: {folds} folds x ({per_fold} same + {different_per_fold or per_fold} different) pairs from {n_people} people, "
         f"{fmt}" + (", people disjoint across folds" if result.disjoint else ""))
