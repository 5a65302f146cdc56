"""Training config files (TOML) and run folders read by `compare`: one-line errors, BOM accepted."""

from __future__ import annotations

import os

import pytest

from tests.bad_input.conftest import refused


@pytest.fixture
def data(tmp_path):
    from tests.bad_input.conftest import write_images

    write_images(tmp_path / "faces", names=["Ann", "Bob", "Cid"], numbers=(1, 2, 3))
    return tmp_path


CASES = {
    "not TOML": (b"arch = \n", r"cfg\.toml: not valid TOML"),
    "binary": (b"\x00\xff\xfe\x00", r"cfg\.toml: not (a text file|valid TOML)"),
    "unknown key": (b'archh = "sphere20"\n', r"archh"),
    "wrong type": (b'epochs = "many"\n', r"epochs"),
    "negative lr": (b"lr = -1.0\n", r"lr"),
    # A value of the right type but out of range: the message names the file it came from.
    "negative cosine_scale": (b"cosine_scale = -3.0\n", r"cfg\.toml: `cosine_scale` must be 0 \(off\) or a positive number"),
    "negative alpha2": (b"alpha2 = -1\n", r"cfg\.toml: `alpha2` must be 0 or more"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_refused(data, case):
    content, match = CASES[case]
    (data / "cfg.toml").write_bytes(content)
    refused(["train", data / "faces", "--config", data / "cfg.toml", "--out", data / "run", "--device", "cpu"], match, data)


def test_config_with_bom_is_read():
    from facever.training.config_files import read_config_file

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cfg.toml"
        path.write_bytes("\ufeffepochs = 3\n".encode("utf-8"))
        assert read_config_file(path)["epochs"] == 3


@pytest.mark.timeout(20)
def test_config_fifo(data):
    os.mkfifo(data / "cfg.toml")
    refused(["train", data / "faces", "--config", data / "cfg.toml", "--out", data / "run"], r"cfg\.toml: not a regular file",
            data)


def _run(folder, metrics: bytes):
    folder.mkdir()
    (folder / "config.toml").write_text('arch = "sphere20"\n')
    (folder / "metrics.jsonl").write_bytes(metrics)


@pytest.mark.parametrize("metrics, match", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff", r"metrics\.jsonl: not a text file"),
    (b'{"kind": "train", "step": "x", "loss": 1}\n', r"metrics\.jsonl:1: not a metrics record"),
    (b"[1, 2]\n", r"metrics\.jsonl:1: not a metrics record"),
])
def test_compare_bad_metrics(tmp_path, metrics, match):
    _run(tmp_path / "a", metrics)
    _run(tmp_path / "b", b"")
    refused(["compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "cmp"], match, tmp_path)


def test_compare_not_a_run(tmp_path):
    (tmp_path / "a").mkdir()
    refused(["compare", tmp_path / "a"], r"a: not a training run", tmp_path)


# -- training's validation inputs: the same rule as eval-lfw (every pair scored, or a clear error) ---------

TRAIN = ["--arch", "sphere20", "--input-size", "20x16", "--width", "4", "--embedding-dim", "8", "--epochs", "1",
         "-b", "4", "--device", "cpu", "--workers", "0"]


def test_train_validation_image_missing(data):
    (data / "val.txt").write_text("2\t1\nAnn 1 2\nAnn 1 Bob 1\nBob 1 3\nBob 1 Cid 9\n")
    refused(["train", data / "faces", "--out", data / "run", *TRAIN, "--val-pairs", data / "val.txt",
             "--val-images", data / "faces"], r"1 of 5 validation images cannot be read .*Cid_0009", data)


def test_train_val_bin_with_too_few_pairs(data):
    import pickle

    jpeg = (data / "faces" / "Ann" / "Ann_0001.jpg").read_bytes()
    (data / "val.bin").write_bytes(pickle.dumps(([jpeg] * 8, [True, False, True, False])))
    refused(["train", data / "faces", "--out", data / "run", *TRAIN, "--val-bin", data / "val.bin"],
            r"val\.bin: 4 pairs: the 10-fold protocol needs at least 10", data)


def test_compare_shows_bracketed_run_names_as_is(tmp_path):
    from tests.bad_input.conftest import accepted

    _run(tmp_path / "[old]", b'{"kind": "train", "step": 1, "loss": 2.5}\n')
    _run(tmp_path / "new", b'{"kind": "train", "step": 1, "loss": 2.0}\n')
    result = accepted(["compare", tmp_path / "[old]", tmp_path / "new"])
    assert "[old]" in result.stdout
