"""Recipes: shipped as package data, each resolves to a valid TrainConfig, states its expected results
and training time, and trains a few steps on tiny data (recipe + overrides for a tiny size)."""

from __future__ import annotations

import json
import tomllib

import pytest
from typer.testing import CliRunner

from facever.cli import app
from facever.training.options import make_train_config
from facever.core.errors import FaceverError
from facever.training.recipes import load_recipe, recipe_names

from tests.helpers.repro_data import build_casia, tiny_config_text

runner = CliRunner()
RECIPES = ("iresnet50-bf16", "paper-casia-sphere20", "paper-casia-sphere20-softmax")  # GPU recipes
CPU_RECIPES = ("cpu-small",)
ALL_RECIPES = RECIPES + CPU_RECIPES


def test_the_shipped_recipes_are_found_as_package_data():
    from importlib import resources

    assert recipe_names() == sorted(ALL_RECIPES)
    folder = resources.files("facever.training").joinpath("recipe_files")
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith(".toml")) == sorted(f"{n}.toml" for n in ALL_RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_each_recipe_resolves_and_states_expectations_and_training_time(name, tmp_path):
    recipe = load_recipe(name)
    config = make_train_config({**recipe.options, "data": str(tmp_path)})
    assert config.arch == recipe.options["arch"]
    assert config.amp in ("bf16", "off")  # "auto" resolved for this machine
    assert recipe.summary and recipe.data
    assert "estimated" in recipe.train_time and ("H200" in recipe.train_time or "H100" in recipe.train_time)
    assert recipe.expected or "no published number" in recipe.expected_source


def test_paper_recipes_carry_the_papers_numbers_and_differ_only_in_the_head():
    noisy, softmax = load_recipe("paper-casia-sphere20"), load_recipe("paper-casia-sphere20-softmax")
    assert noisy.expected == {"lfw": 99.18, "ytf": 94.88}
    assert noisy.expected_ensemble == {"lfw": 99.31, "fglfw": 94.43, "ytf": 95.37}
    assert softmax.expected == {"ytf": 94.22}
    assert noisy.options["head"] == "noisy-softmax" and noisy.options["alpha2"] == 0.1
    assert noisy.options["input_size"] == (112, 96) and noisy.options["arch"] == "sphere20"
    differing = {k for k in set(noisy.options) | set(softmax.options) if noisy.options.get(k) != softmax.options.get(k)}
    assert differing == {"head", "alpha2"}  # alpha2 only means something for the noisy head


def test_unknown_recipe_and_malformed_user_recipe(tmp_path):
    with pytest.raises(FaceverError, match="unknown recipe 'paper'; did you mean 'paper-casia-sphere20' or "
                                           "'paper-casia-sphere20-softmax'\\?; known recipes: cpu-small, iresnet50-bf16"):
        load_recipe("paper")
    with pytest.raises(FaceverError, match="unknown recipe 'cpu-smal'; did you mean 'cpu-small'\\?; known"):
        load_recipe("cpu-smal")
    with pytest.raises(FaceverError, match="unknown recipe 'gpu-large'; known recipes"):  # nothing close: no guess
        load_recipe("gpu-large")
    mine = tmp_path / "mine.toml"
    mine.write_text('arch = "sphere20"\n[recipe]\nsummary = "mine"\nexpected = { lfw = 99.5 }\n')
    assert load_recipe(str(mine)).expected == {"lfw": 99.5}
    mine.write_text('arch = "sphere20"\n[recipe]\nexpectation = 3\n')
    with pytest.raises(FaceverError, match=r"mine\.toml: unknown key\(s\) in \[recipe\]: expectation"):
        load_recipe(str(mine))
    mine.write_text('[recipe]\nexpected = { lfw = "high" }\n')
    with pytest.raises(FaceverError, match="table of percentages"):
        load_recipe(str(mine))


def test_recipes_command_lists_and_shows(tmp_path):
    result = runner.invoke(app, ["recipes", "--json"])
    assert result.exit_code == 0, result.output
    listed = {r["name"]: r for r in json.loads(result.output)}
    assert set(listed) == set(ALL_RECIPES)
    assert listed["paper-casia-sphere20"]["expected"] == {"lfw": 99.18, "ytf": 94.88}
    result = runner.invoke(app, ["recipes", "paper-casia-sphere20"])
    assert result.exit_code == 0
    shown = tomllib.loads(result.output)  # the options, printed as TOML (metadata as comments)
    assert shown["head"] == "noisy-softmax" and shown["milestones"] == [16.5, 24.5]


@pytest.fixture(scope="module")
def tiny_casia(faces_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    casia = build_casia(faces_dir, root / "casia", people=range(1, 7), per_person=4)
    (root / "tiny.toml").write_text(tiny_config_text(batch_size=8, holdout_identities=2, width=4, embedding_dim=16))
    return casia, root / "tiny.toml"


@pytest.mark.parametrize("name", ALL_RECIPES)
def test_each_recipe_trains_a_few_steps_on_tiny_data(name, tiny_casia, tmp_path):
    casia, tiny = tiny_casia
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(casia), "--recipe", name, "--config", str(tiny), "--out", str(run), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["steps"] == summary["total_steps"] == 2  # 16 images, batch 8, 1 epoch
    assert summary["best_accuracy"] is not None  # validated on the 2 held-out identities
    saved = tomllib.loads((run / "config.toml").read_text())
    recipe = load_recipe(name)
    for key in ("arch", "head", "lr", "schedule", "momentum", "weight_decay"):
        assert saved[key] == recipe.options[key], key  # the recipe's own, where the tiny file does not override
    assert saved["input_size"] == [28, 24] and saved["width"] == 4
    assert (run / "model.pt").is_file()


@pytest.mark.parametrize("photos", [200, 300, 400])
def test_cpu_small_does_not_warn_about_itself_on_the_quick_starts_photos(photos):
    """The quick start trains cpu-small on a few hundred photos: its batch must give enough steps per
    epoch that the small-epoch warning stays quiet (the sampler's own count of steps)."""
    from facever.training.data import EpochBatchSampler
    from facever.training.loop import MIN_STEPS_PER_EPOCH

    batch = load_recipe("cpu-small").options["batch_size"]
    assert len(EpochBatchSampler(photos, batch, seed=0, rank=0, world_size=1)) >= MIN_STEPS_PER_EPOCH
    # ... while a batch far too large for them still warns.
    assert len(EpochBatchSampler(photos, 64, seed=0, rank=0, world_size=1)) < MIN_STEPS_PER_EPOCH
