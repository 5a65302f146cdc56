"""`facever verify` on real photos (align, embed, compare, decide; thresholds from reports; CSV mode) and
`facever pairs` on ORL (read back by eval-lfw, balanced, people disjoint across folds, deterministic)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from facever.cli import app
from facever.core.embeddings_file import save_embeddings
from facever.core.errors import FaceverError
from facever.protocols.lfw import read_lfw_pairs
from facever.protocols.pair_lists import identity_images, make_identity_pairs
from tests.helpers.tiny_models import direct_forward

runner = CliRunner()
SIZE = (112, 96)


@pytest.fixture(scope="module")
def model_112x96(tmp_path_factory):
    """A narrow sphere20 at the 112x96 template size with random weights (the decision rule, not accuracy, is tested)."""
    from facever.models import create_model
    from facever.models.bundle import save_model_bundle

    torch.manual_seed(0)
    arch = {"input_size": list(SIZE), "width": 4, "embedding_dim": 16}
    backbone = create_model("sphere20", **arch).eval()
    path = tmp_path_factory.mktemp("verify") / "model.pt"
    return save_model_bundle(path, backbone, arch="sphere20", arch_kwargs=arch, input_size=SIZE,
                             mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), embedding_dim=16)


@pytest.fixture(scope="module")
def photos(faces_dir, tmp_path_factory):
    """Two photos of Anthony Hopkins (LFW), another person (deepface, shrunk), a group photo, a faceless image."""
    root = tmp_path_factory.mktemp("photos")
    hopkins = faces_dir / "lfw_sample" / "Anthony_Hopkins"
    other = Image.open(faces_dir / "deepface" / "g02" / "img26.jpg").convert("RGB")
    other.thumbnail((320, 320))
    other.save(root / "other.jpg", quality=95)
    Image.fromarray(np.full((120, 100, 3), 128, np.uint8)).save(root / "wall.png")
    return {"a1": hopkins / "Anthony_Hopkins_0001.jpg", "a2": hopkins / "Anthony_Hopkins_0002.jpg",
            "other": root / "other.jpg", "group": faces_dir / "bbt" / "group" / "bbt2.jpg", "wall": root / "wall.png",
            "root": root}


def _verify(*args):
    # float32: the scores are compared with a float32 forward by hand.
    result = runner.invoke(app, ["verify", *map(str, args), "--device", "cpu", "--amp", "off"])
    return result


def _cosine_by_hand(model_path, a, b):
    """Align with FaceAligner at the model's size, normalise by hand, forward the crop and its mirror image
    (verify's default flip, concat: [f(x), f(flip x)]), cosine."""
    from facever.core.images import read_image_rgb
    from facever.data_prep.align import FaceAligner
    from facever.embedding.loading import load_embedding_model

    model = load_embedding_model(model_path)
    aligner = FaceAligner(size=SIZE)
    crops = [aligner.align(read_image_rgb(p)).crops[0] for p in (a, b)]
    e = direct_forward(model.module, crops, model.mean, model.std)
    mirrored = direct_forward(model.module, [c[:, ::-1].copy() for c in crops], model.mean, model.std)
    e = np.concatenate([e, mirrored], axis=1)
    return float(e[0] @ e[1] / (np.linalg.norm(e[0]) * np.linalg.norm(e[1])))


def test_verify_two_photos_scores_like_aligning_and_embedding_by_hand(model_112x96, photos):
    same_photo = _verify(photos["a1"], photos["a1"], "--model", model_112x96, "--threshold", "0.5", "--json")
    assert same_photo.exit_code == 0, same_photo.output
    out = json.loads(same_photo.stdout)
    assert out["pairs"][0]["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert out["pairs"][0]["decision"] == "same"

    for a, b in (("a1", "a2"), ("a1", "other")):
        want = _cosine_by_hand(model_112x96, photos[a], photos[b])
        below, above = want - 1e-3, want + 1e-3
        first = _verify(photos[a], photos[b], "--model", model_112x96, "--threshold", f"{below:.6f}")
        assert first.exit_code == 0, first.output
        match = re.match(r"cosine (-?[0-9.]+)  same person \(threshold", first.stdout)
        assert match, first.stdout
        assert float(match.group(1)) == pytest.approx(want, abs=1e-4)
        second = _verify(photos[a], photos[b], "--model", model_112x96, "--threshold", f"{above:.6f}")
        assert "different people" in second.stdout


def test_verify_in_bf16_detects_faces_outside_autocast(model_112x96, photos):
    # With --amp bf16, face detection must not run under the model's autocast (MTCNN's bf16 tensors
    # cannot become numpy arrays), and scores stay within bf16's precision.
    args = [photos["a1"], photos["a2"], "--model", model_112x96, "--device", "cpu", "--json"]
    bf16 = runner.invoke(app, ["verify", *map(str, args), "--amp", "bf16"])
    assert bf16.exit_code == 0, bf16.output
    want = _cosine_by_hand(model_112x96, photos["a1"], photos["a2"])
    assert json.loads(bf16.stdout)["pairs"][0]["cosine"] == pytest.approx(want, abs=0.02)


def test_verify_threshold_from_report(model_112x96, photos, tmp_path):
    from facever.workflows.verify import threshold_from_report

    folds = [{"fold": k, "accuracy": 0.9, "threshold": t, "train_accuracy": 0.9, "pairs": 10}
             for k, t in enumerate([0.2, 0.3, 0.4, 0.5])]
    report = {"protocol": "lfw", "accuracy": {"mean": 0.9125, "std": 0.01}, "folds": folds,
              "settings": {"metric": "cosine", "embeddings_metadata": {"model": "facever:sphere20", "flip": "none"}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    got = threshold_from_report(tmp_path)  # the folder holding report.json works too
    assert got.threshold == pytest.approx(0.35) and got.protocol == "lfw" and got.folds == 4

    result = _verify(photos["a1"], photos["a2"], "--model", model_112x96, "--threshold-from", tmp_path / "report.json")
    assert result.exit_code == 0, result.output
    assert "(threshold 0.3500)" in result.stdout
    assert "mean of 4 fold thresholds of lfw" in result.stderr and "91.25%" in result.stderr
    # The report's flip (none) is taken without --flip; --flip given on purpose wins, with a warning.
    taken = _verify(photos["a1"], photos["a2"], "--model", model_112x96, "--threshold-from", tmp_path, "--json")
    assert taken.exit_code == 0, taken.output
    data = json.loads(taken.stdout)
    assert data["model"]["flip"] == "none" and data["threshold_from"]["flip"] == "none"
    told = _verify(photos["a1"], photos["a2"], "--model", model_112x96, "--threshold-from", tmp_path, "--flip",
                   "concat", "--json")
    assert told.exit_code == 0 and json.loads(told.stdout)["model"]["flip"] == "concat"
    assert "chose its threshold on embeddings with flip none" in told.stderr

    # A squared-L2 report: same iff d < t  <=>  cos > 1 - t/2 for unit vectors.
    report["settings"]["metric"] = "l2"
    (tmp_path / "l2.json").write_text(json.dumps(report))
    assert threshold_from_report(tmp_path / "l2.json").threshold == pytest.approx(1 - 0.35 / 2)
    report["settings"]["subtract_mean"] = True
    (tmp_path / "mean.json").write_text(json.dumps(report))
    with pytest.raises(FaceverError, match="mean-subtracted"):
        threshold_from_report(tmp_path / "mean.json")


def test_threshold_from_report_brings_the_settings_its_threshold_was_chosen_under(tmp_path):
    """The report's flip (and a convention's scoring) is taken unless the caller asks for another."""
    from facever.workflows.verify import threshold_from_report

    folds = [{"fold": k, "accuracy": 0.9, "threshold": t, "train_accuracy": 0.9, "pairs": 10}
             for k, t in enumerate([0.2, 0.4])]
    report = {"protocol": "lfw", "accuracy": {"mean": 0.9, "std": 0.01}, "folds": folds,
              "settings": {"metric": "cosine", "embeddings_metadata": {"flip": "sum"}}}
    (tmp_path / "r.json").write_text(json.dumps(report))
    got = threshold_from_report(tmp_path / "r.json")
    assert got.flip_for(None) == ("sum", None)
    flip, warning = got.flip_for("concat")
    assert flip == "concat" and "flip sum" in warning
    assert got.flip_for("sum") == ("sum", None)
    # insightface's convention scores f(x) + f(mirror x) of a concat file, squared L2: the threshold is a
    # cosine of the summed embedding.
    report["settings"] = {"metric": "l2", "embeddings_metadata": {"flip": "concat"},
                          "convention": {"name": "insightface", "flip": "sum"}, "subtract_mean": False}
    (tmp_path / "i.json").write_text(json.dumps(report))
    got = threshold_from_report(tmp_path / "i.json")
    assert got.flip_for(None) == ("sum", None) and got.convention == "insightface"
    assert got.threshold == pytest.approx(1 - 0.3 / 2)
    # no flip recorded at all: the default
    report["settings"] = {"metric": "cosine"}
    (tmp_path / "old.json").write_text(json.dumps(report))
    from facever.core.settings import DEFAULT_FLIP

    assert threshold_from_report(tmp_path / "old.json").flip_for(None) == (DEFAULT_FLIP, None)


def test_verify_csv_agrees_with_single_pairs_and_reads_pairs_lists(model_112x96, photos, tmp_path):
    a1, a2, other = photos["a1"], photos["a2"], photos["other"]
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"a,b\n{a1},{a2}\n{a1},{other}\n{a2},{other}\n")
    result = _verify("--pairs", csv, "--model", model_112x96, "--threshold", "0.1", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["pairs"]
    assert [(r["a"], r["b"]) for r in rows] == [(str(a1), str(a2)), (str(a1), str(other)), (str(a2), str(other))]
    for row in rows[:2]:
        single = json.loads(_verify(row["a"], row["b"], "--model", model_112x96, "--json").stdout)["pairs"][0]
        assert row["cosine"] == pytest.approx(single["cosine"], abs=1e-4)  # other batch: float rounding only
        assert row["decision"] == ("same" if row["cosine"] > 0.1 else "different")

    # A TSV without header, relative paths under --images; and the path list of `facever pairs`.
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("Anthony_Hopkins/Anthony_Hopkins_0001.jpg\tAnthony_Hopkins/Anthony_Hopkins_0002.jpg\n")
    table = _verify("--pairs", tsv, "--images", a1.parent.parent, "--model", model_112x96)
    assert table.exit_code == 0, table.output
    # Not a terminal: tab-separated, header first, decisions one word (no threshold: `-`).
    header, row_line = table.stdout.splitlines()
    assert header.split("\t") == ["a", "b", "cosine", "decision"]
    assert row_line.split("\t") == ["Anthony_Hopkins/Anthony_Hopkins_0001.jpg", "Anthony_Hopkins/Anthony_Hopkins_0002.jpg",
                                    f"{rows[0]['cosine']:.4f}", "-"]
    listing = tmp_path / "list.txt"
    listing.write_text("# facever pairs: path_a path_b same fold\n"
                       "Anthony_Hopkins/Anthony_Hopkins_0001.jpg\tAnthony_Hopkins/Anthony_Hopkins_0002.jpg\t1\t1\n")
    listed = _verify("--pairs", listing, "--images", a1.parent.parent, "--model", model_112x96, "-t", "-1", "--json")
    row = json.loads(listed.stdout)["pairs"][0]
    assert row["expected_same"] is True and row["cosine"] == pytest.approx(rows[0]["cosine"], abs=1e-4)


def test_verify_no_face_several_faces_and_missing_photo(model_112x96, photos, tmp_path):
    wall = _verify(photos["a1"], photos["wall"], "--model", model_112x96)
    assert wall.exit_code == 2 and "wall.png" in wall.output and "no face" in wall.output
    group = _verify(photos["group"], photos["a1"], "--model", model_112x96)
    assert group.exit_code == 0, group.output
    assert re.search(r"bbt2\.jpg: [3-9] faces found; using the largest", group.stderr), group.stderr
    missing = _verify(photos["a1"], tmp_path / "nobody.jpg", "--model", model_112x96)
    assert missing.exit_code == 2 and "nobody.jpg: no such image" in missing.output
    both = _verify(photos["a1"], photos["a2"], "--model", model_112x96, "--threshold", "0.2", "--threshold-from", "r.json")
    assert both.exit_code == 2


# ----------------------------------------------------------------------------------------------------
# `facever pairs`


@pytest.fixture(scope="module")
def orl(faces_dir):
    path = faces_dir / "orl"
    if not path.is_dir():
        pytest.skip(f"ORL faces not found at {path}")
    return path


def _person(path: str) -> str:
    return path.split("/", 1)[0]


def test_pairs_on_orl_balanced_disjoint_existing_and_deterministic(orl, tmp_path):
    out = tmp_path / "orl_pairs.txt"
    result = runner.invoke(app, ["pairs", str(orl), "--out", str(out), "--folds", "10", "--per-fold", "30", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "people disjoint across folds" in result.stderr
    proto = read_lfw_pairs(out)  # eval-lfw's and ensemble's reader
    assert len(proto) == 600 and proto.n_folds == 10
    for k in range(10):
        labels = proto.labels[proto.folds == k]
        assert labels.sum() == 30 and (~labels).sum() == 30
    for a, b, same in zip(proto.first, proto.second, proto.labels):
        assert (orl / a).is_file() and (orl / b).is_file()
        assert (_person(a) == _person(b)) == bool(same) and a != b
    people_of_fold = [{_person(p) for i in np.flatnonzero(proto.folds == k) for p in (proto.first[i], proto.second[i])}
                      for k in range(10)]
    for k in range(10):
        for j in range(k):
            assert not people_of_fold[k] & people_of_fold[j]
    keys = {tuple(sorted(p)) for p in zip(proto.first, proto.second)}
    assert len(keys) == 600  # no pair twice

    again = tmp_path / "again.txt"
    runner.invoke(app, ["pairs", str(orl), "--out", str(again), "--per-fold", "30", "--seed", "3"])
    assert again.read_bytes() == out.read_bytes()
    other = tmp_path / "other.txt"
    runner.invoke(app, ["pairs", str(orl), "--out", str(other), "--per-fold", "30", "--seed", "4"])
    assert other.read_bytes() != out.read_bytes()


def test_pairs_list_scored_by_eval_lfw(orl, tmp_path):
    """Embeddings that encode the person exactly: eval-lfw must score 100%, which needs every label read right."""
    out = tmp_path / "pairs.txt"
    assert runner.invoke(app, ["pairs", str(orl), "--out", str(out), "--per-fold", "20"]).exit_code == 0
    people = identity_images(orl)
    names = sorted(people)
    rng = np.random.default_rng(0)
    paths, rows = [], []
    for i, name in enumerate(names):
        for p in people[name]:
            paths.append(p)
            rows.append(np.eye(len(names), dtype=np.float32)[i] + rng.normal(0, 0.05, len(names)).astype(np.float32))
    save_embeddings(tmp_path / "emb.npz", paths, np.stack(rows), {"model": "identity code"})
    result = runner.invoke(app, ["eval-lfw", "--pairs", str(out), "--embeddings", str(tmp_path / "emb.npz"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"]["mean"] == 1.0 and report["pairs"]["total"] == 400


def test_pairs_on_an_lfw_named_folder_writes_lfws_format(orl, tmp_path):
    root = tmp_path / "lfwlike"
    for s in range(1, 7):
        (root / f"Person_{s}").mkdir(parents=True)
        for k in range(1, 5):
            (root / f"Person_{s}" / f"Person_{s}_{k:04d}.pgm").write_bytes((orl / f"s{s}" / f"{k}.pgm").read_bytes())
    out = tmp_path / "pairs.txt"
    result = runner.invoke(app, ["pairs", str(root), "--out", str(out), "--folds", "3", "--per-fold", "4"])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "3\t4" and len(lines) == 1 + 3 * 8
    assert all(len(line.split("\t")) == (3 if (i % 8) < 4 else 4) for i, line in enumerate(lines[1:]))
    proto = read_lfw_pairs(out, ext=".pgm")
    assert all((root / p).is_file() for p in proto.items())


def test_pairs_larger_than_the_data_say_how_many_are_needed(orl, tmp_path):
    people = identity_images(orl)  # 40 people x 10 images: 1800 same-person pairs in all
    with pytest.raises(FaceverError, match=r"only 1800 distinct same-person pairs; 10 folds x 190 need 1900"):
        make_identity_pairs(people, per_fold=190)
    # Enough pairs overall but too few people per fold to keep them disjoint: the folds share people.
    shared = make_identity_pairs(people, folds=30, per_fold=50, seed=0)
    assert not shared.disjoint and shared.folds == 30 and shared.per_fold == 50
    result = runner.invoke(app, ["pairs", str(orl), "--out", str(tmp_path / "p.txt"), "--per-fold", "500"])
    assert result.exit_code == 2 and "need 5000" in result.output
    assert not (tmp_path / "p.txt").exists()
    with pytest.raises(FaceverError, match="at least two people"):
        make_identity_pairs({"solo": ["solo/1.pgm", "solo/2.pgm"]}, per_fold=1, folds=1)


def test_pairs_with_more_different_person_pairs_for_calibration(orl, tmp_path):
    """`--different-per-fold` (calibrating small FARs needs ~3/FAR impostor pairs): counts per fold, people still
    disjoint, no pair twice, a path list even for LFW-named folders (LFW's header holds one N); the balanced
    default is unchanged by the option's existence."""
    people = identity_images(orl)
    pairs = make_identity_pairs(people, folds=5, per_fold=20, different_per_fold=300, seed=2)
    assert pairs.disjoint and pairs.format == "paths"
    out = tmp_path / "calib.txt"
    result = runner.invoke(app, ["pairs", str(orl), "--out", str(out), "--folds", "5", "--per-fold", "20",
                                 "--different-per-fold", "300", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "5 folds x (20 same + 300 different)" in result.stderr
    assert out.read_text() == pairs.to_text()
    proto = read_lfw_pairs(out)
    for k in range(5):
        labels = proto.labels[proto.folds == k]
        assert labels.sum() == 20 and (~labels).sum() == 300
    assert len({tuple(sorted(p)) for p in zip(proto.first, proto.second)}) == len(proto) == 1600
    for a, b, same in zip(proto.first, proto.second, proto.labels):
        assert (_person(a) == _person(b)) == bool(same)
    balanced = make_identity_pairs(people, folds=5, per_fold=20, seed=2)
    assert balanced.to_text() == make_identity_pairs(people, folds=5, per_fold=20, different_per_fold=20, seed=2).to_text()
    with pytest.raises(FaceverError, match="only 3 distinct different-person pairs exist; 1 folds x 5 need 5"):
        make_identity_pairs({"a": ["a/1", "a/2", "a/3"], "b": ["b/1"]}, folds=1, per_fold=1, different_per_fold=5)


def test_path_lists_refuse_paths_leaving_the_images_folder(tmp_path):
    from facever.core.errors import InputFileError

    for bad in ("../secret/a.jpg", "/etc/passwd", "s1/../../x.pgm"):
        listing = tmp_path / "list.txt"
        listing.write_text(f"# facever pairs: path_a path_b same fold\ns1/1.pgm\t{bad}\t0\t1\n")
        with pytest.raises(InputFileError, match=r"list\.txt:2: .* is not a path inside the images folder"):
            read_lfw_pairs(listing)
