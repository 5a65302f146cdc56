"""Validation during training (`facever.training.validation`) is `facever eval-lfw` on the saved model.

Both go through the one crop policy and the one forward loop, so on the same model, pairs and images they
print the same accuracy (and the same AUC and EER, which move with any change of a score).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from facever.cli import app
from facever.core.crop import CROP_POLICY
from facever.data_prep.alignment_record import alignment_record, write_alignment_record
from facever.training.config import TrainConfig
from facever.training.loop import train

TRAIN_PEOPLE = [f"s{i}" for i in range(1, 7)]
VAL_PEOPLE = [f"s{i}" for i in range(31, 41)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _orl(faces_dir: Path) -> Path:
    orl = faces_dir / "orl"
    if not (orl / "s40").is_dir():
        pytest.skip(f"ORL faces not found at {orl}")
    return orl


def _lfw_style(orl: Path, root: Path) -> tuple[Path, Path]:
    """ORL's people s31..s40 as an LFW folder (sNN/sNN_000k.pgm) and a 10-fold pairs.txt over them."""
    images = root / "val_images"
    for person in VAL_PEOPLE:
        (images / person).mkdir(parents=True)
        for k in range(1, 11):
            (images / person / f"{person}_{k:04d}.pgm").symlink_to(orl / person / f"{k}.pgm")
    lines = []
    for fold in range(10):
        p, q = VAL_PEOPLE[fold], VAL_PEOPLE[(fold + 3) % 10]
        for j in range(3):
            lines.append(f"{p}\t{1 + j}\t{5 + j}")
            lines.append(f"{p}\t{1 + j}\t{q}\t{2 + j}")
    pairs = root / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    return pairs, images


def test_validation_prints_what_eval_lfw_prints_on_the_saved_model(faces_dir, tmp_path):
    orl = _orl(faces_dir)
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    for person in TRAIN_PEOPLE:
        (train_dir / person).symlink_to(orl / person, target_is_directory=True)
    pairs, images = _lfw_style(orl, tmp_path)
    write_alignment_record(train_dir, alignment_record((112, 92), select="largest"))
    # 112x92 ORL photos for a 28x24 model: the aspect ratio differs, so the crop policy matters.
    config = TrainConfig(data=str(train_dir), arch="sphere20", input_size=(28, 24), width=4, embedding_dim=16,
                         epochs=1, batch_size=8, lr=0.02, workers=0, device="cpu", checkpoint_every=0,
                         val_pairs=str(pairs), val_images=str(images), val_ext=".pgm")
    result = train(config, tmp_path / "run")
    validation = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
                  if json.loads(line)["kind"] == "validation"]
    assert len(validation) == 1 and validation[0]["pairs"] == 60
    record = validation[0]
    assert record["flip"] == "concat" and record["amp"] == "off"  # the shared defaults; auto is float32 on a CPU
    assert result.best_accuracy == record["accuracy"]
    # model.pt says how its training crops were made.
    crops = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["crops"]
    assert crops["input_size"] == [28, 24] and crops["source_size"] == [112, 92]
    assert crops["crop_policy"] == CROP_POLICY and crops["alignment"]["size"] == [112, 92]

    def eval_lfw(*extra: str) -> dict:
        r = CliRunner().invoke(app, [
            "eval-lfw", "--pairs", str(pairs), "--model", str(tmp_path / "run" / "model.pt"), "--images", str(images),
            "--ext", ".pgm", "--device", "cpu", "--json", *extra,
        ])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    # eval-lfw with its defaults prints the number validation logged: one default flip and amp for both.
    report = eval_lfw()
    assert report["accuracy"]["mean"] == record["accuracy"]
    assert report["auc"] == pytest.approx(record["auc"], abs=1e-12)
    assert report["eer"] == pytest.approx(record["eer"], abs=1e-12)
    # The check can fail: another flip rule moves the scores, and the AUC with them.
    other = eval_lfw("--flip", "none")
    assert other["auc"] != pytest.approx(record["auc"], abs=1e-12)
