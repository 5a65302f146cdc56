"""Training config files (TOML) and run folders read by `compare`: one-line errors, BOM accepted."""

from __future__ import annotations

import re

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
    "negative cosine_scale": (b"cosine_scale = -3.0\n", r"cfg\.toml: `cosine_scale` must be a finite number >= 0"),
    "negative alpha2": (b"alpha2 = -1\n", r"cfg\.toml: noisy-softmax: `alpha2` must be a finite number >= 0"),
    # The margin heads' options, out of range or on a head without them.
    "arcface margin": (b'head = "arcface"\nmargin = 2.0\n', r"cfg\.toml: arcface: `margin` must be in \[0, pi/2\) radians"),
    "sphereface margin": (b'head = "sphereface"\nmargin = 2.5\n', r"cfg\.toml: sphereface: `margin` must be an integer"),
    "cosface scale 0": (b'head = "cosface"\ncosine_scale = 0.0\n', r"cfg\.toml: cosface: `cosine_scale` must be > 0"),
    "margin on softmax": (b'head = "softmax"\nmargin = 0.3\n', r"cfg\.toml: head softmax has no `margin`"),
    "unknown head": (b'head = "l-softmax"\n', r"cfg\.toml: key 'head' must be one of noisy-softmax, softmax, sphereface"),
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


# The head's options typed on the command line: the error names the flag.
FLAG_CASES = {
    "arcface margin": (["--head", "arcface", "--margin", "1.6"], r"error: arcface: --margin must be in \[0, pi/2\) radians"),
    "cosface margin": (["--head", "cosface", "--margin", "-0.1"], r"error: cosface: --margin must be in \[0, 1\]"),
    "sphereface margin": (["--head", "sphereface", "--margin", "6"], r"error: sphereface: --margin must be an integer 1, 2, 3, 4"),
    "arcface scale": (["--head", "arcface", "--cosine-scale", "0"], r"error: arcface: --cosine-scale must be > 0"),
    "negative scale": (["--cosine-scale", "-1"], r"error: --cosine-scale must be a finite number >= 0"),
    "margin on noisy-softmax": (["--margin", "0.5"], r"error: head noisy-softmax has no --margin"),
    "noise off on noisy-softmax": (["--noise", "off"], r"error: noisy-softmax: --noise must be batch or sample"),
    "lambda on cosface": (["--head", "cosface", "--sphereface-lambda", "1,2,3,4"], r"error: head cosface has no --sphereface-lambda"),
    "lambda count": (["--head", "sphereface", "--sphereface-lambda", "1,2"], r"error: --sphereface-lambda must be 4 numbers"),
}


@pytest.mark.parametrize("case", list(FLAG_CASES))
def test_bad_head_option_refused(data, case):
    flags, match = FLAG_CASES[case]
    refused(["train", data / "faces", *flags, "--out", data / "run", "--device", "cpu"], match, data)


@pytest.mark.parametrize("flags,match", [
    (["--head", "l-softmax"], r"error: invalid value for '--head'.*'l-softmax' is not one of 'noisy-softmax', 'softmax', 'sphereface'"),
    (["--head", "sphereface", "--sphereface-lambda", "1,x,3,4"], r"expected 4 comma-separated numbers such as 1000,0.12,1,5"),
])
def test_unparsable_head_flags_are_usage_errors_and_write_nothing(data, flags, match):
    """Values the command line cannot parse at all stop in the parser (its usage message, exit 2)."""
    from tests.bad_input.conftest import runner, snapshot

    from facever.cli import app

    before = snapshot(data)
    result = runner.invoke(app, ["train", str(data / "faces"), *flags, "--out", str(data / "run"), "--device", "cpu"])
    assert result.exit_code == 2 and re.search(match, " ".join(result.stderr.split())), result.stderr
    assert snapshot(data) == before
