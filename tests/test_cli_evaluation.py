"""cli/_evaluation.py: every scoring command takes its embeddings the same way: `--embeddings FILE` or
`--model MODEL` (with the command's data folder), exactly one, refused in the same words before any work."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from facever.cli import app

runner = CliRunner()

COMMANDS = {  # command line without the embeddings' source, and the data option --model needs
    "eval-lfw": (["eval-lfw", "--pairs", "pairs.txt"], "--images"),
    "eval-fglfw": (["eval-fglfw", "--pairs", "pair_FGLFW.txt"], "--images"),
    "eval-ytf": (["eval-ytf", "--splits", "splits.txt"], "--videos"),
    "eval-bin": (["eval-bin", "lfw.bin"], None),
    "eval-ijb": (["eval-ijb", "IJB_release", "--out", "o"], None),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_embeddings_or_model_exactly_one(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing here exists: the usage error must come before any file is read
    args, data_option = COMMANDS[command]
    for extra in ([], ["--embeddings", "e.npz", "--model", "m.pt"]):
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 2, result.output
        assert "give either --embeddings FILE or --model MODEL" in result.output
    if data_option is not None:
        result = runner.invoke(app, [*args, "--model", "m.pt"])
        assert result.exit_code == 2 and f"--model needs {data_option}" in result.output, result.output
