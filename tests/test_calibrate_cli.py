"""`facever calibrate` end to end: from an embeddings file or a model over images, the thresholds equal the
library's on hand-computed cosines; refusals; --attach into model.pt and ONNX, carried by export; and
`facever verify --far` deciding at the calibrated point (and saying when a threshold is uncalibrated)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facever.cli import app
from facever.core.embeddings_file import save_embeddings
from facever.protocols.lfw import read_lfw_pairs
from facever.protocols.pair_lists import make_identity_pairs
from facever.verification import calibration as cal

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def _people(n_people: int, per_person: int) -> dict[str, list[str]]:
    return {f"p{i:03d}": [f"p{i:03d}/{j}.png" for j in range(per_person)] for i in range(n_people)}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """80 people x 6 'images' as embeddings with heavy noise (scores of both kinds overlap), a path-list
    pairs file with 10 folds x (40 same + 40 different), and the hand-computed cosine of every pair."""
    root = tmp_path_factory.mktemp("cal")
    people = _people(80, 6)
    rng = np.random.default_rng(0)
    paths, rows = [], []
    for name, images in people.items():
        centre = rng.normal(size=32)
        for p in images:
            paths.append(p)
            rows.append(centre + 1.6 * rng.normal(size=32))
    emb = np.array(rows, np.float32)
    save_embeddings(root / "emb.npz", paths, emb, {"model": "facever:test", "model_sha256": "ab" * 32, "flip": "none"})
    (root / "pairs.txt").write_text(make_identity_pairs(people, folds=10, per_fold=40, seed=1).to_text())
    proto = read_lfw_pairs(root / "pairs.txt")
    index = {p: i for i, p in enumerate(paths)}
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cos = np.array([unit[index[a]] @ unit[index[b]] for a, b in zip(proto.first, proto.second)], np.float64)
    return {"root": root, "scores": cos, "labels": proto.labels, "folds": proto.folds, "emb": emb, "paths": paths}


def _calibrate(*args):
    return runner.invoke(app, ["calibrate", *map(str, args)])


def test_calibrate_embeddings_equals_the_library_on_hand_cosines(embedded):
    root = embedded["root"]
    out = root / "calibration.json"
    result = _calibrate("--pairs", root / "pairs.txt", "-e", root / "emb.npz", "--far", "0.05,1e-2,1e-3",
                        "--out", out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert json.loads(out.read_text()) == data
    want = cal.thresholds_at_far(embedded["scores"], embedded["labels"], [0.05, 0.01, 1e-3])
    got = data["points"]
    assert len(got) == 2 and [p["far_target"] for p in got] == [0.05, 0.01]
    for g, w in zip(got, want[:2]):
        assert g["threshold"] == pytest.approx(w.threshold, abs=1e-6)
        assert (g["false_accepts"], g["true_accepts"], g["impostor_pairs"]) == (w.false_accepts, w.true_accepts, 400)
    assert data["refused"] == [{"far_target": 1e-3, "impostor_pairs": 400, "impostor_pairs_needed": 2995}]
    assert "refused FAR 0.001 needs at least 2995 different-person pairs" in result.stderr
    assert data["pairs"]["total"] == 800 and data["pairs"]["folds"] == 10
    assert data["model"]["model_sha256"] == "ab" * 32 and data["model"]["flip"] == "none"


def test_calibrate_probability_map_is_the_better_held_out(embedded):
    root = embedded["root"]
    result = _calibrate("--pairs", root / "pairs.txt", "-e", root / "emb.npz", "--far", "0.05", "--probability",
                        "--out", root / "p.json")
    assert result.exit_code == 0, result.output
    prob = json.loads((root / "p.json").read_text())["probability"]
    held = cal.compare_maps(embedded["scores"], embedded["labels"], embedded["folds"])
    for m in held:
        assert prob["held_out"][m]["log_loss"] == pytest.approx(held[m]["log_loss"], rel=1e-6)
    assert prob["method"] == min(held, key=lambda m: held[m]["log_loss"])
    assert prob["prior_same"] == 0.5 and "the calibration pairs' share" in result.stderr
    assert "probability map:" in result.stderr


def test_calibrate_refusals_write_nothing(embedded, tmp_path):
    root = embedded["root"]
    all_refused = _calibrate("--pairs", root / "pairs.txt", "-e", root / "emb.npz", "--far", "1e-3,1e-4",
                             "--out", tmp_path / "c.json")
    assert all_refused.exit_code == 2
    assert "no target FAR can be calibrated" in all_refused.output and "needs at least 29956" in all_refused.output
    assert not (tmp_path / "c.json").exists()

    bad = embedded["emb"].copy()
    bad[3, 0] = np.nan
    save_embeddings(tmp_path / "nan.npz", embedded["paths"], np.nan_to_num(bad, nan=0.0), {})
    with np.load(tmp_path / "nan.npz") as f:  # save_embeddings refuses NaN: write the file as a user's tool might
        arrays = dict(f)
    arrays["embeddings"] = bad
    np.savez(tmp_path / "nan.npz", **arrays)
    nan = _calibrate("--pairs", root / "pairs.txt", "-e", tmp_path / "nan.npz", "--out", tmp_path / "c.json")
    assert nan.exit_code == 2 and "NaN" in nan.output and not (tmp_path / "c.json").exists()

    same_only = tmp_path / "same.txt"
    same_only.write_text("# facever pairs: path_a path_b same fold\n" + "".join(
        f"p{i:03d}/0.png\tp{i:03d}/1.png\t1\t{1 + i % 2}\n" for i in range(50)))
    one_class = _calibrate("--pairs", same_only, "-e", root / "emb.npz", "--out", tmp_path / "c.json")
    assert one_class.exit_code == 2 and "0 different" in one_class.output

    neither = _calibrate("--pairs", root / "pairs.txt", "-e", root / "emb.npz")
    assert neither.exit_code == 2 and "--out" in neither.output
    far = _calibrate("--pairs", root / "pairs.txt", "-e", root / "emb.npz", "--far", "2", "--out", tmp_path / "c.json")
    assert far.exit_code == 2 and "between 0 and 1" in far.output


# -- a model over images: attach, export, verify --far -------------------------------------------------


SIZE = (28, 24)


@pytest.fixture(scope="module")
def crops_and_model(tmp_path_factory):
    """40 people x 5 aligned-size crops (a base colour pattern per person plus noise), a pairs list with
    10 folds x (35 same + 35 different), and a tiny random sphere20."""
    from tests.helpers.benchmark_data import tiny_model

    root = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(3)
    people = {}
    for i in range(40):
        base = rng.integers(0, 256, (*SIZE, 3))
        people[f"q{i:02d}"] = []
        (root / "faces" / f"q{i:02d}").mkdir(parents=True)
        for j in range(5):
            img = np.clip(base + rng.normal(0, 50, base.shape), 0, 255).astype(np.uint8)
            rel = f"q{i:02d}/{j}.png"
            Image.fromarray(img).save(root / "faces" / rel)
            people[f"q{i:02d}"].append(rel)
    (root / "pairs.txt").write_text(make_identity_pairs(people, folds=10, per_fold=35, seed=0).to_text())
    model = tiny_model(root / "model.pt", input_size=SIZE)
    return {"root": root, "faces": root / "faces", "pairs": root / "pairs.txt", "model": model}


def test_attach_export_and_verify_at_the_calibrated_far(crops_and_model, tmp_path):
    import shutil

    from facever.embedding.loading import load_embedding_model

    d = crops_and_model
    model = tmp_path / "model.pt"
    shutil.copy(d["model"], model)
    common = ["--device", "cpu", "--amp", "off", "--flip", "none"]
    result = _calibrate("--pairs", d["pairs"], "--model", model, "--images", d["faces"], "--far", "0.01",
                        "--attach", "--out", tmp_path / "calibration.json", *common)
    assert result.exit_code == 0, result.output
    saved = cal.read_calibration(tmp_path / "calibration.json")
    loaded = load_embedding_model(model)
    assert loaded.calibration is not None and loaded.calibration.id == saved.id
    (point,) = saved.points
    assert point.impostor_pairs == 350 and point.far_bound <= 0.01

    # export carries it into ONNX and TorchScript metadata
    for fmt, name in (("onnx", "m.onnx"), ("torchscript", "m.torchscript")):
        if fmt == "onnx":
            pytest.importorskip("onnxruntime")
        exported = runner.invoke(app, ["export", str(model), "--out", str(tmp_path / name), "--format", fmt])
        assert exported.exit_code == 0, exported.output
        assert load_embedding_model(tmp_path / name).calibration.id == saved.id

    # verify --far decides at the calibrated threshold and says what it was calibrated on
    a, b = d["faces"] / "q01/0.png", d["faces"] / "q01/1.png"
    verdict = runner.invoke(app, ["verify", str(a), str(b), "--model", str(model), "--aligned", "--far", "0.01",
                                  *common])
    assert verdict.exit_code == 0, verdict.output
    assert f"(threshold {point.threshold:.4f})" in verdict.stdout
    assert "calibrated for FAR 0.01" in verdict.stderr and "on 700 pairs of" in verdict.stderr
    assert saved.created[:10] in verdict.stderr
    as_json = runner.invoke(app, ["verify", str(a), str(b), "--model", str(model), "--aligned", "--far", "0.01",
                                  "--json", *common])
    out = json.loads(as_json.stdout)
    assert out["calibrated"] is True and out["threshold"] == point.threshold
    c = out["calibration"]
    assert c["far_bound"] == point.far_bound and c["calibrated_on"]["pairs"] == 700
    assert c["calibrated_on"]["date"] == saved.created and c["calibration_id"] == saved.id
    cosine = out["pairs"][0]["cosine"]
    assert out["pairs"][0]["decision"] == ("same" if cosine > point.threshold else "different")

    # the same decision from the exported ONNX graph (the calibration travelled with it)
    onnx_json = runner.invoke(app, ["verify", str(a), str(b), "--model", str(tmp_path / "m.onnx"), "--aligned",
                                    "--far", "0.01", "--json", "--device", "cpu", "--flip", "none"])
    assert onnx_json.exit_code == 0, onnx_json.output
    assert json.loads(onnx_json.stdout)["threshold"] == point.threshold

    # batch verification likewise
    listing = tmp_path / "two.csv"
    listing.write_text(f"a,b\n{a},{b}\n{a},{d['faces'] / 'q02/0.png'}\n")
    batch = runner.invoke(app, ["verify", "--pairs", str(listing), "--model", str(model), "--aligned", "--far", "0.01",
                                "--json", *common])
    assert batch.exit_code == 0, batch.output
    assert json.loads(batch.stdout)["calibrated"] is True and len(json.loads(batch.stdout)["pairs"]) == 2


def test_verify_without_calibration_says_so(crops_and_model):
    d = crops_and_model
    a, b = d["faces"] / "q01/0.png", d["faces"] / "q01/1.png"
    common = ["--model", str(d["model"]), "--aligned", "--device", "cpu", "--amp", "off"]
    hand = runner.invoke(app, ["verify", str(a), str(b), "--threshold", "0.3", *common])
    assert hand.exit_code == 0 and "uncalibrated" in hand.stderr
    as_json = json.loads(runner.invoke(app, ["verify", str(a), str(b), "--threshold", "0.3", "--json", *common]).stdout)
    assert as_json["calibrated"] is False and as_json["calibration"] is None
    missing = runner.invoke(app, ["verify", str(a), str(b), "--far", "0.01", *common])
    assert missing.exit_code == 2 and "carries no calibration" in missing.output and "--calibration" in missing.output
    both = runner.invoke(app, ["verify", str(a), str(b), "--far", "0.01", "--threshold", "0.3", *common])
    assert both.exit_code == 2


def test_verify_with_a_calibration_file_of_another_model_warns(crops_and_model, tmp_path):
    d = crops_and_model
    out = tmp_path / "c.json"
    result = _calibrate("--pairs", d["pairs"], "--model", d["model"], "--images", d["faces"], "--far", "0.01",
                        "--out", out, "--device", "cpu", "--amp", "off", "--flip", "none")
    assert result.exit_code == 0, result.output
    from tests.helpers.benchmark_data import tiny_model

    other = tiny_model(tmp_path / "other.pt", input_size=SIZE, seed=5)
    a, b = d["faces"] / "q01/0.png", d["faces"] / "q01/1.png"
    warned = runner.invoke(app, ["verify", str(a), str(b), "--model", str(other), "--aligned", "--far", "0.01",
                                 "--calibration", str(out), "--device", "cpu", "--amp", "off"])
    assert warned.exit_code == 0, warned.output
    assert "was made with another model" in warned.stderr
    unknown = runner.invoke(app, ["verify", str(a), str(b), "--model", str(d["model"]), "--aligned", "--far", "0.02",
                                  "--calibration", str(out), "--device", "cpu", "--amp", "off"])
    assert unknown.exit_code == 2 and "no calibrated point for FAR 0.02; this calibration has: 0.01" in unknown.output


def test_verify_uses_the_calibrations_flip_unless_told_otherwise(crops_and_model, tmp_path):
    d = crops_and_model
    out = tmp_path / "sum.json"
    made = _calibrate("--pairs", d["pairs"], "--model", d["model"], "--images", d["faces"], "--far", "0.01",
                      "--out", out, "--device", "cpu", "--amp", "off", "--flip", "sum", "--probability")
    assert made.exit_code == 0, made.output
    a, b = d["faces"] / "q03/0.png", d["faces"] / "q03/1.png"
    base = ["verify", str(a), str(b), "--model", str(d["model"]), "--aligned", "--far", "0.01", "--calibration",
            str(out), "--device", "cpu", "--amp", "off", "--json"]
    default = runner.invoke(app, base)
    assert default.exit_code == 0, default.output
    answer = json.loads(default.stdout)
    assert answer["model"]["flip"] == "sum" and "flip" not in default.stderr
    # the probability map of the calibration, at the pair's cosine, with the prior it assumes
    mapping = cal.read_calibration(out).probability_map()
    assert answer["pairs"][0]["probability_same"] == pytest.approx(float(mapping(answer["pairs"][0]["cosine"])))
    assert answer["calibration"]["prior_same"] == 0.5
    told = runner.invoke(app, base + ["--flip", "none"])
    assert json.loads(told.stdout)["model"]["flip"] == "none"
    assert "the calibration was made with flip sum, this run uses flip none" in told.stderr


def test_calibrating_a_bin_equals_the_same_pairs_from_the_folder(crops_and_model, tmp_path):
    """The same pairs as an InsightFace .bin (PNG: the same pixels) and as a path list over the folder: the
    same calibration (the .bin's images go through the one cached loop too)."""
    from facever.protocols.insightface_bin import write_bin

    d = crops_and_model
    rng = np.random.default_rng(5)
    pairs = [(f"q{i:02d}/0.png", f"q{i:02d}/{1 + i % 4}.png", True) for i in range(40)]
    seen = set()
    while len(pairs) < 340:
        i, j = rng.choice(40, 2, replace=False)
        pair = (f"q{i:02d}/{rng.integers(5)}.png", f"q{j:02d}/{rng.integers(5)}.png", False)
        if frozenset(pair[:2]) not in seen:  # each unordered pair once (readers refuse a repeat)
            seen.add(frozenset(pair[:2]))
            pairs.append(pair)
    order = rng.permutation(len(pairs))
    pairs = [pairs[k] for k in order]
    blobs = [(d["faces"] / p).read_bytes() for a, b, _ in pairs for p in (a, b)]
    write_bin(tmp_path / "own.bin", blobs, [same for _, _, same in pairs])
    # the .bin's folds: 10 contiguous blocks of its pairs (insightface); the same folds in the path list
    (tmp_path / "own.txt").write_text("# facever pairs: path_a path_b same fold\n" + "".join(
        f"{a}\t{b}\t{int(same)}\t{1 + k // 34}\n" for k, (a, b, same) in enumerate(pairs)))
    common = ["--model", str(d["model"]), "--far", "0.01", "--device", "cpu", "--amp", "off", "--flip", "none", "--json"]
    from_bin = _calibrate("--pairs", tmp_path / "own.bin", "--protocol", "bin", "--out", tmp_path / "b.json", *common)
    assert from_bin.exit_code == 0, from_bin.output
    from_folder = _calibrate("--pairs", tmp_path / "own.txt", "--images", d["faces"], "--out", tmp_path / "f.json",
                             *common)
    assert from_folder.exit_code == 0, from_folder.output
    (b,), (f,) = json.loads(from_bin.stdout)["points"], json.loads(from_folder.stdout)["points"]
    assert (b["false_accepts"], b["true_accepts"], b["impostor_pairs"]) == (f["false_accepts"], f["true_accepts"], 300)
    assert b["threshold"] == pytest.approx(f["threshold"], abs=1e-5)


def test_calibration_never_overwrites_its_inputs(embedded):
    root = embedded["root"]
    pairs = root / "pairs.txt"
    before = pairs.read_bytes()
    r = _calibrate("--pairs", pairs, "-e", root / "emb.npz", "--far", "0.05", "--out", pairs)
    assert r.exit_code == 2 and "is also an input" in r.output and pairs.read_bytes() == before
