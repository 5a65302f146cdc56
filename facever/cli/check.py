"""`facever check`: is the model fed as it was trained? Its declared preprocessing against the usual mistakes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from facever.cli._options import Benchmark, Select, model_options
from facever.cli.embed import BGR_HELP, MEAN_HELP, STD_HELP
from facever.core.settings import DEFAULT_SELECT

if TYPE_CHECKING:
    from facever.workflows.evaluate import EmbedSettings


def check(
    model: str = typer.Argument(..., help="A pretrained model by name, a facever model (RUN/model.pt), facenet:vggface2 "
                                "/ arcface:r50 with --weights, a .onnx graph or an exported TorchScript file.",
                                show_default=False),
    images: Path = typer.Option(..., "--images", help="The folder the pairs' image paths start from."),
    pairs: Path = typer.Option(..., "--pairs", help="Labelled pairs (`facever pairs` output, LFW's pairs.txt; "
                               "--protocol for FGLFW/CALFW/CPLFW lists)."),
    mean: Optional[str] = typer.Option(None, "--mean", help=MEAN_HELP),
    std: Optional[str] = typer.Option(None, "--std", help=STD_HELP),
    bgr: Optional[bool] = typer.Option(None, "--bgr/--rgb", help=BGR_HELP),
    protocol: Benchmark = typer.Option(Benchmark.lfw, "--protocol", "-p", help="Which format --pairs is in."),
    ext: Optional[str] = typer.Option(None, "--ext", help="lfw: image extension of the pairs (default .jpg)."),
    align: bool = typer.Option(False, "--align", help="The images are raw photos: align them at the model's size."),
    select: Select = typer.Option(Select(DEFAULT_SELECT), "--select", help="With --align: which face of a photo."),
    embedding: "EmbedSettings" = model_options(help={"flip": "The flip mode of the declared row (the others are "
                                                              "variants)."}),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the result as JSON to this file."),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON instead of the table."),
) -> None:
    """Check a model's preprocessing on your own pairs: score them as the model declares, then with the
    channels swapped, the other normalisation conventions, the other alignment template and the other flip
    modes, and say plainly when one of those separates the pairs clearly better (e.g. "this model looks
    like it expects BGR input").

    Clearly better: AUC higher by at least 0.01 and a paired bootstrap over the pairs whose 2.5% quantile of
    the AUC difference is above zero. Use a few hundred pairs or more of people the model did not train on.

    Examples:

        facever check w600k_r50.onnx --images lfw_112/ --pairs pairs.txt

        facever check runs/a/model.pt --images photos_aligned/test --pairs test_pairs.txt --json
    """
    import json

    from facever.cli._console import fail, info, library_warnings, print_table, user_errors
    from facever.cli._evaluation import console_hooks

    if protocol.value not in ("lfw", "fglfw", "calfw", "cplfw"):
        fail(f"--protocol {protocol.value}: check takes image pairs in a folder (lfw, fglfw, calfw, cplfw)")
    with user_errors(), library_warnings():
        from facever.embedding.loading import preprocessing_overrides
        from facever.workflows.check import check as check_model
        from facever.workflows.evaluate import open_benchmark

        bench = open_benchmark(protocol.value, pairs, data=images, ext=ext)
        result = check_model(model, bench, embed=embedding, preprocessing=preprocessing_overrides(mean, std, bgr),
                             align=align, select=select.value, out=out, hooks=console_hooks())
    if json_output:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    print_table(["variant", "AUC", "EER", "AUC - declared (95% bootstrap)", "clearly better"],
                [[r.variant.label, f"{r.auc:.4f}", f"{100 * r.eer:.2f}%",
                  "-" if r.variant.key == "declared" else f"{r.delta:+.4f} ({r.delta_low:+.4f} to {r.delta_high:+.4f})",
                  "YES" if r.clearly_better else "no"] for r in result.results])
    for finding in result.findings or ["the declared preprocessing separates these pairs as well as every variant "
                                       "(no variant is clearly better)"]:
        info(finding)
