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
    # workers differ too, but do not change a model; the noise each head trains with is filled in.
    assert comparison.differing == ["head", "noise", "alpha2"]
    rows = {label: (cells, hl) for label, cells, hl in comparison.rows}
    assert rows["head"] == (["softmax", "noisy-softmax"], True)
    assert rows["noise"] == (["off", "batch"], True) and rows["cosine_scale"] == (["0", "0"], False)
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


def _instrument_lines(step, p, saturated, noise=None):
    line = {"kind": "train", "step": step, "loss": 1.0, "target_prob": p, "saturated": saturated, "target_grad": 1 - p,
            "target_angle": 60.0 - 10 * p, "train_accuracy": p}
    return {**line, "noise": noise} if noise is not None else line


def _colour_pixels(path, rgb, tolerance=40):
    import numpy as np

    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(rgb)).sum(axis=2) < tolerance).sum())


def test_instrument_curves_one_png_per_quantity_runs_as_coloured_lines(tmp_path):
    from facever.core.settings import TRAINING_INSTRUMENTS
    from facever.workflows.compare import write_comparison

    a = make_run(tmp_path, "softmax", config=BASE.format(head="softmax", lr=0.1, workers=0), metrics=[
        _instrument_lines(10, 0.6, 0.1), _instrument_lines(20, 0.95, 0.7), {"kind": "epoch", "step": 20, "train_accuracy": 0.9},
        {"kind": "validation", "step": 20, "accuracy": 0.8}])
    b = make_run(tmp_path, "noisy", config=BASE.format(head="noisy-softmax", lr=0.1, workers=0), metrics=[
        _instrument_lines(10, 0.4, 0.0, noise=2.5), _instrument_lines(20, 0.7, 0.2, noise=1.5),
        {"kind": "epoch", "step": 20, "train_accuracy": 0.75}, {"kind": "validation", "step": 20, "accuracy": 0.85}])
    metrics = read_metrics(a)
    assert metrics.instruments["saturated"] == ([10, 20], [0.1, 0.7]) and "noise" not in metrics.instruments
    assert metrics.epoch_steps == [20] and metrics.epoch_train_accuracy == [0.9]
    comparison = compare_runs([a, b])
    rows = {label: cells for label, cells, _ in comparison.rows}
    assert rows["final p_y (share > 0.99)"] == ["0.950 (70%)", "0.700 (20%)"]
    assert rows["final training accuracy"] == ["90.00%", "75.00%"]
    written = write_comparison(comparison, tmp_path / "cmp")
    assert set(written["curves"]) == set(TRAINING_INSTRUMENTS)
    blue, orange = (31, 119, 180), (255, 127, 14)  # matplotlib's C0 and C1: run 1 and run 2, in every plot
    for name, path in written["curves"].items():
        assert path == tmp_path / "cmp" / "curves" / f"{name}.png"
        assert _colour_pixels(path, orange) > 50, name
        assert (_colour_pixels(path, blue) > 50) == (name != "noise"), name  # only the noisy run has noise
    result = runner.invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0 and f"{len(TRAINING_INSTRUMENTS)} curves in" in result.stderr


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
    assert config_differences(comparison.runs) == ["head", "noise"]
    for run in comparison.runs:
        metrics = read_metrics(run.path)
        assert metrics.val_steps == [2, 4]  # validated at each epoch's end
        assert metrics.epoch_steps == [2, 4] and all(0 <= a <= 1 for a in metrics.epoch_train_accuracy)
        assert ("noise" in metrics.instruments) == (run.name == "noisy-softmax")
        best = max(metrics.val_accuracy)
        assert run.best_validation[0] == best
        assert summarize_run(run.path).steps == 4


def test_head_defaults_are_filled_in_so_equal_settings_compare_equal(tmp_path):
    a = make_run(tmp_path, "arc-default", config='head = "arcface"\n', metrics=[{"kind": "train", "step": 1, "loss": 1.0}])
    b = make_run(tmp_path, "arc-written", config='head = "arcface"\nmargin = 0.5\ncosine_scale = 64.0\n',
                 metrics=[{"kind": "train", "step": 1, "loss": 1.0}])
    c = make_run(tmp_path, "arc-other", config='head = "arcface"\nmargin = 0.3\nnoise = "sample"\n',
                 metrics=[{"kind": "train", "step": 1, "loss": 1.0}])
    assert compare_runs([a, b]).differing == []
    comparison = compare_runs([a, b, c])
    assert comparison.differing == ["margin", "noise"]
    rows = {label: cells for label, cells, _ in comparison.rows}
    assert rows["margin"] == ["0.5", "0.5", "0.3"] and rows["cosine_scale"] == ["64", "64", "64"]
    assert rows["noise"] == ["off", "off", "sample"]
