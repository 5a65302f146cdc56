"""`torchrun --nproc_per_node=2 -m facever train ...` on CPU with gloo: two real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from facever.cli import app

from tests.test_train import TINY, TINY_CLI, _dataset, _one_thread  # noqa: E402,F401  (autouse fixture)

from facever.training.config import TrainConfig  # noqa: E402
from facever.training.loop import train  # noqa: E402


def _torchrun(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "facever",
           "train", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)


@pytest.mark.timeout(400)
def test_two_processes_with_gloo_match_one_process_with_the_combined_batch(tmp_path):
    data = _dataset(tmp_path / "data")
    out = tmp_path / "ddp"
    proc = _torchrun([str(data), "--out", str(out), *TINY_CLI, "--epochs", "2", "-b", "4", "--lr", "0.05",
                      "--device", "cpu", "--workers", "0", "--log-every", "1"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["world_size"] == 2 and ck["step"] == 4  # 16 images, 2 processes x 4 per step
    steps = [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["kind"] == "train"]
    assert steps == [1, 2, 3, 4]  # rank 0 alone writes

    # sphere20 has no batch norm, and both ranks draw the same per-batch noise, so 2 x 4 images per
    # step (DistributedSampler shares out one permutation) equals 8 images per step in one process.
    single = train(TrainConfig(data=str(data), **TINY, epochs=2, batch_size=8, lr=0.05, workers=0, device="cpu"),
                   tmp_path / "single")
    a = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(single.model_path, weights_only=True)["state_dict"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    assert any(not torch.equal(a[k], ck_v) for k, ck_v in _initial_state(tmp_path).items())

    # Resuming that run in one process would change the batches: refused.
    refused = CliRunner().invoke(app, ["train", str(data), "--out", str(out), "--resume", "--device", "cpu"])
    assert refused.exit_code == 2 and "used 2 process(es), now 1" in refused.output


def _initial_state(tmp_path: Path) -> dict[str, torch.Tensor]:
    from facever.models import create_model

    torch.manual_seed(0)
    return create_model(TINY["arch"], **{k: v for k, v in TINY.items() if k != "arch"}).state_dict()
