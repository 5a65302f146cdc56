"""FGLFW / CALFW / CPLFW pair lists: parsing, labels from names, fold rules, errors, `facever eval-fglfw`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facever.protocols.fglfw import person_of, read_fglfw_pairs, read_token_pairs, read_variant_pairs
from facever.core.errors import InputFileError

from tests.helpers.benchmark_data import build_lfw_tree, identity_embeddings, orl_people

# 3 folds of 4 pairs (2 same + 2 different), each fold in a different block order, as third-party
# copies of the list differ in it.
FGLFW_PAIRS = [
    # fold 1: same, same, different, different
    ("A/A_0001.jpg", "A/A_0002.jpg"), ("B/B_0001.jpg", "B/B_0003.jpg"),
    ("A/A_0003.jpg", "C/C_0001.jpg"), ("B/B_0002.jpg", "D/D_0004.jpg"),
    # fold 2: different first
    ("C/C_0002.jpg", "D/D_0001.jpg"), ("E/E_0001.jpg", "F/F_0002.jpg"),
    ("C/C_0003.jpg", "C/C_0004.jpg"), ("D/D_0002.jpg", "D/D_0003.jpg"),
    # fold 3: interleaved
    ("E/E_0002.jpg", "E/E_0003.jpg"), ("F/F_0001.jpg", "A/A_0004.jpg"),
    ("F/F_0003.jpg", "F/F_0004.jpg"), ("E/E_0004.jpg", "B/B_0004.jpg"),
]
EXPECTED_LABELS = [1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0]


def write_pair_list(path: Path, pairs, tokens=None) -> Path:
    lines = []
    for k, (a, b) in enumerate(pairs):
        suffix = "" if tokens is None else f" {tokens[k]}"
        lines += [a + suffix, b + suffix]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fglfw_labels_come_from_names_and_folds_from_file_order(tmp_path):
    proto = read_fglfw_pairs(write_pair_list(tmp_path / "pair_FGLFW.txt", FGLFW_PAIRS), pairs_per_fold=4)
    assert proto.name == "fglfw"
    assert proto.labels.astype(int).tolist() == EXPECTED_LABELS
    assert proto.folds.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert proto.first[0] == "A/A_0001.jpg" and proto.second[-1] == "B/B_0004.jpg"
    assert proto.line_numbers == list(range(1, 24, 2))


def test_fglfw_extension_is_replaced_when_asked(tmp_path):
    path = write_pair_list(tmp_path / "pair_FGLFW.txt", FGLFW_PAIRS)
    proto = read_fglfw_pairs(path, pairs_per_fold=4, ext="png")
    assert proto.first[0] == "A/A_0001.png"
    assert read_fglfw_pairs(path, pairs_per_fold=4).first[0] == "A/A_0001.jpg"


def test_fglfw_default_fold_is_600_pairs(tmp_path):
    # 6000 pairs as in the real list: per fold 300 same then 300 different.
    pairs = []
    for k in range(10):
        pairs += [(f"P{k}/P{k}_{i + 1:04d}.jpg", f"P{k}/P{k}_{i + 2:04d}.jpg") for i in range(300)]
        pairs += [(f"P{k}/P{k}_{i + 1:04d}.jpg", f"Q{k}/Q{k}_{i + 1:04d}.jpg") for i in range(300)]
    proto = read_fglfw_pairs(write_pair_list(tmp_path / "pair_FGLFW.txt", pairs))
    assert len(proto) == 6000 and proto.n_folds == 10
    assert np.bincount(proto.folds).tolist() == [600] * 10
    assert [int(proto.labels[proto.folds == k].sum()) for k in range(10)] == [300] * 10


def test_fglfw_block_structure_inconsistent_with_labels_is_refused(tmp_path):
    bad = list(FGLFW_PAIRS)
    bad[3], bad[6] = bad[6], bad[3]  # a same pair of fold 2 swapped into fold 1's different block
    path = write_pair_list(tmp_path / "pair_FGLFW.txt", bad)
    with pytest.raises(InputFileError, match=r"pair_FGLFW.txt:1: fold 1 \(pairs 1-4\) holds 3 same-person and 1 different"):
        read_fglfw_pairs(path, pairs_per_fold=4)
    # swapping within a fold changes the block order only, which is allowed
    ok = list(FGLFW_PAIRS)
    ok[5], ok[6] = ok[6], ok[5]
    read_fglfw_pairs(write_pair_list(tmp_path / "ok.txt", ok), pairs_per_fold=4)


def test_fglfw_pair_count_must_fill_whole_folds(tmp_path):
    path = write_pair_list(tmp_path / "pair_FGLFW.txt", FGLFW_PAIRS[:10])
    with pytest.raises(InputFileError, match="10 pairs is not a whole number of folds of 4 pairs"):
        read_fglfw_pairs(path, pairs_per_fold=4)


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("A/A_0001.jpg\nA/A_0002.jpg\nB/B_0001.jpg\n", 3, "odd number of image lines"),
        ("A/A_0001.jpg\n\nA/A_0002.jpg\n", 2, "blank line inside the pair list"),
        ("A/A_0001.jpg 1\nA/A_0002.jpg\n", 1, "one image path per line"),
        ("/abs/A_0001.jpg\nA/A_0002.jpg\n", 1, "must be relative"),
        ("A/../A_0001.jpg\nA/A_0002.jpg\n", 1, "must be relative"),
        ("A/A_0001.jpg\nA/A_0002\n", 2, "has no extension"),
    ],
)
def test_fglfw_malformed_lines_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "list.txt"
    path.write_text(text)
    with pytest.raises(InputFileError, match=message) as info:
        read_fglfw_pairs(path, pairs_per_fold=2)
    assert info.value.line == line and info.value.path == path


def test_empty_or_missing_list_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(InputFileError, match="empty"):
        read_fglfw_pairs(tmp_path / "empty.txt")
    with pytest.raises(InputFileError, match="not found"):
        read_fglfw_pairs(tmp_path / "nope.txt")


def test_person_of_handles_folders_and_flat_names():
    assert person_of("George_W_Bush/George_W_Bush_0010.jpg") == "George_W_Bush"
    assert person_of("George_W_Bush_0010.jpg") == "George_W_Bush"
    assert person_of("Aaron_Eckhart_1.jpg") == "Aaron_Eckhart"
    assert person_of("nonumber.jpg") is None


def _calfw_pairs():
    """Official CALFW order: positives first with their fold token (1..2 here), then negatives (0)."""
    pos = [("A_0001.jpg", "A_0002.jpg", 1), ("B_0001.jpg", "B_0002.jpg", 1),
           ("C_0001.jpg", "C_0003.jpg", 2), ("D_0001.jpg", "D_0002.jpg", 2)]
    neg = [("A_0003.jpg", "B_0003.jpg", 0), ("C_0002.jpg", "D_0003.jpg", 0),
           ("A_0004.jpg", "D_0004.jpg", 0), ("B_0004.jpg", "C_0004.jpg", 0)]
    return pos + neg


@pytest.mark.parametrize("protocol", ["calfw", "cplfw"])
def test_token_lists_fold_rule(tmp_path, protocol):
    rows = _calfw_pairs()
    path = write_pair_list(tmp_path / "pairs_CALFW.txt", [(a, b) for a, b, _ in rows], [t for *_, t in rows])
    proto = read_variant_pairs(path, protocol=protocol)
    assert proto.name == protocol
    assert proto.labels.tolist() == [True] * 4 + [False] * 4
    # positives: fold = token - 1; negatives in file order, cut into one equal block per fold
    assert proto.folds.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert proto.first[0] == "A_0001.jpg"


def test_token_lists_interleaved_order_gives_the_same_folds(tmp_path):
    rows = _calfw_pairs()
    order = [0, 4, 1, 5, 2, 6, 3, 7]
    rows = [rows[i] for i in order]
    path = write_pair_list(tmp_path / "pairs.txt", [(a, b) for a, b, _ in rows], [t for *_, t in rows])
    proto = read_token_pairs(path)
    assert proto.folds.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize(
    "mutate, line, message",
    [
        (lambda r: r.__setitem__(4, ("A_0003.jpg", "B_0003.jpg", 1)), 9, "token 1 says same but the names show different"),
        (lambda r: r.__setitem__(0, ("A_0001.jpg", "A_0002.jpg", 0)), 1, "token 0 says different but the names show the same"),
    ],
)
def test_token_list_label_contradicting_names_is_refused(tmp_path, mutate, line, message):
    rows = _calfw_pairs()
    mutate(rows)
    path = write_pair_list(tmp_path / "pairs.txt", [(a, b) for a, b, _ in rows], [t for *_, t in rows])
    with pytest.raises(InputFileError, match=message) as info:
        read_token_pairs(path)
    assert info.value.line == line


def test_token_list_errors(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("A_0001.jpg 1\nA_0002.jpg 2\n")
    with pytest.raises(InputFileError, match=r"pairs.txt:2: the two lines of a pair carry different tokens"):
        read_token_pairs(path)
    path.write_text("A_0001.jpg x\nA_0002.jpg x\n")
    with pytest.raises(InputFileError, match=r"pairs.txt:1: token 'x'"):
        read_token_pairs(path)
    path.write_text("A_0001.jpg\nA_0002.jpg\n")
    with pytest.raises(InputFileError, match=r"pairs.txt:1: expected `filename token`"):
        read_token_pairs(path)
    rows = _calfw_pairs()[:7]  # one negative short: folds cannot be balanced
    write_pair_list(path, [(a, b) for a, b, _ in rows], [t for *_, t in rows])
    with pytest.raises(InputFileError, match="cannot form folds of equally many same and different"):
        read_token_pairs(path)


# ---------------------------------------------------------------------------------------------------
# `facever eval-fglfw` end to end on an LFW tree built from real photos.

REPORT_KEYS = {"protocol", "accuracy", "folds", "auc", "eer", "tar_at_far", "val_at_far", "pairs", "settings",
               "facever_version"}


def _orl_fglfw(tmp_path, faces_dir):
    """An LFW tree of 6 ORL people (4 photos each, `Orl_S1/Orl_S1_0001.jpg`) and an FGLFW list over it."""
    people = orl_people(faces_dir, 6, 4)
    items = build_lfw_tree(tmp_path / "lfw", people)
    rename = {letter: name for letter, name in zip("ABCDEF", people)}
    pairs = [tuple(f"{rename[p[0]]}/{rename[p[0]]}_{p[-8:]}" for p in pair) for pair in FGLFW_PAIRS]
    return items, write_pair_list(tmp_path / "pair_FGLFW.txt", pairs)


def test_eval_fglfw_with_embeddings_writes_the_lfw_report(tmp_path, faces_dir):
    from typer.testing import CliRunner

    from facever.cli import app
    from facever.core.embeddings_file import save_embeddings

    items, pair_list = _orl_fglfw(tmp_path, faces_dir)
    paths, emb = identity_embeddings(items)
    save_embeddings(tmp_path / "emb.npz", paths, emb)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval-fglfw", "--pairs", str(pair_list), "--embeddings", str(tmp_path / "emb.npz"),
                                      "--pairs-per-fold", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert report["protocol"] == "fglfw"
    # identity embeddings separate every pair: 100% only if every label was derived right
    assert report["accuracy"]["mean"] == 1.0 and report["auc"] == 1.0
    assert report["pairs"] == {"total": 12, "same": 6, "different": 6, "dropped": 0}
    assert len(report["folds"]) == 3 and report["settings"]["pairs_per_fold"] == 4
    assert (out / "roc.png").stat().st_size > 0
    assert "accuracy" in result.stdout and "100.00%" in result.stdout


def test_eval_fglfw_embeddings_missing_an_image_name_it(tmp_path, faces_dir):
    from typer.testing import CliRunner

    from facever.cli import app
    from facever.core.embeddings_file import save_embeddings

    items, pair_list = _orl_fglfw(tmp_path, faces_dir)
    paths, emb = identity_embeddings(items)
    drop = paths.index("Orl_S2/Orl_S2_0003.jpg")
    save_embeddings(tmp_path / "emb.npz", paths[:drop] + paths[drop + 1:], np.delete(emb, drop, axis=0))
    result = CliRunner().invoke(app, ["eval-fglfw", "--pairs", str(pair_list), "--embeddings", str(tmp_path / "emb.npz"),
                                      "--pairs-per-fold", "4"])
    assert result.exit_code == 2
    assert "Orl_S2/Orl_S2_0003.jpg" in result.output and "error" in result.output


def test_eval_calfw_with_embeddings(tmp_path, faces_dir):
    from typer.testing import CliRunner

    from facever.cli import app
    from facever.core.embeddings_file import save_embeddings

    people = orl_people(faces_dir, 4, 4)
    flat = {}
    for name, photos in people.items():  # CALFW keeps every image in one folder: `Name_0001.jpg`
        for i, _ in enumerate(photos, start=1):
            flat[f"{name}_{i:04d}.jpg"] = name
    rename = dict(zip("ABCD", people))
    rows = [(f"{rename[a[0]]}{a[1:]}", f"{rename[b[0]]}{b[1:]}", t) for a, b, t in _calfw_pairs()]
    pair_list = write_pair_list(tmp_path / "pairs_CALFW.txt", [(a, b) for a, b, _ in rows], [t for *_, t in rows])
    paths, emb = identity_embeddings(flat)
    save_embeddings(tmp_path / "emb.npz", paths, emb)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval-fglfw", "--pairs", str(pair_list), "--protocol", "calfw",
                                      "--embeddings", str(tmp_path / "emb.npz"), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "calfw" and report["accuracy"]["mean"] == 1.0 and len(report["folds"]) == 2
    assert json.loads(result.stdout)["protocol"] == "calfw"


def test_eval_fglfw_needs_one_source(tmp_path):
    from typer.testing import CliRunner

    from facever.cli import app

    pair_list = write_pair_list(tmp_path / "p.txt", FGLFW_PAIRS)
    result = CliRunner().invoke(app, ["eval-fglfw", "--pairs", str(pair_list)])
    assert result.exit_code == 2 and "either --embeddings" in result.output
    result = CliRunner().invoke(app, ["eval-fglfw", "--pairs", str(pair_list), "--model", "m.pt"])
    assert result.exit_code == 2 and "--images" in result.output


def test_eval_fglfw_with_model_embeds_the_images(tmp_path, faces_dir):
    from typer.testing import CliRunner

    from facever.cli import app
    from facever.core.embeddings_file import load_embeddings

    from tests.helpers.benchmark_data import tiny_model
    from tests.helpers.references import hand_verification

    items, pair_list = _orl_fglfw(tmp_path, faces_dir)
    model = tiny_model(tmp_path / "model.pt")
    out = tmp_path / "out"
    args = ["eval-fglfw", "--pairs", str(pair_list), "--pairs-per-fold", "4", "--model", str(model),
            "--images", str(tmp_path / "lfw"), "--device", "cpu", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["pairs"]["total"] == 12 and report["settings"]["model"] == str(model)
    saved = load_embeddings(out / "embeddings.npz")
    protocol = read_fglfw_pairs(pair_list, pairs_per_fold=4)
    assert set(saved.paths) == set(protocol.items()) and saved.dim == 32  # a 16-d model, flip concat by default
    # The report's numbers are those of a brute-force k-fold over numpy cosines of the saved embeddings.
    accuracy, auc = hand_verification(saved, protocol)
    assert report["accuracy"]["mean"] == pytest.approx(accuracy, abs=1e-12)
    assert report["auc"] == pytest.approx(auc, abs=1e-9)

    # a missing image is named before any model runs
    (tmp_path / "lfw" / "Orl_S3" / "Orl_S3_0002.jpg").unlink()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Orl_S3/Orl_S3_0002.jpg" in result.output and "missing" in result.output
