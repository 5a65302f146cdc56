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

from tests.helpers.training import TINY, TINY_CLI, identity_folder

pytestmark = pytest.mark.usefixtures("one_thread")

from facever.training.config import TrainConfig  # noqa: E402
from facever.training.loop import train  # noqa: E402


def _torchrun(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "facever",
           "train", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)


@pytest.mark.timeout(400)
def test_two_processes_with_gloo_match_one_process_with_the_combined_batch(tmp_path):
    data = identity_folder(tmp_path / "data")
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


# ------------------------------------------------------------------------------ DDP resume, in two processes


def _join_group(rank: int, init_file: Path, timeout_s: float = 600) -> None:
    """What torchrun sets up, done by hand so that the test can steer each rank from Python."""
    import datetime

    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=timeout_s))


def _resume_worker(rank: int, data: str, tmp: str) -> None:
    import torch.distributed as dist

    tmp_path = Path(tmp)
    _join_group(rank, tmp_path / "init")
    cfg = TrainConfig(data=data, **TINY, epochs=2, batch_size=2, lr=0.05, workers=0, device="cpu",
                      checkpoint_every=0, noise="sample")

    def draws_on_rank_1() -> bool:
        # Rank 1 draws from its own generator between steps, as rank k's GPU generator advances on
        # its own: if rank 1 resumed with rank 0's state, its noise (and so the weights) would differ.
        if rank == 1:
            torch.rand(1)
        return False

    seen = {"step": 0}

    def stop_at_3() -> bool:
        draws_on_rank_1()
        return rank == 0 and seen["step"] >= 3  # rank 0 alone asks; the ranks agree on it

    train(cfg, tmp_path / "full", stop_requested=draws_on_rank_1, log_every=1)
    part = train(cfg, tmp_path / "split", stop_requested=stop_at_3, log_every=1,
                 progress=lambda info: seen.__setitem__("step", info.step))
    assert part.interrupted and part.steps == 3
    ck = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    # The checkpoint holds each rank's own generators, taken after its last draw.
    assert len(ck["rng"]) == 2 and torch.equal(ck["rng"][rank]["torch"], torch.get_rng_state())
    dist.barrier()
    torch.manual_seed(100 + rank)  # another process state: the resume must not depend on it
    resumed = train(cfg.replace(workers=1), tmp_path / "split", resume=True, stop_requested=draws_on_rank_1,
                    log_every=1)
    assert resumed.steps == 8 and not resumed.interrupted
    dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_a_ddp_run_stopped_after_a_checkpoint_and_resumed_ends_with_the_uninterrupted_weights(tmp_path):
    import torch.multiprocessing as mp

    data = identity_folder(tmp_path / "data")
    mp.spawn(_resume_worker, args=(str(data), str(tmp_path)), nprocs=2, join=True)
    ck = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert ck["world_size"] == 2 and ck["step"] == 8 and len(ck["rng"]) == 2
    # The ranks' generators really differ (rank 1 drew more), so a shared state could not pass.
    assert not torch.equal(ck["rng"][0]["torch"], ck["rng"][1]["torch"])
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "split" / "model.pt", weights_only=True)["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    assert torch.equal(full["head"]["weight"], ck["head"]["weight"])


def _patient_worker(rank: int, tmp: str) -> None:
    import time

    from facever.training.distributed import init_distributed

    _join_group(rank, Path(tmp) / "init", timeout_s=2)  # the group's own collectives give up after 2 s
    ctx = init_distributed("cpu")
    if rank == 0:
        time.sleep(5)  # "decoding the training set" alone
    ctx.wait_for_main()
    ctx.close()
    import torch.distributed as dist

    dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_ranks_wait_for_the_main_decode_pass_longer_than_the_collective_timeout(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_patient_worker, args=(str(tmp_path),), nprocs=2, join=True)


@pytest.mark.timeout(300)
def test_ctrl_c_under_torchrun_writes_the_checkpoint_within_the_launchers_grace_period(tmp_path):
    """Ctrl-C reaches torchrun alone (its workers run in their own sessions); it forwards one SIGINT to
    each worker and SIGKILLs them 30 s later. The ranks agree to stop and rank 0 writes the checkpoint."""
    import re
    import signal
    import time

    data = identity_folder(tmp_path / "data")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "facever",
           "train", str(data), "--out", str(out), *TINY_CLI, "--epochs", "400", "-b", "2", "--device", "cpu",
           "--workers", "1", "--log-every", "1", "--checkpoint-every", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 200
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.2)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    took = time.perf_counter() - sent
    assert "forcefully exiting" not in err and took < 30, (took, err[-3000:])
    stopped = re.search(r"stopped at step (\d+) of 1600; checkpoint saved", err)
    assert stopped, err[-3000:]
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["step"] == int(stopped.group(1)) >= 3 and ck["world_size"] == 2 and len(ck["rng"]) == 2
