"""`facever export`: a model to ONNX or TorchScript, checked against PyTorch before the file appears."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from facever.cli._options import ExportFormat


def export(
    model: str = typer.Argument(
        ..., help="A facever model (RUN/model.pt or RUN/), or arcface:r50 / facenet:vggface2 with --weights.",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="File to write, named for its format: model.onnx, or model.torchscript (or .ts)."),
    format: ExportFormat = typer.Option(ExportFormat.onnx, "--format", "-f", help="onnx or torchscript."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="arcface:* / facenet:* only: the state dict file."),
    opset: Optional[int] = typer.Option(None, "--opset", min=18, help="ONNX opset (default: the exporter's current one)."),
) -> None:
    """Export a model to ONNX (dynamic batch, preprocessing in the metadata) or TorchScript.

    The written file is run on random inputs of several batch sizes and compared with the PyTorch
    model; the command fails, leaving no file, if any cosine similarity is below 0.9999.
    `facever embed OUT` then gives the same embeddings as `facever embed MODEL`. OUT is named for
    its format (*.onnx; *.torchscript or *.ts): facever loads each by its name, and TorchScript, which
    is code, only by its name.

    Examples:

        facever export runs/noisy/model.pt --out noisy.onnx

        facever export arcface:r50 --weights backbone.pth --out r50.onnx

        facever export runs/noisy/model.pt --format torchscript --out noisy.torchscript
    """
    import json

    from facever.cli._console import info, library_warnings, user_errors

    from facever.core.locks import file_lock

    with user_errors(), library_warnings(), file_lock(out):
        from facever.core.paths import check_output_is_not_an_input
        from facever.embedding.export import export_model
        from facever.embedding.loading import model_files

        check_output_is_not_an_input(out, model_files(model, weights=weights))

        result = export_model(model, out, format=format.value, weights=weights, opset=opset)
        typer.echo(json.dumps({
            "file": str(result.path), "format": result.format, "opset": result.opset,
            "min_cosine_vs_pytorch": result.min_cosine, "checked_inputs": result.checked_inputs,
            "metadata": result.metadata,
        }, indent=2))
        info(f"wrote {result.path} ({result.format}); outputs match PyTorch (min cosine {result.min_cosine:.7f})")
