"""`facever eval-lfw` end to end, and the CLI's start-up promise (no torch for --help)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from facever.cli import app
from facever.protocols.lfw import read_lfw_pairs
from facever.core.embeddings_file import save_embeddings
from facever.verification.scores import pair_scores
from tests.helpers.references import facenet_calculate_roc_accuracy

runner = CliRunner()


@pytest.fixture(scope="module")
def lfw_embeddings(tmp_path_factory, lfw_pairs_file):
    """Synthetic embeddings for every image of the real pairs file: identity centre + noise."""
    protocol = read_lfw_pairs(lfw_pairs_file)
    items = protocol.items()
    rng = np.random.default_rng(0)
    names = sorted({i.split("/")[0] for i in items})
    centres = {n: rng.normal(size=128) for n in names}
    emb = np.stack([centres[i.split("/")[0]] + 1.6 * rng.normal(size=128) for i in items]).astype(np.float32)
    path = tmp_path_factory.mktemp("emb") / "lfw.npz"
    save_embeddings(path, items, emb, {"model": "synthetic"})
    return path, protocol, items, emb


def test_help_lists_commands_and_does_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from facever.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "cmds = ['align', 'train', 'embed', 'eval-lfw', 'eval-fglfw', 'eval-ytf', 'eval-bin', 'eval-ijb', 'ensemble',\n"
        "        'demo', 'recipes', 'reproduce', 'compare', 'data']\n"
        "for cmd in cmds:\n"
        "    assert cmd in r.output, cmd\n"
        "    h = CliRunner().invoke(app, [cmd, '--help'])\n"
        "    assert h.exit_code == 0, (cmd, h.output)\n"
        "assert CliRunner().invoke(app, ['data', 'fetch', '--help']).exit_code == 0\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "facever", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("facever ")


def test_eval_lfw_end_to_end(tmp_path, lfw_embeddings):
    path, protocol, items, emb = lfw_embeddings
    out = tmp_path / "report"
    result = runner.invoke(app, ["eval-lfw", "--pairs", str(protocol.source), "--embeddings", str(path),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["pairs"]["total"] == 6000 and len(report["folds"]) == 10
    assert 0.9 < report["accuracy"]["mean"] < 1.0
    assert report["settings"]["thresholds"] == "exact" and report["settings"]["metric"] == "cosine"
    assert report["settings"]["embeddings_metadata"]["model"] == "synthetic"
    assert "facever_version" in report
    assert f"{100 * report['accuracy']['mean']:.2f}%" in result.output


def test_grid_mode_equals_facenet_algorithm_on_real_pairs(tmp_path, lfw_embeddings):
    """Done-when of the foundation issue: the real pairs file, synthetic embeddings, grid mode ==
    the facenet algorithm (its loop reimplemented in the test, on its own distances)."""
    path, protocol, items, emb = lfw_embeddings
    result = runner.invoke(app, ["eval-lfw", "--pairs", str(protocol.source), "-e", str(path),
                                 "--thresholds", "grid", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    index = {p: i for i, p in enumerate(items)}
    e1 = emb[[index[p] for p in protocol.first]]
    e2 = emb[[index[p] for p in protocol.second]]
    e1 = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = e2 / np.linalg.norm(e2, axis=1, keepdims=True)
    dist = np.sum(np.square(np.subtract(e1, e2)), 1)
    np.testing.assert_allclose(dist, pair_scores(emb[[index[p] for p in protocol.first]],
                                                 emb[[index[p] for p in protocol.second]], metric="l2"), atol=1e-6)
    thresholds, accuracy = facenet_calculate_roc_accuracy(dist, protocol.labels)
    assert report["accuracy"]["mean"] == pytest.approx(np.mean(accuracy), abs=1e-12)
    assert report["accuracy"]["std"] == pytest.approx(np.std(accuracy), abs=1e-12)
    assert [f["threshold"] for f in report["folds"]] == pytest.approx(list(thresholds))


def test_errors_are_one_line_with_exit_2(tmp_path, lfw_embeddings):
    path, protocol, items, emb = lfw_embeddings
    bad_pairs = tmp_path / "pairs.txt"
    bad_pairs.write_text("10\t300\nAnn\t1\n")
    r = runner.invoke(app, ["eval-lfw", "--pairs", str(bad_pairs), "-e", str(path)])
    assert r.exit_code == 2 and f"{bad_pairs}:2:" in r.output
    r = runner.invoke(app, ["eval-lfw", "--pairs", str(protocol.source), "-e", str(tmp_path / "none.npz")])
    assert r.exit_code == 2 and "not found" in r.output
    # a missing image: error naming how many and which, nothing written
    keep = items[1:]
    partial = tmp_path / "partial.npz"
    save_embeddings(partial, keep, emb[1:])
    out = tmp_path / "out"
    r = runner.invoke(app, ["eval-lfw", "--pairs", str(protocol.source), "-e", str(partial), "-o", str(out)])
    assert r.exit_code == 2 and items[0] in r.output and not out.exists()
    r = runner.invoke(app, ["eval-lfw", "--pairs", str(protocol.source), "-e", str(partial), "-o", str(out),
                            "--allow-missing"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["pairs"]["dropped"] >= 1 and report["settings"]["allow_missing"] is True


def test_eval_lfw_and_ensemble_convention(tmp_path, lfw_embeddings):
    """--convention: the report is the library's peer evaluation (tests/test_peer_numbers.py checks that one
    against the peers' own code), records the convention, prints the script's lines; a peer's
    convention refuses the options it sets itself and a file it cannot score."""
    from facever.core.embeddings_file import load_embeddings
    from facever.verification.evaluate import evaluate_protocol

    path, protocol, items, emb = lfw_embeddings
    rng = np.random.default_rng(1)
    concat = np.concatenate([emb, emb + 0.5 * rng.normal(size=emb.shape).astype(np.float32)], axis=1)
    file = save_embeddings(tmp_path / "concat.npz", items, concat, {"model": "synthetic", "flip": "concat"})
    result = runner.invoke(app, ["eval-lfw", "--pairs", str(protocol.source), "-e", str(file),
                                 "--convention", "facenet", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    expected = evaluate_protocol(protocol, load_embeddings(file), convention="facenet")
    assert report["peer"] == json.loads(json.dumps(expected.peer))
    assert report["settings"]["convention"]["name"] == "facenet"
    assert report["accuracy"]["mean"] == expected.accuracy_mean
    text = runner.invoke(app, ["eval-lfw", "--pairs", str(protocol.source), "-e", str(file),
                               "--convention", "sphereface"])
    assert text.exit_code == 0 and "AVE\t" in text.stdout and "evaluation.m" in text.stdout
    bad = runner.invoke(app, ["eval-lfw", "--pairs", str(protocol.source), "-e", str(file),
                              "--convention", "facenet", "--metric", "l2"])
    assert bad.exit_code == 2 and "facenet convention sets metric" in bad.output
    plain = runner.invoke(app, ["eval-lfw", "--pairs", str(protocol.source), "-e", str(path),
                                "--convention", "insightface"])
    assert plain.exit_code == 2 and "embed with flip concat" in plain.output
    # ensemble: each model as the convention's script scores it, the fused row facever's
    other = save_embeddings(tmp_path / "other.npz", items, concat[:, ::-1].copy(), {"flip": "concat"})
    ens = runner.invoke(app, ["ensemble", str(file), str(other), "--pairs", str(protocol.source),
                              "--convention", "insightface", "--json"])
    assert ens.exit_code == 0, ens.output
    data = json.loads(ens.stdout)
    first = next(iter(data["models"].values()))
    assert first["peer"]["lines"][-1].startswith("Accuracy-Flip:")
    assert data["ensemble"]["settings"]["convention"]["name"] == "facever"
