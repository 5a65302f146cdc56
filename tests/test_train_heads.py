"""Training with every head through the loop: the head's options reach the run, a margin-head run
resumes exactly (weights, SphereFace's schedule, metrics lines), and the saturation instruments in
metrics.jsonl are the accumulation of the head's per-step values."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from facever.cli import app
from facever.core.settings import TRAINING_INSTRUMENTS
from facever.training.config import TrainConfig
from facever.training.loop import train
from tests.helpers.training import TINY_CLI, identity_folder, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def data(tmp_path) -> Path:
    return identity_folder(tmp_path / "data")


def _config(data: Path, **kw) -> TrainConfig:
    return tiny_config(data, **kw)


def _lines(run: Path, kind: str) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in ("time", "images_per_second")} for line in lines
            if line["kind"] == kind]


def _bundle_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.parametrize("head,options", [
    ("sphereface", dict(sphereface_lambda=(50.0, 1.0, 1.0, 2.0))),
    ("arcface", dict(cosine_scale=8.0, margin=0.3, noise="sample")),
    ("cosface", dict(cosine_scale=8.0, noise="batch", alpha2=0.5)),
])
def test_margin_head_resume_gives_exactly_the_uninterrupted_run(data, tmp_path, head, options):
    cfg = _config(data, head=head, **options)
    full = train(cfg, tmp_path / "full", log_every=3)
    seen = {"step": 0}
    part = train(cfg, tmp_path / "split", log_every=3, progress=lambda info: seen.__setitem__("step", info.step),
                 stop_requested=lambda: seen["step"] >= 5)  # mid-epoch 2, mid-window
    assert part.interrupted and part.steps == 5
    torch.manual_seed(1234)
    resumed = train(cfg, tmp_path / "split", resume=True, log_every=3)
    assert resumed.steps == full.steps == 8
    a, b = _bundle_state(tmp_path / "full" / "model.pt"), _bundle_state(tmp_path / "split" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ca = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    cb = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert torch.equal(ca["head"]["weight"], cb["head"]["weight"])
    if head == "sphereface":
        assert ca["head"]["transform.margin._extra_state"] == cb["head"]["transform.margin._extra_state"] == {"iteration": 8}
    # The metrics lines too: the window and the epoch's sums travel in the checkpoint.
    assert _lines(tmp_path / "full", "train") == _lines(tmp_path / "split", "train")
    assert _lines(tmp_path / "full", "epoch") == _lines(tmp_path / "split", "epoch")
    # Guard: the head's options changed the training (another margin, other weights).
    other = train(cfg.replace(**({"margin": 2} if head == "sphereface" else {"margin": 0.1})), tmp_path / "other")
    assert any(not torch.equal(a[k], v) for k, v in _bundle_state(other.model_path).items())


def test_instrument_lines_are_the_means_of_their_steps(data, tmp_path):
    cfg = _config(data, head="noisy-softmax", cosine_scale=8.0, alpha2=0.5)
    train(cfg, tmp_path / "one", log_every=1)
    train(cfg, tmp_path / "two", log_every=2)
    per_step, per_two = _lines(tmp_path / "one", "train"), _lines(tmp_path / "two", "train")
    assert len(per_step) == 8 and len(per_two) == 4
    for line in per_step:
        assert set(TRAINING_INSTRUMENTS) <= set(line)
        assert 0 < line["target_prob"] < 1 and line["noise"] > 0 and 0 < line["target_angle"] < 180
    # Equal batches: a line of two steps holds the mean of the two one-step lines, for every instrument.
    for i, line in enumerate(per_two):
        for name in ("loss", *TRAINING_INSTRUMENTS):
            assert line[name] == pytest.approx((per_step[2 * i][name] + per_step[2 * i + 1][name]) / 2, abs=1e-12), name
    # The epoch's training accuracy is the mean over its four steps.
    epochs = _lines(tmp_path / "one", "epoch")
    for e, line in enumerate(epochs):
        steps = per_step[4 * e: 4 * e + 4]
        assert line["train_accuracy"] == pytest.approx(np.mean([s["train_accuracy"] for s in steps]), abs=1e-12)
    # A head without noise logs no noise.
    train(_config(data, head="arcface", cosine_scale=8.0, epochs=1), tmp_path / "arc", log_every=2)
    assert all("noise" not in line and "target_grad" in line for line in _lines(tmp_path / "arc", "train"))


def test_cli_head_options_reach_the_run_and_its_config(data, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["train", str(data), "--out", str(out), *TINY_CLI, "--epochs", "1", "-b", "8",
                                      "--workers", "0", "--device", "cpu", "--head", "sphereface", "--margin", "3",
                                      "--sphereface-lambda", "100,0.5,1,5", "--noise", "batch", "--alpha2", "0.2"])
    assert result.exit_code == 0, result.output
    text = (out / "config.toml").read_text()
    config = tomllib.loads(text)
    assert config["head"] == "sphereface" and config["margin"] == 3.0 and config["noise"] == "batch"
    assert config["sphereface_lambda"] == [100.0, 0.5, 1.0, 5.0]
    assert "# cosine_scale = (not set: the head's default, 0.0)" in text
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["head"]["transform.margin._extra_state"] == {"iteration": 2}
    # Defaults written as such: an arcface run's unset margin and scale are the head's.
    result = CliRunner().invoke(app, ["train", str(data), "--out", str(tmp_path / "arc"), *TINY_CLI, "--epochs", "1",
                                      "-b", "8", "--workers", "0", "--device", "cpu", "--head", "arcface"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "arc" / "config.toml").read_text()
    assert "# margin = (not set: the head's default, 0.5)" in text and "# noise = (not set: the head's default, \"off\")" in text
    assert "# cosine_scale = (not set: the head's default, 64.0)" in text


@pytest.mark.parametrize("head,options", [("noisy-softmax", {}), ("sphereface", {}), ("arcface", {"noise": "sample"})])
def test_a_training_step_reads_nothing_back_from_the_device(monkeypatch, head, options):
    """The instruments are summed on the device: a step (forward, loss, instruments, backward, SGD) and
    the window's accumulation never read a tensor back (no `.item()`, `.tolist()`, truth value,
    `nonzero` ...), which on a GPU would stall the host every step. (Reads inside torch's own kernels
    are not seen here; a GPU run with torch.cuda.set_sync_debug_mode would see those.)"""
    from facever.training.heads import create_head
    from facever.training.loop import LossWindow, TrainNet, train_step

    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8))
    net = TrainNet(backbone, create_head(head, 8, 5, **options), None).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    window = LossWindow(torch.device("cpu"))
    x, labels = torch.randn(6, 3, 2, 2), torch.tensor([0, 1, 2, 3, 4, 0])

    def refuse(*args, **kwargs):
        raise AssertionError("a training step read a tensor back to the host")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "nonzero", "numpy", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    for _ in range(3):
        loss, instruments = train_step(net, x, labels, opt, scaler)
        window.add(loss, instruments)
    monkeypatch.undo()
    assert window.steps == 3 and window.sums[1].item() == 18  # three steps of six samples counted
