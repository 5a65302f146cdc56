"""Ensembles: fusion math, accuracy against scores computed by hand from the single models' files,
missing images, and `facever ensemble` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from facever.cli import app
from facever.protocols.lfw import read_lfw_pairs
from facever.embedding.ensemble import evaluate_ensemble, fuse_embeddings, normalize_weights
from facever.core.embeddings_file import Embeddings, load_embeddings, save_embeddings
from facever.core.errors import FaceverError
from facever.verification.evaluate import evaluate_protocol
from facever.verification.tenfold import kfold_accuracy
from tests.helpers.tiny_models import make_lfw_tree, make_pairs_file, train_tiny_model

runner = CliRunner()


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def hand_cosines(emb: Embeddings, protocol) -> np.ndarray:
    index = {p: i for i, p in enumerate(emb.paths)}
    a = unit(emb.embeddings[[index[p] for p in protocol.first]])
    b = unit(emb.embeddings[[index[p] for p in protocol.second]])
    return np.sum(a * b, axis=1)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, lfw_pairs_file):
    """Two synthetic 'models' for every image of the real LFW pairs: the same identity centres seen
    through independent noise, different dimensions and row scales (so normalisation matters)."""
    protocol = read_lfw_pairs(lfw_pairs_file)
    items = protocol.items()
    rng = np.random.default_rng(0)
    names = sorted({i.split("/")[0] for i in items})
    folder = tmp_path_factory.mktemp("ens")
    files = []
    for k, (dim, noise) in enumerate([(64, 1.4), (48, 1.2)]):
        centres = {n: rng.normal(size=dim) for n in names}
        emb = np.stack([centres[i.split("/")[0]] + noise * rng.normal(size=dim) for i in items])
        emb *= rng.uniform(0.5, 20.0, size=(len(items), 1))
        # Rows in another order than the protocol's, as a real file would have them.
        order = rng.permutation(len(items))
        path = folder / f"m{k}.npz"
        save_embeddings(path, [items[i] for i in order], emb[order].astype(np.float32), {"model": f"m{k}"})
        files.append(path)
    return protocol, files


def test_fused_concat_cosine_is_the_weighted_mean_of_cosines():
    rng = np.random.default_rng(1)
    paths = [f"p{i}.jpg" for i in range(30)]
    models = [Embeddings(paths, rng.normal(size=(30, d)) * rng.uniform(0.1, 9, (30, 1))) for d in (8, 5, 3)]
    weights = [2.0, 1.0, 1.0]
    fused = fuse_embeddings(models, weights=weights)
    assert fused.paths == paths and fused.dim == 16
    np.testing.assert_allclose(np.linalg.norm(fused.embeddings, axis=1), 1.0, atol=1e-6)
    i, j = rng.integers(0, 30, 50), rng.integers(0, 30, 50)
    fused_cos = np.sum(fused.embeddings[i] * fused.embeddings[j], axis=1)
    cos = [np.sum(unit(m.embeddings)[i] * unit(m.embeddings)[j], axis=1) for m in models]
    expected = (2 * cos[0] + cos[1] + cos[2]) / 4
    np.testing.assert_allclose(fused_cos, expected, atol=1e-6)
    # Items can be chosen and reordered; every model must hold them.
    sub = fuse_embeddings(models, items=paths[::-1][:5])
    assert sub.paths == paths[::-1][:5]
    short = Embeddings(paths[:-1], models[1].embeddings[:-1])
    with pytest.raises(FaceverError, match=r"model2 lacks 1 of 30 \(p29.jpg\)"):
        fuse_embeddings([models[0], short])


def test_weights_and_names_are_checked():
    assert normalize_weights([2, 1, 1], 3) == [0.5, 0.25, 0.25]
    assert normalize_weights(None, 4) == [0.25] * 4
    for bad, match in [([1, -1], "non-negative"), ([0, 0], "positive"), ([1], "1 weights given for 2"),
                       ([1, float("nan")], "finite")]:
        with pytest.raises(FaceverError, match=match):
            normalize_weights(bad, 2)
    paths = ["a.jpg", "b.jpg"]
    m = Embeddings(paths, np.eye(2))
    with pytest.raises(FaceverError, match="distinct"):
        fuse_embeddings([m, m], names=["x", "x"])
    with pytest.raises(FaceverError, match="reserved"):
        fuse_embeddings([m, m], names=["x", "ensemble"])


def test_ensemble_accuracy_against_scores_computed_by_hand(two_models):
    protocol, files = two_models
    models = [load_embeddings(f) for f in files]
    result = evaluate_ensemble(protocol, models, ["a", "b"])
    # Each model alone is exactly what eval-lfw reports for its file.
    for name, emb in zip(["a", "b"], models):
        alone = evaluate_protocol(protocol, emb)
        np.testing.assert_array_equal(result.models[name].kfold.accuracies, alone.kfold.accuracies)
    # The ensemble: mean of the cosines computed here from the files, then the 10-fold protocol.
    scores = (hand_cosines(models[0], protocol) + hand_cosines(models[1], protocol)) / 2
    expected = kfold_accuracy(scores, protocol.labels, protocol.folds)
    np.testing.assert_allclose(result.ensemble.kfold.accuracies, expected.accuracies, atol=1e-12)
    assert result.ensemble.auc == pytest.approx(roc_auc_score(protocol.labels, scores), abs=1e-9)
    # Independent errors average out: the fusion beats both models.
    assert result.ensemble.auc > max(r.auc for r in result.models.values())
    assert result.ensemble.accuracy_mean > max(r.accuracy_mean for r in result.models.values())
    report = result.to_dict()
    assert set(report["models"]) == {"a", "b"} and report["ensemble"]["accuracy"]["mean"] == result.ensemble.accuracy_mean
    assert report["weights"] == {"a": 0.5, "b": 0.5}


def test_weighted_and_score_mean_fusions(two_models):
    protocol, files = two_models
    models = [load_embeddings(f) for f in files]
    cos = [hand_cosines(m, protocol) for m in models]
    weighted = evaluate_ensemble(protocol, models, ["a", "b"], weights=[3, 1])
    expected = kfold_accuracy(0.75 * cos[0] + 0.25 * cos[1], protocol.labels, protocol.folds)
    np.testing.assert_allclose(weighted.ensemble.kfold.accuracies, expected.accuracies, atol=1e-12)

    concat = evaluate_ensemble(protocol, models, ["a", "b"], fusion="concat")
    mean = evaluate_ensemble(protocol, models, ["a", "b"], fusion="score-mean")
    np.testing.assert_allclose(mean.ensemble.kfold.accuracies, concat.ensemble.kfold.accuracies, atol=1e-12)
    assert mean.ensemble.auc == pytest.approx(concat.ensemble.auc, abs=1e-9)

    # With mean subtraction, score-mean subtracts each model's own training-fold mean.
    sub = evaluate_ensemble(protocol, models, ["a", "b"], fusion="score-mean", subtract_mean=True)
    fold_ids = np.unique(protocol.folds)
    by_fold = np.zeros((fold_ids.size, len(protocol)))
    for emb in models:
        index = {p: i for i, p in enumerate(emb.paths)}
        r1 = np.array([index[p] for p in protocol.first])
        r2 = np.array([index[p] for p in protocol.second])
        x = emb.embeddings.astype(np.float64)
        for k, fold in enumerate(fold_ids):
            train = protocol.folds != fold
            mu = np.concatenate([x[r1[train]], x[r2[train]]]).mean(axis=0)
            by_fold[k] += 0.5 * np.sum(unit(x[r1] - mu) * unit(x[r2] - mu), axis=1)
    expected = kfold_accuracy(by_fold, protocol.labels, protocol.folds)
    np.testing.assert_allclose(sub.ensemble.kfold.accuracies, expected.accuracies, atol=1e-12)
    assert sub.ensemble.settings["subtract_mean"] and sub.ensemble.settings["fusion"] == "score-mean"


def test_any_protocol_items_work_for_example_video_ids():
    from facever.protocols.pair_protocol import PairProtocol

    rng = np.random.default_rng(3)
    videos = [f"Person_{p}/{v}" for p in range(8) for v in range(3)]
    first, second, labels = [], [], []
    for k in range(40):
        a, b = rng.choice(len(videos), 2, replace=False)
        if k % 2 == 0:
            b = a - a % 3 + (a + 1) % 3  # another video of the same person
        first.append(videos[a])
        second.append(videos[b])
        labels.append(videos[a].split("/")[0] == videos[b].split("/")[0])
    protocol = PairProtocol("ytf", first, second, np.array(labels), np.repeat(np.arange(4), 10))
    centres = rng.normal(size=(8, 16))
    models = [Embeddings(videos, np.stack([centres[int(v.split("_")[1][0])] + 0.8 * rng.normal(size=16) for v in videos]))
              for _ in range(2)]
    result = evaluate_ensemble(protocol, models, ["a", "b"])
    scores = (hand_cosines(models[0], protocol) + hand_cosines(models[1], protocol)) / 2
    np.testing.assert_allclose(result.ensemble.kfold.accuracies,
                               kfold_accuracy(scores, protocol.labels, protocol.folds).accuracies, atol=1e-12)
    assert result.ensemble.protocol == "ytf"


def test_missing_images_are_named_or_dropped_for_every_model(two_models):
    protocol, files = two_models
    a, b = (load_embeddings(f) for f in files)
    gone = protocol.first[0]
    keep = [i for i, p in enumerate(b.paths) if p != gone]
    b_short = Embeddings([b.paths[i] for i in keep], b.embeddings[keep])
    with pytest.raises(FaceverError, match=f"b lacks 1 of .*{gone}"):
        evaluate_ensemble(protocol, [a, b_short], ["a", "b"])
    result = evaluate_ensemble(protocol, [a, b_short], ["a", "b"], allow_missing=True)
    n_missing = sum(gone in (p, q) for p, q in zip(protocol.first, protocol.second))
    for _, res in result.results():
        assert res.dropped_pairs == n_missing and res.n_pairs == len(protocol) - n_missing
    with pytest.raises(FaceverError, match="at least two"):
        evaluate_ensemble(protocol, [a], ["a"])


def test_cli_ensemble_report_roc_and_saved_fusion(two_models, tmp_path):
    protocol, files = two_models
    pairs = str(protocol.source)
    out = tmp_path / "ens"
    fused_file = tmp_path / "fused.npz"
    result = runner.invoke(app, ["ensemble", str(files[0]), str(files[1]), "--pairs", pairs, "--out", str(out),
                                 "--names", "a,b", "--weights", "1,1", "--save-embeddings", str(fused_file)])
    assert result.exit_code == 0, result.output
    for name in ("a", "b", "ensemble"):
        assert name in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["names"] == ["a", "b"] and report["fusion"] == "concat"
    # Each entry has eval-lfw's report keys.
    single = tmp_path / "single"
    assert runner.invoke(app, ["eval-lfw", "--pairs", pairs, "--embeddings", str(files[0]), "--out", str(single)]).exit_code == 0
    lfw_report = json.loads((single / "report.json").read_text())
    for entry in (report["models"]["a"], report["models"]["b"], report["ensemble"]):
        assert set(lfw_report) <= set(entry)
    assert report["models"]["a"]["accuracy"] == lfw_report["accuracy"]
    png = (out / "roc.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    # The saved fusion scores like the ensemble when evaluated again.
    again = tmp_path / "again"
    assert runner.invoke(app, ["eval-lfw", "--pairs", pairs, "--embeddings", str(fused_file), "--out", str(again)]).exit_code == 0
    again_report = json.loads((again / "report.json").read_text())
    assert again_report["accuracy"]["mean"] == pytest.approx(report["ensemble"]["accuracy"]["mean"], abs=1e-12)
    fused = load_embeddings(fused_file)
    assert fused.dim == 64 + 48 and [m["name"] for m in fused.metadata["ensemble_of"]] == ["a", "b"]


def test_cli_ensemble_errors(two_models, tmp_path):
    protocol, files = two_models
    pairs = str(protocol.source)
    result = runner.invoke(app, ["ensemble", str(files[0]), "--pairs", pairs])
    assert result.exit_code == 2 and "at least two" in result.output
    result = runner.invoke(app, ["ensemble", str(files[0]), str(files[1]), "--pairs", pairs, "--weights", "1,x"])
    assert result.exit_code == 2 and "--weights" in result.output
    emb = load_embeddings(files[1])
    short = tmp_path / "short.npz"
    save_embeddings(short, emb.paths[1:], emb.embeddings[1:])
    result = runner.invoke(app, ["ensemble", str(files[0]), str(short), "--pairs", pairs])
    assert result.exit_code == 2 and emb.paths[0] in result.output and "short lacks" in result.output


def test_cli_ensemble_of_models_embeds_the_images(tmp_path):
    models = [train_tiny_model(tmp_path / f"run{k}" / "model.pt", seed=k) for k in range(2)]
    images = tmp_path / "lfw"
    make_lfw_tree(images)
    pairs = make_pairs_file(tmp_path / "pairs.txt")
    out = tmp_path / "ens"
    args = ["ensemble", str(models[0]), str(models[1]), "--images", str(images), "--pairs", str(pairs), "--ext", ".png",
            "--device", "cpu", "--flip", "concat", "--out", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["names"] == ["run0", "run1"]
    # The per-model caches hold exactly the embeddings `facever embed` would give for the same images.
    for k, model in enumerate(models):
        cached = load_embeddings(out / f"embeddings_run{k}.npz")
        direct = tmp_path / f"direct{k}.npz"
        assert runner.invoke(app, ["embed", str(model), str(images), "--out", str(direct), "--flip", "concat",
                                   "--workers", "0"]).exit_code == 0
        ref = load_embeddings(direct)
        np.testing.assert_allclose(cached.embeddings, ref.embeddings[ref.rows(cached.paths)], rtol=1e-5, atol=1e-6)
        single = evaluate_protocol(read_lfw_pairs(pairs, ext=".png"), ref)
        assert report["models"][f"run{k}"]["accuracy"]["mean"] == pytest.approx(single.accuracy_mean)


@pytest.mark.slow
def test_a_trained_model_and_a_facenet_model_score_and_ensemble(tmp_path):
    """The issue's 'done when': `facever train`'s model.pt and a facenet-pytorch model both give embeddings
    files that eval-lfw and ensemble score."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    images = tmp_path / "lfw"
    make_lfw_tree(images)
    pairs = make_pairs_file(tmp_path / "pairs.txt")
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(images), "--out", str(run), "--input-size", "28x24", "--width", "4",
                                 "--embedding-dim", "16", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
                                 "--workers", "0"])
    assert result.exit_code == 0, result.output
    torch.manual_seed(0)
    weights = tmp_path / "vggface2.pt"
    torch.save(InceptionResnetV1(pretrained=None).state_dict(), weights)

    trained, facenet = tmp_path / "trained.npz", tmp_path / "facenet.npz"
    result = runner.invoke(app, ["embed", str(run / "model.pt"), str(images), "--out", str(trained), "--flip", "concat",
                                 "--device", "cpu", "--workers", "0"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["embed", "facenet:vggface2", str(images), "--weights", str(weights), "--out",
                                 str(facenet), "--device", "cpu", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "aspect ratio differs" in result.output  # 28x24 crops stretched to 160x160: said once
    assert load_embeddings(facenet).metadata["aspect_mismatch_images"] == 24

    for emb in (trained, facenet):
        out = tmp_path / f"eval_{emb.stem}"
        result = runner.invoke(app, ["eval-lfw", "--pairs", str(pairs), "--ext", ".png", "--embeddings", str(emb),
                                     "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert json.loads((out / "report.json").read_text())["pairs"]["total"] == 40
    out = tmp_path / "ens"
    result = runner.invoke(app, ["ensemble", str(trained), str(facenet), "--pairs", str(pairs), "--ext", ".png",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["names"] == ["trained", "facenet"]
    protocol = read_lfw_pairs(pairs, ext=".png")
    scores = (hand_cosines(load_embeddings(trained), protocol) + hand_cosines(load_embeddings(facenet), protocol)) / 2
    expected = kfold_accuracy(scores, protocol.labels, protocol.folds)
    assert report["ensemble"]["accuracy"]["mean"] == pytest.approx(expected.mean, abs=1e-12)


def test_one_report_writer_for_the_cli_the_demo_and_reproduce(two_models, tmp_path):
    """`write_ensemble_report` (the writer of `facever ensemble`, the demo and reproduce): report.json is
    the result's own dict plus the caller's block, and the CLI's file holds the same numbers."""
    from facever.verification.report import curve_label, write_ensemble_report

    protocol, files = two_models
    result = evaluate_ensemble(protocol, [load_embeddings(f) for f in files], ["a", "b"])
    written = write_ensemble_report(tmp_path / "lib", result, extra={"demo": {"seed": 3}})
    data = json.loads(written["report"].read_text())
    expected = json.loads(json.dumps(result.to_dict(), allow_nan=True))
    assert data.pop("demo") == {"seed": 3} and data == expected
    assert written["roc"].read_bytes().startswith(b"\x89PNG")
    acc = result.ensemble.accuracy_mean
    assert curve_label("ensemble", result.ensemble) == f"ensemble (acc {100 * acc:.2f}%, AUC {result.ensemble.auc:.4f})"

    out = tmp_path / "cli"
    cli = runner.invoke(app, ["ensemble", str(files[0]), str(files[1]), "--pairs", str(protocol.source),
                              "--names", "a,b", "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    from_cli = json.loads((out / "report.json").read_text())
    for name in ("a", "b"):
        assert from_cli["models"][name]["accuracy"] == expected["models"][name]["accuracy"]
    assert from_cli["ensemble"]["accuracy"] == expected["ensemble"]["accuracy"]
    assert from_cli["ensemble"]["auc"] == expected["ensemble"]["auc"]
