"""The Python API (`import facever`, docs/api.md): torch-free to import, typed, the commands' numbers, and
docs/api.md's examples run as written (the quick start on real faces when ../shared/data is there)."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import facever
from facever.cli import app
from tests.helpers.tiny_models import PEOPLE, make_lfw_tree, make_pairs_file, read_rgb, train_tiny_model

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "api.md"
runner = CliRunner()


def _doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_import_facever_loads_no_torch_and_exports_the_documented_names():
    code = ("import sys, facever\n"
            "assert 'torch' not in sys.modules\n"
            "[getattr(facever, n) for n in facever.__all__]\n"  # every public name resolves ...
            "print('torch' in sys.modules, dir(facever) == sorted(facever.__all__))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]  # ... and still no torch: the functions import it when they run
    table = DOC.read_text(encoding="utf-8").split("## ")[0]
    for name in facever.__all__:
        if name != "__version__":
            assert f"facever.{name}" in table, f"docs/api.md's table lacks facever.{name}"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        facever.nothing  # noqa: B018


@pytest.mark.parametrize("name", [n for n in facever.__all__ if n not in ("__version__", "Embeddings", "FaceverError")])
def test_every_public_function_is_fully_typed(name):
    fn = getattr(facever, name)
    sig = inspect.signature(fn)
    missing = [p for p, v in sig.parameters.items() if v.annotation is inspect.Parameter.empty]
    assert not missing, f"{name}: parameters without a type: {missing}"
    assert sig.return_annotation is not inspect.Signature.empty, f"{name}: no return type"


def test_embeddings_files_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(_doc_blocks()[0], "docs/api.md (embeddings files)", "exec"), {})
    assert (tmp_path / "mine.npz").is_file()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    model = train_tiny_model(root / "run" / "model.pt")
    rels = make_lfw_tree(root / "faces")
    pairs = make_pairs_file(root / "pairs.txt")
    return root, model, rels, pairs


def test_api_gives_the_numbers_of_the_commands(tiny, tmp_path):
    """embed, evaluate, verify, write_pairs from Python = embed, eval-lfw, verify --aligned, pairs from the
    command line, on the same inputs with the same defaults."""
    root, model, rels, pairs = tiny
    cli_file = tmp_path / "cli.npz"
    assert runner.invoke(app, ["embed", str(model), str(root / "faces"), "--out", str(cli_file)]).exit_code == 0
    from_cli = facever.load_embeddings(cli_file)
    from_api = facever.embed(str(model), root / "faces")
    assert from_api.paths == from_cli.paths == sorted(rels)
    np.testing.assert_array_equal(from_api.embeddings, from_cli.embeddings)
    # A loaded model, a list of files, crops in memory: the same rows.
    net = facever.load_model(model.parent)
    listed = facever.embed(net, [root / "faces" / r for r in rels[:5]])
    assert listed.paths == rels[:5]
    # Five images are one smaller batch: the blocked matrix products may round differently (1e-7 seen).
    np.testing.assert_allclose(listed.embeddings, from_cli.embeddings[:5], rtol=0, atol=1e-6)
    crops = facever.embed(net, [read_rgb(root / "faces" / r) for r in rels[:5]])
    assert crops.paths == ["0", "1", "2", "3", "4"]
    np.testing.assert_allclose(crops.embeddings, from_cli.embeddings[:5], atol=1e-6)

    out = tmp_path / "report"
    result = facever.evaluate(pairs, from_api, ext=".png", out=out)
    cli = json.loads(runner.invoke(app, ["eval-lfw", "--pairs", str(pairs), "-e", str(cli_file), "--ext", ".png",
                                         "--json"]).stdout)
    assert result.accuracy_mean == cli["accuracy"]["mean"] and result.auc == cli["auc"]
    assert [f["threshold"] for f in cli["folds"]] == list(result.kfold.thresholds)
    from facever.workflows.verify import threshold_from_report

    assert result.threshold == threshold_from_report(out / "report.json").threshold  # verify --threshold-from's
    for name in ("report.json", "roc.png", "det.png", "scores.png"):
        assert (out / name).is_file()
    by_model = facever.evaluate(pairs, model=model, images=root / "faces", ext=".png")
    assert by_model.accuracy_mean == result.accuracy_mean

    a, b = root / "faces" / rels[0], root / "faces" / rels[4]
    mine = facever.verify(net, a, b, aligned=True, threshold=result.threshold)
    theirs = json.loads(runner.invoke(app, ["verify", str(a), str(b), "--model", str(model), "--aligned",
                                            "--threshold", repr(result.threshold), "--json"]).stdout)["pairs"][0]
    assert mine.cosine == pytest.approx(theirs["cosine"], abs=1e-6) and mine.decision == theirs["decision"]
    assert mine.decision == ("same" if mine.cosine > result.threshold else "different")

    facever.write_pairs(root / "faces", tmp_path / "api-pairs.txt", per_fold=2, folds=2, seed=3)
    assert runner.invoke(app, ["pairs", str(root / "faces"), "--out", str(tmp_path / "cli-pairs.txt"),
                               "--per-fold", "2", "--folds", "2", "--seed", "3"]).exit_code == 0
    assert (tmp_path / "api-pairs.txt").read_bytes() == (tmp_path / "cli-pairs.txt").read_bytes()


def test_api_errors_are_faceverrors(tiny, tmp_path):
    root, model, _, pairs = tiny
    with pytest.raises(facever.FaceverError, match="no such file or folder"):
        facever.embed(str(model), tmp_path / "none")
    with pytest.raises(facever.FaceverError, match="either embeddings or a model"):
        facever.evaluate(pairs)
    with pytest.raises(facever.FaceverError, match="unknown recipe 'cpu-smal'; did you mean 'cpu-small'"):
        facever.train(root / "faces", tmp_path / "run", recipe="cpu-smal")


def test_train_from_python_is_train_from_the_command_line(tmp_path):
    from tests.helpers.training import identity_folder

    data = identity_folder(tmp_path / "data", people=3, per_person=4)
    options = {"arch": "sphere20", "input_size": (20, 16), "width": 4, "embedding_dim": 8, "epochs": 1,
               "batch_size": 4, "cache": "none", "workers": 0, "device": "cpu"}
    said = []
    outcome = facever.train(data, tmp_path / "api", say=said.append, **options)
    assert outcome.result.model_path == tmp_path / "api" / "model.pt" and outcome.result.steps == 3
    assert outcome.config.width == 4 and not outcome.continued
    args = ["train", str(data), "--out", str(tmp_path / "cli"), "--arch", "sphere20", "--input-size", "20x16",
            "--width", "4", "--embedding-dim", "8", "--epochs", "1", "--batch-size", "4", "--cache", "none",
            "--workers", "0", "--device", "cpu"]
    assert runner.invoke(app, args).exit_code == 0
    import torch

    mine = torch.load(tmp_path / "api" / "model.pt", weights_only=True)["state_dict"]
    theirs = torch.load(tmp_path / "cli" / "model.pt", weights_only=True)["state_dict"]
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    again = facever.train(data, tmp_path / "api", **options)  # the same call again: nothing left to train
    assert again.already_done


@pytest.mark.slow  # ~1-2 min on 2 cores: aligns 200 ORL photos, trains cpu-small, embeds, scores, verifies
@pytest.mark.timeout(900)
def test_docs_quick_start_from_python_runs_on_real_faces(faces_dir, tmp_path, monkeypatch):
    """docs/api.md's quick start, two photos and crops examples, as written, on ORL: 10 people to train
    (100 photos), the 10 of s31..s40 to test (450 same-person pairs: 30 per fold fit)."""
    orl = faces_dir / "orl"
    if not orl.is_dir():
        pytest.skip(f"ORL faces not found at {orl}")
    for part, people in (("train", range(1, 11)), ("test", range(31, 41))):
        (tmp_path / "photos" / part).mkdir(parents=True)
        for i in people:
            (tmp_path / "photos" / part / f"s{i}").symlink_to(orl / f"s{i}", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for k, block in enumerate(_doc_blocks()[1:], start=1):
        exec(compile(block, f"docs/api.md (block {k + 1})", "exec"), namespace)
    result = namespace["result"]
    assert result.n_pairs == 600 and 0.5 < result.accuracy_mean <= 1.0
    report = json.loads((tmp_path / "results" / "report.json").read_text())
    assert report["accuracy"]["mean"] == result.accuracy_mean
    aligned = sorted(str(p.relative_to("aligned/test")) for p in Path("aligned/test").rglob("*.jpg"))
    assert namespace["test"].paths == aligned and len(aligned) >= 95  # ORL: a photo or two without a face
    for pair in (namespace["same"], namespace["other"]):
        assert -1 <= pair.cosine <= 1 and pair.decision == ("same" if pair.cosine > result.threshold else "different")
