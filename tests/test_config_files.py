"""Config files: TOML parsing into TrainConfig fields, errors naming the key and file, precedence
recipe < --config file < command line, RUN/config.toml written back (and inside model.pt)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facever.cli import app
from facever.training.config_files import config_to_toml, read_config_file
from facever.training.options import make_train_config, resolve_train_options
from facever.core.errors import FaceverError
from facever.training.config import TrainConfig

from tests.helpers.repro_data import ALIGNED_WH

runner = CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_parses_every_kind_of_value_and_resolves_paths_against_the_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    cfg = write(tmp_path / "cfg" / "train.toml", """
data = "../casia"
arch = "sphere20"
input-size = "56x48"          # dashes as on the command line
embedding_dim = 128
alpha2 = 0.05
epochs = 3
lr = 1                        # an integer where a float is expected is fine
milestones = [1, 2.5]
channels_last = true
val_pairs = "pairs.txt"
[recipe]
summary = "ignored by training"
""")
    options = read_config_file(cfg)
    assert options["data"] == str((tmp_path / "casia").resolve())
    assert options["val_pairs"] == str((tmp_path / "cfg" / "pairs.txt").resolve())
    assert options["input_size"] == (56, 48)
    assert options["embedding_dim"] == 128 and options["epochs"] == 3
    assert options["lr"] == 1.0 and isinstance(options["lr"], float)
    assert options["milestones"] == (1.0, 2.5)
    assert options["channels_last"] is True
    assert "recipe" not in options
    assert read_config_file(write(tmp_path / "b.toml", "input_size = [112, 96]\n"))["input_size"] == (112, 96)


@pytest.mark.parametrize(
    "text, key",
    [
        ("bogus = 1\n", "bogus"),
        ("batchsize = 64\n", "batchsize"),
        ("[train]\nepochs = 2\n", "train"),
    ],
)
def test_unknown_keys_are_errors_naming_key_and_file(tmp_path, text, key):
    cfg = write(tmp_path / "c.toml", text)
    with pytest.raises(FaceverError) as err:
        read_config_file(cfg)
    assert f"unknown key '{key}'" in str(err.value)
    assert str(cfg) in str(err.value)


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ('epochs = "ten"\n', "epochs", "an integer"),
        ("epochs = true\n", "epochs", "an integer"),
        ("epochs = 2.5\n", "epochs", "an integer"),
        ('lr = "fast"\n', "lr", "a finite number"),
        ("channels_last = 1\n", "channels_last", "a boolean"),
        ("input_size = [112]\n", "input_size", "an array of 2 values"),
        ('input_size = "big"\n', "input_size", "HEIGHT"),
        ('milestones = [1, "x"]\n', "milestones", "an array of numbers"),
        ("arch = 20\n", "arch", "a string"),
        ('head = "l-softmax"\n', "head", "one of noisy-softmax, softmax, sphereface, cosface, arcface"),
        ('amp = "fp8"\n', "amp", "one of"),
    ],
)
def test_wrong_types_and_choices_are_errors_naming_key_and_file(tmp_path, text, key, expected):
    cfg = write(tmp_path / "c.toml", text)
    with pytest.raises(FaceverError) as err:
        read_config_file(cfg)
    message = str(err.value)
    assert f"'{key}'" in message and expected in message and str(cfg) in message


def test_the_same_key_twice_and_invalid_toml_are_errors(tmp_path):
    with pytest.raises(FaceverError, match="given twice"):
        read_config_file(write(tmp_path / "d.toml", "batch_size = 2\nbatch-size = 4\n"))
    with pytest.raises(FaceverError, match=r"e\.toml: not valid TOML.*line 2"):
        read_config_file(write(tmp_path / "e.toml", "epochs = 2\nlr = = 3\n"))
    with pytest.raises(FaceverError, match="config file not found"):
        read_config_file(tmp_path / "missing.toml")


def test_precedence_recipe_then_file_then_command_line(tmp_path):
    cfg = write(tmp_path / "over.toml", "epochs = 3\nbatch_size = 64\nlr = 0.2\n")
    resolved = resolve_train_options(
        {"lr": 0.5, "epochs": None, "seed": 7, "alpha2": 0.3},
        config_file=cfg, recipe="paper-casia-sphere20", explicit={"lr", "epochs", "seed"},
    )
    v, src = resolved.values, resolved.sources
    assert v["arch"] == "sphere20" and src["arch"] == "recipe paper-casia-sphere20"  # recipe only
    assert v["momentum"] == 0.9 and src["momentum"].startswith("recipe")
    assert v["batch_size"] == 64 and src["batch_size"] == f"config file {cfg}"  # file over recipe (512)
    assert v["epochs"] == 3 and src["epochs"].startswith("config file")  # not given on the command line
    assert v["lr"] == 0.5 and src["lr"] == "command line"  # command line over file and recipe
    assert v["seed"] == 7 and src["seed"] == "command line"
    assert v["alpha2"] == 0.1  # a value the user did not type (not in `explicit`) never overrides the recipe


def test_written_config_reads_back_to_the_same_train_config(tmp_path):
    config = TrainConfig(data=str(tmp_path / "data"), input_size=(56, 48), milestones=(1.0, 2.5), lr=0.05,
                         head="softmax", val_pairs=str(tmp_path / 'a "quoted" pairs.txt'),
                         val_images=str(tmp_path / "imgs"))
    text = config_to_toml(config, sources={"lr": "command line"}, header="two\nlines")
    assert "lr = 0.05  # command line" in text
    assert "# width = (not set" in text  # None: a comment, TOML has no null
    path = write(tmp_path / "config.toml", text)
    assert tomllib.loads(text)["head"] == "softmax"
    assert make_train_config(read_config_file(path)) == config


def _tiny_identities(faces_dir: Path, root: Path) -> Path:
    from PIL import Image

    for person in range(1, 5):
        for k in range(1, 5):
            dst = root / f"p{person}" / f"{k}.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            Image.open(faces_dir / "orl" / f"s{person}" / f"{k}.pgm").convert("RGB").resize(ALIGNED_WH).save(dst)
    return root


TINY = """input_size = [28, 24]
width = 4
embedding_dim = 16
batch_size = 8
epochs = 1
milestones = []
workers = 0
device = "cpu"
cache = "none"
channels_last = false
lr = 0.01
holdout_identities = 0
"""


def test_train_cli_layers_recipe_file_and_options_and_saves_config_in_run_and_model(faces_dir, tmp_path):
    import torch

    data = _tiny_identities(faces_dir, tmp_path / "ids")
    cfg = write(tmp_path / "tiny.toml", TINY + "seed = 3\n")
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(data), "--recipe", "paper-casia-sphere20-softmax", "--config", str(cfg),
                                 "--lr", "0.02", "--out", str(run), "--json"])
    assert result.exit_code == 0, result.output
    saved = tomllib.loads((run / "config.toml").read_text())
    assert saved["head"] == "softmax"  # recipe
    assert saved["seed"] == 3 and saved["width"] == 4  # file
    assert saved["lr"] == 0.02  # command line over the file's 0.01
    assert saved["amp"] == "off"  # the recipe's "auto" on a CPU
    text = (run / "config.toml").read_text()
    assert 'head = "softmax"  # recipe paper-casia-sphere20-softmax' in text
    assert "lr = 0.02  # command line" in text
    assert f"seed = 3  # config file {cfg}" in text
    bundle = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    resolved = make_train_config(read_config_file(run / "config.toml"))
    assert TrainConfig.from_dict(bundle["config"]) == resolved

    # The run's config.toml alone (data included) trains the same configuration again.
    again = tmp_path / "again"
    result = runner.invoke(app, ["train", "--config", str(run / "config.toml"), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert make_train_config(read_config_file(again / "config.toml")) == resolved


def test_train_cli_reports_config_errors_on_one_line(tmp_path):
    cfg = write(tmp_path / "bad.toml", "epochs = 2\nlearning_rate = 0.1\n")
    result = runner.invoke(app, ["train", str(tmp_path), "--config", str(cfg), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "unknown key 'learning_rate'" in result.output and "bad.toml" in result.output
    assert not (tmp_path / "r").exists()
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "no training data" in result.output
    result = runner.invoke(app, ["train", str(tmp_path), "--recipe", "nope", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "known recipes: cpu-small, iresnet50-bf16" in result.output
