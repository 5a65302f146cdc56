"""Every table facever prints goes through one writer (`cli/_console.print_table`): a drawn table on a
terminal, tab-separated lines (header first, title on stderr) into a pipe or a file. Checked here on
eval-lfw's fold and summary tables and on ensemble's comparison, against the numbers of their JSON."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from facever.cli import app
from tests.helpers.pair_embeddings import two_models_on_pairs

runner = CliRunner()


@pytest.fixture(scope="module")
def small_lfw(tmp_path_factory):
    """An LFW-format pairs file (10 folds x 20 + 20) over 30 synthetic people, and two embeddings files."""
    return two_models_on_pairs(tmp_path_factory.mktemp("tables"), name="Person", people=30, per_person=6, per_fold=20,
                               seed=0, dim=32, noise=1.2, model="synthetic-")


def _tsv_tables(stdout: str) -> list[list[list[str]]]:
    """Blank-line separated TSV tables: each a list of rows of cells (header first)."""
    return [[line.split("\t") for line in block.splitlines()] for block in stdout.strip().split("\n\n")]


def test_eval_lfw_tables_in_a_pipe_are_tsv_and_match_the_report(small_lfw):
    pairs, (emb, _) = small_lfw
    printed = runner.invoke(app, ["eval-lfw", "--pairs", str(pairs), "-e", str(emb)])
    assert printed.exit_code == 0, printed.output
    report = json.loads(runner.invoke(app, ["eval-lfw", "--pairs", str(pairs), "-e", str(emb), "--json"]).stdout)
    folds, summary = _tsv_tables(printed.stdout)
    assert folds[0] == ["fold", "pairs", "threshold (cosine)", "accuracy"]
    assert [row[0] for row in folds[1:]] == [str(k) for k in range(1, 11)]
    for row, fold in zip(folds[1:], report["folds"]):
        assert int(row[1]) == fold["pairs"] == 40
        assert float(row[2]) == pytest.approx(fold["threshold"], abs=5e-7)
        assert row[3] == f"{100 * fold['accuracy']:.2f}%"
    assert summary[0] == ["measure", "value"]
    values = dict(summary[1:])
    assert values["AUC"] == f"{report['auc']:.4f}"
    assert values["accuracy"].startswith(f"{100 * report['accuracy']['mean']:.2f}% +- ")
    assert values["TAR@FAR=0.001"] == f"{100 * report['tar_at_far']['0.001']:.2f}%"
    assert all(len(row) == 2 for row in summary)
    assert "LFW 10-fold verification" in printed.stderr and "LFW 10-fold" not in printed.stdout


def test_ensemble_table_in_a_pipe_is_tsv(small_lfw):
    pairs, files = small_lfw
    printed = runner.invoke(app, ["ensemble", *map(str, files), "--pairs", str(pairs)])
    assert printed.exit_code == 0, printed.output
    report = json.loads(runner.invoke(app, ["ensemble", *map(str, files), "--pairs", str(pairs), "--json"]).stdout)
    (table,) = _tsv_tables(printed.stdout)
    assert table[0][:3] == ["model", "accuracy", "AUC"] and table[0][3].startswith("TAR@FAR=")
    assert [row[0] for row in table[1:]] == ["m0", "m1", "ensemble"]
    assert table[3][2] == f"{report['ensemble']['auc']:.4f}"
    assert all(len(row) == len(table[0]) for row in table)
