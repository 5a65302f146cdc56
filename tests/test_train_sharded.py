"""`train(..., classifier="sharded")` in two real gloo processes: equal to one process with the full
head, per-rank checkpoint parts that resume exactly, and a clear refusal on another world size."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

from facever.core.errors import FaceverError
from facever.training.checkpoint import shard_path
from facever.training.config import TrainConfig
from facever.training.loop import train

from tests.helpers.training import identity_folder, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

WORLD = 2


def _config(data: Path, **kw) -> TrainConfig:
    # 5 identities: shards of 2 and 3 classes. 20 images, 2 x 4 per step: 2 steps per epoch.
    return tiny_config(data, **{"classifier": "sharded", **kw})


def _worker(rank: int, ports: list[int], data: str, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    root, config = Path(root), _config(Path(data), sample_rate=0.5)
    ports = iter(ports)

    def run(*args, **kwargs):
        # Each train() joins and leaves its own process group: a fresh rendezvous port for each.
        os.environ["MASTER_PORT"] = str(next(ports))
        return train(*args, log_every=1, **kwargs)

    run(_config(Path(data)), root / "full-softmax")
    run(config, root / "sampled")
    calls = []
    stopped = run(config, root / "sampled-resumed", stop_requested=lambda: calls.append(1) or len(calls) >= 3)
    assert stopped.interrupted and stopped.steps == 3
    resumed = run(config, root / "sampled-resumed", resume=True)
    assert resumed.steps == 4 and not resumed.interrupted


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.slow  # ~1 minute: four runs in two processes
@pytest.mark.timeout(400)
def test_sharded_training_equals_the_full_head_and_resumes_exactly(tmp_path):
    data = identity_folder(tmp_path / "data", people=5)
    torch.multiprocessing.spawn(_worker, args=([_free_port() for _ in range(4)], str(data), str(tmp_path)), nprocs=WORLD, join=True)

    # r = 1.0 sharded over 2 processes == the full head in one process with the 8-image combined batch
    # (batch noise: every rank draws the same xi as the one process).
    single = train(_config(data, batch_size=8, classifier="full"), tmp_path / "single")
    a, b = _weights(tmp_path / "full-softmax" / "model.pt"), _weights(single.model_path)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)
    full_head = torch.load(single.out_dir / "checkpoint.pt", weights_only=True)["head"]["weight"]
    ck = tmp_path / "full-softmax" / "checkpoint.pt"
    rows = [torch.load(shard_path(ck, step=4, rank=r, world_size=WORLD), weights_only=True)["head"]["weight"]
            for r in range(WORLD)]
    assert [len(r) for r in rows] == [2, 3]
    torch.testing.assert_close(torch.cat(rows), full_head, atol=1e-5, rtol=1e-4)

    # Interrupted at step 3 and resumed == uninterrupted, bit for bit, with classes sampled (rate 0.5).
    done, resumed = tmp_path / "sampled", tmp_path / "sampled-resumed"
    a, b = _weights(done / "model.pt"), _weights(resumed / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for r in range(WORLD):
        x = torch.load(shard_path(done / "checkpoint.pt", step=4, rank=r, world_size=WORLD), weights_only=True)
        y = torch.load(shard_path(resumed / "checkpoint.pt", step=4, rank=r, world_size=WORLD), weights_only=True)
        assert torch.equal(x["head"]["weight"], y["head"]["weight"])
        assert torch.equal(x["head"]["_extra_state"]["generator"], y["head"]["_extra_state"]["generator"])
    # Sampling changed the run (else the resume check above would not be testing the sampler).
    assert any(not torch.equal(a[k], v) for k, v in _weights(tmp_path / "full-softmax" / "model.pt").items())
    # Only the last checkpoint's parts are kept.
    assert sorted(p.name for p in (resumed / "checkpoint_shards").iterdir()) == [
        "step000000004-rank0-of2.pt", "step000000004-rank1-of2.pt"]

    # Another world size: a clear error before anything is loaded into the wrong shard.
    with pytest.raises(FaceverError, match="used 2 process.*now 1.*part of the classifier"):
        train(_config(data, sample_rate=0.5), resumed, resume=True)


def test_cli_trains_with_the_sharded_classifier_in_one_process(tmp_path):
    import json

    from typer.testing import CliRunner

    from facever.cli import app
    from tests.helpers.training import TINY_CLI

    data = identity_folder(tmp_path / "data", people=5)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(data), "--out", str(out), *TINY_CLI, "--epochs", "1", "-b", "8",
                                      "--device", "cpu", "--workers", "0", "--classifier", "sharded",
                                      "--sample-rate", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["classifier"], config["sample_rate"]) == ("sharded", 0.5)
    part = torch.load(shard_path(out / "checkpoint.pt", step=2, rank=0, world_size=1), weights_only=True)
    assert part["head"]["weight"].shape == (5, 8)
    refused = CliRunner().invoke(app, ["train", str(data), "--out", str(tmp_path / "r2"), "--sample-rate", "0.5"])
    assert refused.exit_code == 2 and "--classifier sharded" in refused.output
