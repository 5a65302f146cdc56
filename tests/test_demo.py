"""`facever demo`: the synthetic data generator, the LFW-format pair lists, and the whole demo in its quick setting."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facever.cli import app
from facever.protocols.lfw import read_lfw_pairs
from facever.protocols.pair_lists import make_pair_list, max_pairs_per_fold
from facever.data_prep.synthetic_faces import (
    SyntheticSpec,
    generate_identity_images,
    identity_name,
    write_synthetic_dataset,
)
from facever.core.errors import FaceverError

REPORT_KEYS = {"protocol", "accuracy", "folds", "auc", "eer", "tar_at_far", "val_at_far", "pairs", "settings",
               "facever_version"}


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


# ------------------------------------------------------------------------------------------------
# Synthetic data


def test_synthetic_generator_is_deterministic_byte_for_byte(tmp_path):
    spec = SyntheticSpec(identities=3, images_per_identity=4)
    a = write_synthetic_dataset(tmp_path / "a", spec, seed=7)
    b = write_synthetic_dataset(tmp_path / "b", spec, seed=7)
    c = write_synthetic_dataset(tmp_path / "c", spec, seed=8)
    assert a == b == c == [identity_name(i) for i in range(3)]
    da, db, dc = (_tree_digest(tmp_path / x) for x in "abc")
    assert len(da) == 12 and sorted(da)[0] == "synthetic_0000/synthetic_0000_0001.png"
    assert da == db
    assert set(da) == set(dc) and all(da[k] != dc[k] for k in da)  # another seed: other pixels everywhere


def test_synthetic_images_vary_within_and_between_identities():
    spec = SyntheticSpec(identities=2, images_per_identity=6, size=(48, 40))
    first = np.stack(generate_identity_images(spec, 0, seed=0)).astype(np.float64)
    second = np.stack(generate_identity_images(spec, 1, seed=0)).astype(np.float64)
    assert first.shape == (6, 48, 40, 3)
    # Images of one person differ (pose, lighting, noise) but less than images of two people.
    within = np.mean([np.abs(first[i] - first[j]).mean() for i in range(6) for j in range(i + 1, 6)])
    between = np.mean([np.abs(first[i] - second[j]).mean() for i in range(6) for j in range(6)])
    assert within > 5.0
    assert between > within
    # An identity does not depend on which other identities are generated (test people stay fixed).
    again = np.stack(generate_identity_images(SyntheticSpec(identities=50, images_per_identity=6), 1, seed=0))
    assert np.array_equal(again, second.astype(np.uint8))


# ------------------------------------------------------------------------------------------------
# Pair lists in LFW's format


def test_pair_list_reads_back_as_lfw_pairs(tmp_path):
    counts = {f"p{i}": 3 + i % 3 for i in range(12)}
    pairs = make_pair_list(counts, per_fold=5, seed=1)
    path = tmp_path / "pairs.txt"
    path.write_text(pairs.to_text())
    assert path.read_text().splitlines()[0] == "10\t5"
    proto = read_lfw_pairs(path, ext=".png")
    assert len(proto) == 100 and proto.n_folds == 10
    assert proto.labels.sum() == 50
    for k in range(10):  # each fold: 5 same, then 5 different, as LFW
        assert list(proto.labels[proto.folds == k]) == [True] * 5 + [False] * 5
    keys = set()
    for a, b, same in zip(proto.first, proto.second, proto.labels):
        assert (a.split("/")[0] == b.split("/")[0]) == bool(same)
        person, number = a.split("/")[1].rsplit("_", 1)
        assert 1 <= int(number.split(".")[0]) <= counts[person]
        keys.add(frozenset((a, b)))
    assert len(keys) == 100  # no pair twice
    assert make_pair_list(counts, per_fold=5, seed=1).to_text() == pairs.to_text()
    assert make_pair_list(counts, per_fold=5, seed=2).to_text() != pairs.to_text()


def test_pair_list_refuses_impossible_requests():
    counts = {"a": 3, "b": 3}
    assert max_pairs_per_fold(counts) == 0
    with pytest.raises(FaceverError, match="only 6 distinct same-person pairs"):
        make_pair_list(counts, per_fold=1)
    with pytest.raises(FaceverError, match="at least two test identities"):
        make_pair_list({"a": 30}, per_fold=1)
    with pytest.raises(FaceverError, match="whitespace"):
        make_pair_list({"a b": 30, "c": 30}, per_fold=1)


# ------------------------------------------------------------------------------------------------
# The whole demo (quick setting)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    from facever.workflows.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    events = []
    result = run_demo(out, quick=True, seed=0, progress=events.append)
    return out, result, events


@pytest.mark.slow
def test_quick_demo_trains_both_models_and_verifies_held_out_people(quick_demo):
    out, result, events = quick_demo
    for rel in ("report.json", "roc.png", "pairs.txt", "models/noisy-softmax/model.pt", "models/softmax/model.pt",
                "data/synthetic/manifest.json"):
        assert (out / rel).is_file(), rel
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    report = json.loads((out / "report.json").read_text())
    assert report["names"] == ["noisy-softmax", "softmax"]
    assert set(report["models"]) == {"noisy-softmax", "softmax"}
    entries = [report["models"]["noisy-softmax"], report["models"]["softmax"], report["ensemble"]]
    for entry in entries:
        assert REPORT_KEYS <= set(entry)
        assert len(entry["folds"]) == 10
        # Measured 0.74-0.78 (seed 0, 2-core CPU); chance is 0.5.
        assert entry["accuracy"]["mean"] > 0.62, entry["accuracy"]
        assert entry["pairs"]["total"] == 800 and entry["pairs"]["same"] == 400
    # The numbers are what a brute-force 10-fold over numpy cosines of the saved embeddings gives; the
    # ensemble's cosine is the mean of the two models' cosines (equal weights).
    from facever.core.embeddings_file import load_embeddings
    from tests.helpers.references import brute_kfold, hand_auc, hand_scores, hand_verification

    protocol = read_lfw_pairs(out / "pairs.txt", ext=".png")
    saved = {name: load_embeddings(out / "embeddings" / f"{name}.npz") for name in report["names"]}
    for name, emb in saved.items():
        accuracy, auc = hand_verification(emb, protocol)
        assert report["models"][name]["accuracy"]["mean"] == pytest.approx(accuracy, abs=1e-12), name
        assert report["models"][name]["auc"] == pytest.approx(auc, abs=1e-9), name
    fused = np.mean([hand_scores(emb, protocol) for emb in saved.values()], axis=0)
    _, fold_accuracies = brute_kfold(fused, protocol.labels, protocol.folds)
    assert report["ensemble"]["accuracy"]["mean"] == pytest.approx(np.mean(fold_accuracies), abs=1e-12)
    assert report["ensemble"]["auc"] == pytest.approx(hand_auc(fused, protocol.labels), abs=1e-9)

    demo = report["demo"]
    assert demo["synthetic"] is True and "SYNTHETIC" in demo["data"]
    assert demo["quick"] is True
    assert demo["train_identities"] == 60 and demo["test_identities"] == 20
    # No test person was trained on: the training folder and the pairs share no identity.
    trained = set((out / "models" / "softmax" / "classes.txt").read_text().split())
    tested = {line.split("\t")[0] for line in (out / "pairs.txt").read_text().splitlines()[1:]}
    assert len(trained) == 60 and tested and not trained & tested
    manifest = json.loads((out / "data" / "synthetic" / "manifest.json").read_text())
    assert manifest["synthetic"] is True and "SYNTHETIC" in manifest["note"]

    # The models really differ (one head each), and the ensemble's numbers are its own.
    accs = [e["accuracy"]["mean"] for e in entries]
    assert len({round(a, 6) for a in accs}) >= 2
    stages = {e.stage for e in events}
    assert {"data", "pairs", "train:noisy-softmax", "train:softmax", "embed:softmax", "evaluate"} <= stages
    # Every step is counted once: the steps done when the bar starts (`done_before`), then one per step.
    assert sum(e.done + e.done_before for e in events if e.stage == "train:softmax") == next(
        e.total for e in events if e.stage == "train:softmax" and e.total)


@pytest.mark.slow
def test_cli_demo_reuses_finished_models_and_prints_the_table(quick_demo):
    out, result, _ = quick_demo
    before = json.loads((out / "report.json").read_text())
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "models").rglob("model.pt")}
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model") and "TAR@FAR=1e-2" in line)
    table = lines[header + 1:header + 4]
    assert [row.split()[0] for row in table] == ["noisy-softmax", "softmax", "ensemble"]
    assert "SYNTHETIC" in res.output
    assert str(out / "report.json") in res.output and str(out / "roc.png") in res.output

    after = json.loads((out / "report.json").read_text())
    assert after["demo"]["reused_models"] == ["noisy-softmax", "softmax"]
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # not retrained
    for name in ("noisy-softmax", "softmax"):
        assert after["models"][name]["accuracy"] == before["models"][name]["accuracy"]
    printed = float(table[2].split()[1].rstrip("%"))
    assert printed == pytest.approx(100 * after["ensemble"]["accuracy"]["mean"], abs=0.006)


def test_cli_demo_refuses_a_folder_with_too_few_people(tmp_path):
    from facever.data_prep.synthetic_faces import encode_png

    data = tmp_path / "people"
    for person in ("ann", "bob", "cy"):
        for k in range(2):
            (data / person).mkdir(parents=True, exist_ok=True)
            (data / person / f"{k}.png").write_bytes(encode_png(np.full((20, 16, 3), 40 * k, np.uint8)))
    res = CliRunner().invoke(app, ["demo", "--data", str(data), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "error:" in res.output and "at least 4" in res.output and str(data) in res.output

    missing = tmp_path / "nowhere"
    res = CliRunner().invoke(app, ["demo", "--data", str(missing), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and str(missing) in res.output and "not a folder" in res.output

    # Another tool's results are never overwritten by a mistyped --out.
    other = tmp_path / "results"
    other.mkdir()
    (other / "report.json").write_text("{}")
    res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(other)])
    assert res.exit_code == 2 and "holds files facever did not write (report.json)" in res.output
    assert (other / "report.json").read_text() == "{}"


@pytest.mark.slow
def test_quick_demo_on_a_real_identity_folder(faces_dir, tmp_path):
    from facever.workflows.demo import run_demo

    orl = faces_dir / "orl"
    if not (orl / "s1").is_dir():
        pytest.skip(f"ORL faces not found at {orl}")
    result = run_demo(tmp_path, data=orl, quick=True, seed=0)
    assert not result.synthetic
    assert result.train_identities == 30 and result.test_identities == 10
    crops = sorted((tmp_path / "data" / "orl" / "test").rglob("*.png"))
    assert len(crops) == 100
    from facever.core.images import read_image_rgb

    assert read_image_rgb(crops[0]).shape == (48, 40, 3)  # resized to the model's input
    report = json.loads(result.report_path.read_text())
    assert report["demo"]["synthetic"] is False
    for name, res in result.rows():
        # Measured 0.86-0.90 (seed 0, 2-core CPU).
        assert res.accuracy_mean > 0.7, name
    sources = (tmp_path / "data" / "orl" / "sources.tsv").read_text().splitlines()
    assert sources[0] == "copy\toriginal" and len(sources) == 401
