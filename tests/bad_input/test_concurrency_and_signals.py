"""Real processes: a second writer on a folder is refused naming the first; SIGTERM stops training with an
intact checkpoint; SIGKILL leaves no lock behind and a killed write's leftovers are cleaned by the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.bad_input.conftest import NAMES, refused, write_images

REPO = Path(__file__).resolve().parents[2]
TINY_TRAIN = ["--arch", "sphere20", "--input-size", "20x16", "--width", "4", "--embedding-dim", "8", "-b", "4",
              "--device", "cpu", "--workers", "0", "--epochs", "100000", "--lr", "0.01", "--log-every", "1"]


def _env():
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("FACEVER_MIRROR", None)
    return env


def _facever(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "facever", *map(str, args)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(predicate, what: str, proc=None, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _holds_lock(folder: Path, pid: int) -> bool:
    try:
        return (folder / ".facever.lock").read_text().startswith(f"{pid}\n")
    except OSError:
        return False


@pytest.fixture(scope="module")
def running_train(tmp_path_factory):
    """A real `facever train` writing RUN, running for the whole module (stopped with SIGTERM by the last test)."""
    root = tmp_path_factory.mktemp("concurrency")
    write_images(root / "faces", names=NAMES[:4], numbers=(1, 2, 3), size=(20, 16))
    run = root / "run"
    proc = _facever("train", root / "faces", "--out", run, *TINY_TRAIN)
    _wait_for(lambda: _holds_lock(run, proc.pid) and (run / "metrics.jsonl").exists(), "training to start", proc)
    yield root, run, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture
def inputs(tmp_path):
    from facever.core.embeddings_file import save_embeddings
    from tests.bad_input.conftest import lfw_items, lfw_lines

    (tmp_path / "pairs.txt").write_text("10\t1\n" + "\n".join(lfw_lines()) + "\n")
    items = lfw_items()
    save_embeddings(tmp_path / "emb.npz", items, np.random.default_rng(0).normal(size=(len(items), 8)).astype(np.float32))
    (tmp_path / "cfgrun").mkdir()
    (tmp_path / "cfgrun" / "config.toml").write_text('arch = "sphere20"\n')
    write_images(tmp_path / "imgs", names=["Ann"], numbers=(1,))
    return tmp_path


SECOND_WRITERS = {
    "train": ["train", "{faces}", *TINY_TRAIN],
    "eval-lfw": ["eval-lfw", "--pairs", "{w}/pairs.txt", "-e", "{w}/emb.npz"],
    "ensemble": ["ensemble", "{w}/emb.npz", "{w}/emb.npz", "-p", "lfw", "--pairs", "{w}/pairs.txt", "--names", "a,b"],
    "compare": ["compare", "{w}/cfgrun"],
    "eval-fglfw": ["eval-fglfw", "--pairs", "{w}/pairs.txt", "-e", "{w}/emb.npz"],
    "eval-ytf": ["eval-ytf", "--splits", "{w}/pairs.txt", "-e", "{w}/emb.npz"],
    "eval-bin": ["eval-bin", "{w}/x.bin", "-e", "{w}/emb.npz"],
    "align": ["align", "{w}/imgs", "{run}", "--device", "cpu"],
    "demo": ["demo", "--quick", "--device", "cpu"],
    "reproduce": ["reproduce", "--casia", "{w}/imgs", "--lfw", "{w}/imgs", "--ytf", "{w}/imgs"],
}


@pytest.mark.parametrize("command", list(SECOND_WRITERS))
def test_second_writer_refused_naming_the_first(running_train, inputs, command):
    root, run, proc = running_train
    args = [a.format(w=inputs, run=run, faces=root / "faces") for a in SECOND_WRITERS[command]]
    if command != "align":
        args += ["--out", str(run)]
    refused(args, rf"run: in use by process {proc.pid} \(.*train", inputs)


def test_two_real_trains_on_one_folder(running_train):
    root, run, proc = running_train
    second = _facever("train", root / "faces", "--out", run, *TINY_TRAIN)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and f"in use by process {proc.pid}" in lines[-1] and "train" in lines[-1]
    # metrics.jsonl holds one run's records only: steps strictly increasing, every line JSON.
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == sorted(set(steps))


def test_sigterm_stops_training_with_a_checkpoint_and_frees_the_folder(running_train):
    root, run, proc = running_train
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    from facever.core.locks import folder_lock
    from facever.training.checkpoint import load_checkpoint

    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["format"] == "facever-checkpoint"
    assert ck["log_every"] == 1  # --resume keeps the run's --log-every
    assert not list(run.glob(".*.partial-*")) and not (run / ".facever.lock").exists()
    with folder_lock(run, kind=None):  # free again
        pass


def test_sigkill_leaves_no_lock_and_leftovers_are_cleaned(tmp_path):
    write_images(tmp_path / "faces", names=NAMES[:4], numbers=(1, 2, 3), size=(20, 16))
    run = tmp_path / "run"
    proc = _facever("train", tmp_path / "faces", "--out", run, *TINY_TRAIN)
    _wait_for(lambda: _holds_lock(run, proc.pid), "training to start", proc)
    (run / ".checkpoint.partial-killed.pt").write_bytes(b"half a checkpoint")  # as a write killed mid-way leaves it
    proc.kill()
    proc.wait()
    assert (run / ".facever.lock").exists()  # the name stays after kill -9, the lock does not
    from facever.core.locks import folder_lock

    with folder_lock(run, kind=None):
        assert not (run / ".checkpoint.partial-killed.pt").exists()


@pytest.mark.timeout(60)
def test_file_lock_for_one_output_file(tmp_path, tiny_model):
    """Two `embed --out same.npz`: the second is refused while the first holds the file."""
    code = ("import sys, time\nfrom facever.core.locks import file_lock\n"
            "with file_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "same.npz")], env=_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        write_images(tmp_path / "imgs", names=["Ann"], numbers=(1,))
        refused(["embed", tiny_model, tmp_path / "imgs", "--out", tmp_path / "same.npz"],
                rf"same\.npz: in use by process {holder.pid}", tmp_path)
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.timeout(60)
def test_two_fetches_of_one_file(tmp_path):
    """A second `data fetch` of the same file into the same DEST would append to the first one's .part."""
    code = ("import sys, time\nfrom facever.core.locks import file_lock\n"
            "with file_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "data" / "pairs.txt")], env=_env(),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        (tmp_path / "src.txt").write_text("pairs")
        refused(["data", "fetch", "lfw-pairs", "--dest", tmp_path / "data", "--url", f"file://{tmp_path}/src.txt"],
                rf"pairs\.txt: in use by process {holder.pid}", tmp_path)
    finally:
        holder.kill()
        holder.wait()
