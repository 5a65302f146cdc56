"""`facever compare`: configuration differences, best validation accuracy, benchmark reports found in
the run folders, and the curves, on hand-made run folders and on real (tiny) training runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from facever.cli import app
from facever.workflows.compare import compare_runs, config_differences, read_metrics, summarize_run
from facever.core.errors import FaceverError, InputFileError

from tests.helpers.repro_data import build_casia, tiny_config_text

runner = CliRunner()


def make_run(root: Path, name: str, *, config: str, metrics: list[dict], lfw: float | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text(config)
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if lfw is not None:
        (run / "lfw").mkdir()
        (run / "lfw" / "report.json").write_text(json.dumps(
            {"protocol": "lfw", "accuracy": {"mean": lfw, "std": 0.01, "stderr": 0.003}, "auc": 0.99}))
    return run


BASE = 'arch = "sphere20"\nhead = "{head}"\nlr = {lr}\nepochs = 2\nworkers = {workers}\n'


def two_runs(tmp_path):
    a = make_run(tmp_path, "softmax", config=BASE.format(head="softmax", lr=0.1, workers=4), metrics=[
        {"kind": "train", "step": 10, "loss": 5.0}, {"kind": "validation", "step": 10, "accuracy": 0.80},
        {"kind": "train", "step": 20, "loss": 4.0}, {"kind": "validation", "step": 20, "accuracy": 0.85},
        {"kind": "epoch", "step": 20}], lfw=0.9812)
    b = make_run(tmp_path, "noisy", config=BASE.format(head="noisy-softmax", lr=0.1, workers=0) + "alpha2 = 0.1\n",
                 metrics=[{"kind": "train", "step": 10, "loss": 5.5}, {"kind": "validation", "step": 10, "accuracy": 0.90},
                          {"kind": "train", "step": 20, "loss": 4.5}, {"kind": "validation", "step": 20, "accuracy": 0.88}],
                 lfw=0.9901)
    return a, b


def test_differences_best_validation_and_reports(tmp_path):
    a, b = two_runs(tmp_path)
    comparison = compare_runs([a, b])
    assert comparison.differing == ["head", "alpha2"]  # workers differ too, but do not change a model
    rows = {label: (cells, hl) for label, cells, hl in comparison.rows}
    assert rows["head"] == (["softmax", "noisy-softmax"], True)
    assert rows["alpha2"] == (["-", "0.1"], True)
    assert rows["lr"] == (["0.1", "0.1"], False)
    assert rows["best validation accuracy"][0] == ["85.00% (step 20)", "90.00% (step 10)"]
    assert rows["final train loss"][0] == ["4.0000", "4.5000"]
    assert rows["lfw"][0] == ["98.12% +- 1.00", "99.01% +- 1.00"]
    md = comparison.to_markdown()
    assert "| **head** * | **softmax** | **noisy-softmax** |" in md


def test_compare_command_writes_table_json_and_curves(tmp_path):
    a, b = two_runs(tmp_path)
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(a), str(b), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data == json.loads((out / "compare.json").read_text())
    assert [r["best_validation_accuracy"] for r in data["runs"]] == [0.85, 0.90]
    assert data["runs"][1]["benchmarks"]["lfw"]["accuracy"] == 0.9901
    with Image.open(out / "compare.png") as im:
        assert im.format == "PNG"
    assert "**head**" in (out / "compare.md").read_text()


def test_bad_run_folders_are_named(tmp_path):
    with pytest.raises(FaceverError, match="not a training run"):
        compare_runs([tmp_path])
    with pytest.raises(FaceverError, match="run folder not found"):
        compare_runs([tmp_path / "nope"])
    run = make_run(tmp_path, "r", config='arch = "sphere20"\n', metrics=[{"kind": "train", "step": 1, "loss": 1.0}])
    with open(run / "metrics.jsonl", "a") as f:
        f.write("{broken\n")
    with pytest.raises(InputFileError, match=r"metrics\.jsonl:2:"):
        read_metrics(run)
    result = runner.invoke(app, ["compare", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "run folder not found" in result.output


@pytest.mark.slow
def test_compare_real_training_runs(faces_dir, tmp_path):
    casia = build_casia(faces_dir, tmp_path / "casia", people=range(1, 7), per_person=4)
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(tiny_config_text(batch_size=8, holdout_identities=2, width=4, embedding_dim=16, epochs=2))
    runs = []
    for head in ("softmax", "noisy-softmax"):
        run = tmp_path / head
        result = runner.invoke(app, ["train", str(casia), "--config", str(tiny), "--head", head, "--out", str(run)])
        assert result.exit_code == 0, result.output
        runs.append(run)
    comparison = compare_runs(runs)
    assert config_differences(comparison.runs) == ["head"]
    for run in comparison.runs:
        metrics = read_metrics(run.path)
        assert metrics.val_steps == [2, 4]  # validated at each epoch's end
        best = max(metrics.val_accuracy)
        assert run.best_validation[0] == best
        assert summarize_run(run.path).steps == 4
