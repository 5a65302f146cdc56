"""`facever align` from the command line: errors before any work, a real run with its JSON summary and
report, and resuming."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from facever.cli import app
from facever.data_prep.align_dataset import REPORT_NAME, read_report
from facever.core.images import read_image_rgb

runner = CliRunner()


def test_help_teaches_the_options():
    result = runner.invoke(app, ["align", "--help"])
    assert result.exit_code == 0
    for option in ("--size", "--select", "--all", "--min-face", "--device", "--batch-size", "--workers",
                   "--format", "--on-miss", "--overwrite"):
        assert option in result.output
    assert "facever align" in result.output  # examples


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/missing", "{tmp}/out"], "missing: no such file or folder"),
        (["{tmp}/src", "{tmp}/blocker"], "blocker: exists and is not a folder"),
        (["{tmp}/src", "{tmp}/blocker/sub"], "cannot write there"),
        (["{tmp}/src", "{tmp}/out", "--size", "big"], "--size"),
        (["{tmp}/src", "{tmp}/out", "--min-face", "4"], "--min-face 4"),
        (["{tmp}/src", "{tmp}/out", "--batch-size", "0"], "--batch-size 0"),
        (["{tmp}/src", "{tmp}/out", "--device", "tpu"], "--device tpu"),
    ],
)
def test_bad_arguments_fail_clearly_before_any_work(tmp_path, args, message):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.jpg").write_bytes(b"not read before the checks")
    (tmp_path / "blocker").write_text("a file, not a folder")
    result = runner.invoke(app, ["align", *[a.format(tmp=tmp_path) for a in args]])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in result.output
    assert len(result.output.strip().splitlines()) == 1  # one line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cuda_request_without_a_gpu_is_a_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    (tmp_path / "src").mkdir()
    result = runner.invoke(app, ["align", str(tmp_path / "src"), str(tmp_path / "out"), "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA device" in result.output


def test_align_command_end_to_end(tmp_path, faces_dir):
    import cv2
    from PIL import Image

    src, dst = tmp_path / "lfw", tmp_path / "aligned"
    for name in ("Anthony_Hopkins_0001.jpg", "Anthony_Hopkins_0002.jpg"):
        rgb = read_image_rgb(faces_dir / "lfw_sample" / "Anthony_Hopkins" / name)
        (src / "Anthony_Hopkins").mkdir(parents=True, exist_ok=True)
        Image.fromarray(cv2.resize(rgb, (160, 160), interpolation=cv2.INTER_AREA)).save(src / "Anthony_Hopkins" / name)
    (src / "Nobody").mkdir()
    Image.fromarray(np.full((160, 160, 3), 128, np.uint8)).save(src / "Nobody" / "Nobody_0001.jpg")
    args = ["align", str(src), str(dst), "--select", "center", "--on-miss", "center-crop", "--size", "112x112",
            "--device", "cpu", "--workers", "0", "--min-face", "40", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["aligned"], summary["center_cropped"], summary["skipped"], summary["failed"]) == (2, 1, 0, 0)
    for name in ("Anthony_Hopkins/Anthony_Hopkins_0001.jpg", "Anthony_Hopkins/Anthony_Hopkins_0002.jpg",
                 "Nobody/Nobody_0001.jpg"):
        with Image.open(dst / name) as crop:
            assert crop.size == (112, 112) and crop.mode == "RGB"
    rows = read_report(dst / REPORT_NAME)
    assert [(r["path"], r["status"], r["reason"]) for r in rows] == [
        ("Nobody/Nobody_0001.jpg", "center-cropped", "no face found")
    ]
    # Rerun: everything is done already; the report keeps its row.
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["processed"] == 0 and summary["already_done"] == 3
    assert len(read_report(dst / REPORT_NAME)) == 1
