"""The report's pictures beside roc.png: the DET curve (FRR against FAR on normal-deviate axes) and the
score histograms (same against different pairs). The files exist for every report writer, and what
they draw is the data they say: DET points = (FAR, 1 - TAR) of the ROC, as scikit-learn's det_curve
computes them; histogram bars = numpy's density histogram of each class on shared bins."""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest
from typer.testing import CliRunner

from facever.cli import app
from facever.protocols.lfw import read_lfw_pairs
from facever.verification import roc
from facever.verification.report import det_figure, histogram_figure, probit
from tests.helpers.pair_embeddings import two_models_on_pairs

PNG = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def _scores(n=400, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    scores = np.where(labels, rng.normal(0.6, 0.15, n), rng.normal(0.1, 0.15, n))
    return np.round(scores, 2), labels  # rounded: ties, as real cosine scores printed to 2 digits have


def test_probit_is_the_normal_quantile():
    p = np.array([1e-4, 0.01, 0.5, 0.9, 0.0, 1.0])
    want = [NormalDist().inv_cdf(v) for v in p[:4]]
    got = probit(p)
    assert got[:4] == pytest.approx(want, abs=1e-12)
    assert got[2] == 0.0 and got[4] == -np.inf and got[5] == np.inf
    assert probit([0.975])[0] == pytest.approx(1.959964, abs=1e-6)  # the 97.5% quantile every table prints


def test_det_points_are_far_against_one_minus_tar_of_the_roc_as_sklearn_computes_them():
    from sklearn.metrics import det_curve as sk_det_curve

    scores, labels = _scores()
    fpr, tpr, _ = roc.roc_curve(scores, labels)
    far, frr = roc.det_curve(fpr, tpr)
    np.testing.assert_array_equal(far, fpr)
    np.testing.assert_array_equal(frr, 1.0 - tpr)
    # scikit-learn's DET points (its own trimming of redundant ends) are all among ours.
    sk_far, sk_frr, _ = sk_det_curve(labels, scores)
    ours = set(zip(np.round(far, 12), np.round(frr, 12)))
    assert set(zip(np.round(sk_far, 12), np.round(sk_frr, 12))) <= ours

    fig = det_figure([("model", fpr, tpr)], min_rate=1e-3)
    line = fig.axes[0].lines[0]
    inside = (far > 0) & (far < 1) & (frr > 0) & (frr < 1)
    np.testing.assert_allclose(line.get_xdata(), [NormalDist().inv_cdf(v) for v in far[inside]], atol=1e-12)
    np.testing.assert_allclose(line.get_ydata(), [NormalDist().inv_cdf(v) for v in frr[inside]], atol=1e-12)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][:3] == ["0.1", "1", "5"]  # percent


def test_histogram_bars_are_each_class_density_on_shared_bins():
    scores, labels = _scores()
    fig = histogram_figure([("model", scores, labels, 0.35)], bins=20)
    ax = fig.axes[0]
    edges = np.histogram_bin_edges(scores, bins=20)
    polygons = [p for p in ax.patches]
    assert len(polygons) == 2  # one filled step outline per class
    for polygon, mask in zip(polygons, (labels, ~labels)):
        want, _ = np.histogram(scores[mask], bins=edges, density=True)
        xy = polygon.get_xy()
        # A step outline visits each bin's top edge: (left, h), (right, h).
        tops = [xy[i, 1] for i in range(1, 2 * len(want), 2)]
        np.testing.assert_allclose(tops, want, rtol=1e-12)
        np.testing.assert_allclose(xy[1:2 * len(want) + 1:2, 0], edges[:-1], rtol=1e-12)
    assert ax.lines[0].get_xdata()[0] == 0.35  # the threshold line


@pytest.fixture(scope="module")
def small_lfw(tmp_path_factory):
    return two_models_on_pairs(tmp_path_factory.mktemp("pictures"), name="P", people=30, per_person=5, per_fold=15,
                               seed=1, dim=16, noise=1.0, model="m")


def test_eval_and_ensemble_reports_draw_det_and_histograms_beside_the_roc(small_lfw, tmp_path):
    pairs, files = small_lfw
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval-lfw", "--pairs", str(pairs), "-e", str(files[0]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("roc.png", "det.png", "scores.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
        assert str(out / name) in result.stderr
    ens = tmp_path / "ensemble"
    result = runner.invoke(app, ["ensemble", *map(str, files), "--pairs", str(pairs), "--out", str(ens)])
    assert result.exit_code == 0, result.output
    for name in ("roc.png", "det.png", "scores.png"):
        assert (ens / name).read_bytes()[:8] == PNG, name
    # The scores histogrammed are the ones the report's ROC came from: same counts as report.json.
    from facever.core.embeddings_file import load_embeddings
    from facever.verification.evaluate import evaluate_protocol

    res = evaluate_protocol(read_lfw_pairs(pairs), load_embeddings(files[0]))
    report = json.loads((out / "report.json").read_text())
    assert res.labels.sum() == report["pairs"]["same"] and res.scores.size == report["pairs"]["total"]
    fpr, tpr, _ = roc.roc_curve(res.scores, res.labels)
    np.testing.assert_array_equal(fpr, res.fpr)
    np.testing.assert_array_equal(tpr, res.tpr)
