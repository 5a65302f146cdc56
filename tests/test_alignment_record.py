"""The alignment record (`facever.data_prep.alignment_record`): written by align, kept in model.pt, checked by embed."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from facever.cli import app
from facever.data_prep.alignment_record import (
    RECORD_NAME, alignment_difference, alignment_record, fitted_points, read_alignment_record, write_alignment_record,
)
from facever.data_prep.templates import template_for_size


def test_arcface_crops_fitted_to_112x96_are_the_112x96_template():
    # 8 columns cut each side: ArcFace's 112x112 template becomes SphereFace's 96x112 one exactly.
    np.testing.assert_allclose(fitted_points(template_for_size((112, 112)), (112, 112), (112, 96)),
                               template_for_size((112, 96)), atol=1e-9)
    same = alignment_difference(alignment_record((112, 112)), alignment_record((112, 96)), (112, 96))
    assert same is None


def test_another_template_is_a_difference_that_says_what_to_do():
    foreign = {**alignment_record((112, 96)), "template": "tight crop",
               "template_points": (template_for_size((112, 96)) * 1.25 - 12).tolist()}
    message = alignment_difference(foreign, alignment_record((112, 96)), (112, 96))
    assert message and "tight crop" in message and "112x96" in message
    assert alignment_difference(foreign, None, (112, 96)) is None  # the model's alignment is unknown: no claim


def test_record_round_trip_and_foreign_files_are_unknown(tmp_path):
    path = write_alignment_record(tmp_path, alignment_record((112, 96), min_face=20, thresholds=(0.6, 0.7, 0.7)))
    assert path.name == RECORD_NAME and not list(tmp_path.glob(".*"))  # written atomically, no leftovers
    record = read_alignment_record(tmp_path)
    assert record["size"] == [112, 96] and record["thresholds"] == [0.6, 0.7, 0.7]
    assert read_alignment_record(tmp_path / "sub") == record  # a subfolder of an aligned set
    (tmp_path / RECORD_NAME).write_text(json.dumps({"format": "other"}))
    assert read_alignment_record(tmp_path) is None


def _model_with_alignment(path, alignment):
    from facever.models import create_model
    from facever.models.bundle import save_model_bundle

    torch.manual_seed(0)
    kwargs = {"input_size": [28, 24], "width": 4, "embedding_dim": 8}
    net = create_model("sphere20", **kwargs).eval()
    crops = {"input_size": [28, 24], "crop_policy": "center-crop-to-aspect,resize", "source_size": [28, 24],
             "alignment": alignment}
    return save_model_bundle(path, net, arch="sphere20", arch_kwargs=kwargs, input_size=(28, 24),
                             mean=(0.5,) * 3, std=(0.5,) * 3, embedding_dim=8, extra={"crops": crops})


def test_embed_warns_when_the_images_were_aligned_otherwise(tmp_path):
    model = _model_with_alignment(tmp_path / "model.pt", alignment_record((28, 24)))
    images = tmp_path / "imgs"
    (images / "a").mkdir(parents=True)
    Image.fromarray(np.full((28, 24, 3), 100, np.uint8)).save(images / "a" / "1.png")
    args = ["embed", str(model), str(images), "--device", "cpu", "--workers", "0"]
    write_alignment_record(images, alignment_record((28, 24)))
    same = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "same.npz")])
    assert same.exit_code == 0, same.output
    assert "aligned" not in same.output
    foreign = {**alignment_record((28, 24)), "template": "tight crop",
               "template_points": (template_for_size((28, 24)) * 1.3 - 4).tolist()}
    write_alignment_record(images, foreign)
    other = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "other.npz")])
    assert other.exit_code == 0, other.output
    assert "warning:" in other.output and "tight crop" in other.output
