"""Run folders: a refused `train` or `demo` leaves nothing behind (no folder, no config.toml, no
training.log), a new run never replaces a finished model or writes among the user's files, and sizes
typed by mistake are refused before anything is allocated."""

from __future__ import annotations

import pytest

from tests.bad_input.conftest import refused, write_images
from tests.helpers.training import TINY_CLI

TRAIN = [*TINY_CLI, "--device", "cpu", "--workers", "0", "-b", "4", "--epochs", "1"]


@pytest.fixture
def faces(tmp_path):
    write_images(tmp_path / "faces", names=["Ann", "Bob", "Cid"], numbers=(1, 2, 3), size=(20, 16))
    return tmp_path


# -- a failed train writes nothing: every check runs before the run folder gets anything -----------------

FAILS = {
    "DATA typo": (["{w}/facez"], r"facez: no such file or folder"),
    "unknown arch": (["{w}/faces", "--arch", "nosuch"], r"unknown model 'nosuch'"),
    "width 0": (["{w}/faces", "--width", "0"], r"width must be a positive integer, got 0"),
    "min-images too high": (["{w}/faces", "--min-images", "100"], r"0 training identities left"),
    "embedding-dim 1e8": (["{w}/faces", "--embedding-dim", "100000000"],
                          r"billion parameters per process, more than the 1 billion facever builds; choose a "
                          r"smaller --width, --embedding-dim or --input-size"),
    "val-pairs missing": (["{w}/faces", "--val-pairs", "{w}/nope.txt", "--val-images", "{w}/faces"], r"nope\.txt"),
}


@pytest.mark.parametrize("case", list(FAILS))
@pytest.mark.parametrize("out", ["new", "empty"])
def test_failed_train_leaves_no_run_folder(faces, case, out):
    if out == "empty":
        (faces / "run").mkdir()
    args, match = FAILS[case]
    # The tiny sizes come first: the case's own option overrides them.
    refused(["train", *TRAIN, *[a.format(w=faces) for a in args], "--out", faces / "run"], match, faces)


CONFIG_FAILS = {
    "unknown arch": ('arch = "nosuch"\n', r"cfg\.toml: unknown model 'nosuch'"),
    "width 100000": ("width = 100000\n", r"cfg\.toml \(width\): sphere20 .* billion parameters per process.*--width"),
    "input_size 100000": ("input_size = [100000, 100000]\n", r"cfg\.toml: `input_size` must be HxW with 8 <= H, W <= 4096"),
    "epochs 0": ("epochs = 0\n", r"cfg\.toml: `epochs` must be 1 or more"),
}


@pytest.mark.parametrize("case", list(CONFIG_FAILS))
def test_bad_config_value_leaves_no_run_folder(faces, case):
    text, match = CONFIG_FAILS[case]
    (faces / "cfg.toml").write_text(text)
    # The file alone gives the refused value (no option typed over it), so the error names the file.
    args = ["--device", "cpu", "--workers", "0", "--input-size", "20x16", "--embedding-dim", "8"]
    if "input_size" in text:
        args = args[:4]
    refused(["train", faces / "faces", "--config", faces / "cfg.toml", *args, "--out", faces / "run"], match, faces)


# -- a new run goes only where it replaces nothing of value -------------------------------------------------


def test_train_never_replaces_a_finished_model(faces):
    """A finished run whose checkpoint.pt was deleted to save space: rerunning must not retrain over model.pt."""
    run = faces / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"the only copy of a week of training")
    (run / "config.toml").write_text('arch = "sphere20"\n')
    refused(["train", faces / "faces", "--out", run, *TRAIN], r"run holds a finished model \(model\.pt\) and no "
            r"checkpoint\.pt to continue its run; a new run would replace it: choose another --out", faces)


def test_train_never_writes_among_the_users_files(faces):
    (faces / "photos").mkdir()
    (faces / "photos" / "holiday.jpg").write_bytes(b"jpeg")
    refused(["train", faces / "faces", "--out", faces / "photos", *TRAIN],
            r"photos: holds files a training run does not write \(e\.g\. holiday\.jpg\)", faces)


def test_train_starts_over_among_the_leftovers_of_a_run_that_never_checkpointed(faces):
    """config.toml, training.log and metrics.jsonl of a run stopped before its first checkpoint are its own:
    a new run starts there, with a fresh metrics.jsonl."""
    import json

    from tests.bad_input.conftest import accepted

    run = faces / "run"
    run.mkdir()
    (run / "config.toml").write_text('arch = "sphere20"\n')
    (run / "training.log").write_text("2026-01-01T00:00:00+00:00 earlier\n")
    (run / "metrics.jsonl").write_text('{"kind": "train", "step": 990, "loss": 9.9}\n')
    accepted(["train", faces / "faces", "--out", run, *TRAIN, "--log-every", "1"])
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and 990 not in steps
    assert (run / "training.log").read_text().startswith("2026-01-01T00:00:00+00:00 earlier\n")  # appended


# -- demo: the same rule ----------------------------------------------------------------------------------


def test_failed_demo_leaves_nothing(tmp_path):
    write_images(tmp_path / "few", names=["Ann", "Bob"], numbers=(1, 2))
    (tmp_path / "few" / "Cid").mkdir()
    (tmp_path / "few" / "Cid" / "Cid_0001.jpg").write_bytes((tmp_path / "few" / "Ann" / "Ann_0001.jpg").read_bytes())
    refused(["demo", "--data", tmp_path / "nosuch", "--out", tmp_path / "d"], r"nosuch: not a folder", tmp_path)
    refused(["demo", "--data", tmp_path / "few", "--out", tmp_path / "d"], r"few: 2 people have 2 or more images",
            tmp_path)
    (tmp_path / "d").mkdir()
    refused(["demo", "--data", tmp_path / "few", "--out", tmp_path / "d"], r"few: 2 people have 2 or more images",
            tmp_path)
