"""Pairs files (LFW pairs.txt, YTF splits.txt, FGLFW lists): strict readers, one-line errors, nothing written."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.bad_input.conftest import NAMES, accepted, lfw_lines, refused

BODY = lfw_lines()

LFW_CASES = {
    # header per-fold counts: a set holding one class only would change the accuracy silently
    "header 1 30": ("1\t30\n" + "\n".join(BODY), r"pairs\.txt:1: header .*at least 2 sets"),
    "header 30 1 (wrong count)": ("30\t1\n" + "\n".join(BODY), r"pairs\.txt:1: header says 30 sets"),
    "header 0 300": ("0\t300\n" + "\n".join(BODY), r":1: header"),
    "one-class set": ("10\t1\n" + "\n".join(["Ann\t1\t2", "Bob\t1\t2"] + BODY[2:]), r":2: set 1 holds 2 same-person"),
    "one-class fold, no header": ("\n".join(["Ann\t1\t2", "Bob\t1\t2"] + BODY[2:]), r"fold 1 of 10 holds only same-person"),
    "same name on a different-person line": ("10\t1\n" + "\n".join(BODY[:1] + ["Ann\t1\tAnn\t2"] + BODY[2:]),
                                             r":3: a different-person line names 'Ann' twice"),
    "1_0 read as ten": ("10\t1\n" + "\n".join(["Ann\t1\t1_0"] + BODY[1:]), r":2: image number '1_0' is not an integer"),
    "unicode digit": ("10\t1\n" + "\n".join(["Ann\t1\t\u0662"] + BODY[1:]), r":2: image number '.' is not an integer"),
    "plus sign": ("10\t1\n" + "\n".join(["Ann\t+1\t2"] + BODY[1:]), r":2: image number '\+1' is not an integer"),
    "image 0": ("10\t1\n" + "\n".join(["Ann\t0\t2"] + BODY[1:]), r":2: image number 0 must be 1 or more"),
    "name ..": ("10\t1\n" + "\n".join(["..\t1\t2"] + BODY[1:]), r":2: name '\.\.' is not a person's name"),
    "name with a slash": ("10\t1\n" + "\n".join(["../etc\t1\t2"] + BODY[1:]), r":2: name '\.\./etc'"),
    "absolute name": ("10\t1\n" + "\n".join(["Ann\t1\t/etc\t1"] + BODY[1:]), r":2: name '/etc'"),
    "image with itself": ("10\t1\n" + "\n".join(["Ann\t2\t2"] + BODY[1:]), r":2: pairs image 2 of 'Ann' with itself"),
    "five fields": ("10\t1\n" + "\n".join(["Ann\t1\t2\t3\t4"] + BODY[1:]), r":2: .*got 5 fields"),
    "two-field line after pairs": ("10\t1\n" + "\n".join(BODY + ["Ann\t1"]), r":22: .*got 2 fields"),
    "count not divisible, no header": ("\n".join(BODY[:-1]), r"19 pairs cannot be split into 10 equal folds"),
    "empty": ("", r"no pairs found"),
    "header only": ("10\t1\n", r"no pairs found"),
}


@pytest.mark.parametrize("case", list(LFW_CASES))
def test_lfw_pairs_refused(work, case):
    text, match = LFW_CASES[case]
    (work / "pairs.txt").write_text(text, encoding="utf-8")
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "emb.npz", "--out", work / "out"], match, work)


def test_lfw_pairs_not_utf8(work):
    (work / "pairs.txt").write_bytes(b"10\t1\n\xff\xfe\x00garbage\n")
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "emb.npz"], r"not a text file", work)


def test_lfw_pairs_is_a_folder(work):
    (work / "pairs_dir").mkdir()
    refused(["eval-lfw", "--pairs", work / "pairs_dir", "-e", work / "emb.npz"], r"pairs_dir: not a regular file", work)


@pytest.mark.timeout(20)
def test_lfw_pairs_fifo_does_not_hang(work):
    os.mkfifo(work / "pairs.fifo")
    refused(["eval-lfw", "--pairs", work / "pairs.fifo", "-e", work / "emb.npz"], r"pairs\.fifo: not a regular file", work)


def test_lfw_pairs_with_bom_accepted(work):
    (work / "pairs.txt").write_text("\ufeff10\t1\n" + "\n".join(BODY), encoding="utf-8")
    result = accepted(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "emb.npz"])
    assert "10-fold" in result.stderr  # the title: into a pipe, stdout holds the tables only


def test_lfw_brackets_in_path_shown_as_is(work):
    folder = work / "[bold]data"
    folder.mkdir()
    refused(["eval-lfw", "--pairs", folder / "p.txt", "-e", work / "emb.npz"], r"\[bold\]data/p\.txt: pairs file not found", work)


def test_lfw_all_images_missing_explains_naming(work):
    from facever.core.embeddings_file import save_embeddings

    save_embeddings(work / "other.npz", ["x/a.jpg", "x/b.jpg"], np.ones((2, 4), np.float32))
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "other.npz"], r"Name/Name_0001", work)


def test_lfw_dropping_leaves_empty_fold(work):
    from facever.core.embeddings_file import load_embeddings, save_embeddings

    emb = load_embeddings(work / "emb.npz")
    keep = [i for i, p in enumerate(emb.paths) if not p.startswith(("Ann/", "Bob/"))]
    save_embeddings(work / "part.npz", [emb.paths[i] for i in keep], emb.embeddings[keep])
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "part.npz", "--allow-missing"],
            r"fold\(s\) 1, 2 have no pairs left", work)


# -- YouTube Faces splits -------------------------------------------------------------------------

HEADER = "split number, pair number, first name, second name, is same:\n"


def _ytf_rows():
    rows = []
    for split in range(1, 11):
        a, b = f"P{split}", f"Q{split}"
        rows += [f"{split}, 1, {a}/0, {a}/1, 1", f"{split}, 2, {a}/0, {b}/0, 0"]
    return rows


@pytest.fixture
def ytf_work(tmp_path):
    from facever.core.embeddings_file import save_embeddings

    rows = _ytf_rows()
    (tmp_path / "splits.txt").write_text(HEADER + "\n".join(rows) + "\n")
    videos = sorted({v for r in rows for v in (r.split(", ")[2], r.split(", ")[3])})
    rng = np.random.default_rng(0)
    save_embeddings(tmp_path / "videos.npz", videos, rng.normal(size=(len(videos), 8)).astype(np.float32))
    return tmp_path, rows, videos


YTF_CASES = {
    "malformed first row taken as header": (lambda rows: "1, 1, P1/0\n" + "\n".join(rows[1:]), r"splits\.txt:1: expected 5"),
    "split 11": (lambda rows: HEADER + "\n".join(rows[:-1] + ["11, 2, P10/0, Q10/0, 0"]), r":21: split '11' is not a split number 1\.\.10"),
    "split 0": (lambda rows: HEADER + "\n".join(["0" + rows[0][1:]] + rows[1:]), r":2: split '0'"),
    "split in unicode digits": (lambda rows: HEADER + "\n".join(["\u0661" + rows[0][1:]] + rows[1:]), r":2: split"),
    "one split only": (lambda rows: HEADER + "\n".join(r for r in rows if r.startswith("1,")), r"all pairs are in one split"),
    "label contradicts names": (lambda rows: HEADER + "\n".join([rows[0][:-1] + "0"] + rows[1:]), r":2: is_same=0"),
    "video escaping": (lambda rows: HEADER + "\n".join(["1, 1, ../0, P1/1, 1"] + rows[1:]), r":2: video '\.\./0'"),
    "repeated pair": (lambda rows: HEADER + "\n".join(rows + [rows[0]]), r"repeats line 2"),
}


@pytest.mark.parametrize("case", list(YTF_CASES))
def test_ytf_splits_refused(ytf_work, case):
    root, rows, _ = ytf_work
    text, match = YTF_CASES[case]
    (root / "splits.txt").write_text(text(rows))
    refused(["eval-ytf", "--splits", root / "splits.txt", "-e", root / "videos.npz", "--out", root / "out"], match, root)


def test_ytf_missing_video_is_named_not_taken_for_frames(ytf_work):
    from facever.core.embeddings_file import load_embeddings, save_embeddings

    root, rows, videos = ytf_work
    emb = load_embeddings(root / "videos.npz")
    keep = [i for i, p in enumerate(emb.paths) if p != "Q5/0"]
    save_embeddings(root / "some.npz", [emb.paths[i] for i in keep], emb.embeddings[keep])
    refused(["eval-ytf", "--splits", root / "splits.txt", "-e", root / "some.npz"], r"no embedding.*--allow-missing", root)
    result = accepted(["eval-ytf", "--splits", root / "splits.txt", "-e", root / "some.npz", "--allow-missing"])
    assert "dropped" in result.stderr


def test_ytf_bom_accepted(ytf_work):
    root, rows, _ = ytf_work
    (root / "splits.txt").write_text("\ufeff" + HEADER + "\n".join(rows), encoding="utf-8")
    assert "10-fold" in accepted(["eval-ytf", "--splits", root / "splits.txt", "-e", root / "videos.npz"]).stderr


# -- FGLFW ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("per_fold", ["0", "7", "-6"])
def test_fglfw_pairs_per_fold_refused(work, per_fold):
    (work / "list.txt").write_text("Ann/Ann_0001.jpg\nAnn/Ann_0002.jpg\n")
    refused(["eval-fglfw", "--pairs", work / "list.txt", "-e", work / "emb.npz", "--pairs-per-fold", per_fold],
            r"pairs per fold must be an even number|--pairs-per-fold", work)


@pytest.mark.parametrize("token", ["\u00b2", "\u0661", "1_0"])
def test_calfw_token_digits_ascii_only(work, token):
    (work / "list.txt").write_text(f"Ann_0001.jpg {token}\nAnn_0002.jpg {token}\n")
    refused(["eval-fglfw", "--pairs", work / "list.txt", "--protocol", "calfw", "-e", work / "emb.npz"],
            r"list\.txt:1: token .* is not a non-negative integer", work)


# -- duplicate and degenerate protocol input: one rule for every reader (protocols.pair_protocol.checked) ---

def test_lfw_fold_copied_ten_times_refused(work):
    """Fold 1 copied into every fold passes every count check; scoring it would train each fold's
    threshold on the very pairs it tests."""
    fold = BODY[:2]
    (work / "pairs.txt").write_text("10\t1\n" + "\n".join(fold * 10) + "\n")
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "emb.npz", "--out", work / "out"],
            r"pairs\.txt:4: repeats the pair of line 2 \(Ann/Ann_0001\.jpg, Ann/Ann_0002\.jpg\): in folds 1 and 2 it "
            r"would train the thresholds on a test pair", work)


def test_lfw_pair_repeated_in_the_other_order_refused(work):
    body = BODY[:3] + ["Bob\t1\tAnn\t1"] + BODY[4:]  # fold 2's different pair is fold 1's, reversed
    (work / "pairs.txt").write_text("10\t1\n" + "\n".join(body) + "\n")
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "emb.npz"],
            r"pairs\.txt:5: repeats the pair of line 3 \(Bob/Bob_0001\.jpg, Ann/Ann_0001\.jpg\): in folds 1 and 2", work)


PATH_HEADER = "# facever pairs: path_a path_b same fold\n"


def _path_list(folds=2, extra=()):
    rows = []
    for k in range(1, folds + 1):
        a, b = NAMES[k - 1], NAMES[k]
        rows += [f"{a}/{a}_0001.jpg\t{a}/{a}_0002.jpg\t1\t{k}", f"{a}/{a}_0001.jpg\t{b}/{b}_0001.jpg\t0\t{k}"]
    return PATH_HEADER + "\n".join([*rows, *extra]) + "\n"


@pytest.mark.parametrize("case, text, match", [
    ("image with itself", _path_list(extra=["Cid/Cid_0001.jpg\tCid/Cid_0001.jpg\t1\t2"]),
     r"pairs\.txt:6: pairs 'Cid/Cid_0001\.jpg' with itself"),
    ("repeated pair", _path_list(extra=["Bob/Bob_0002.jpg\tBob/Bob_0001.jpg\t1\t1"]),
     r"pairs\.txt:6: repeats the pair of line 4 .*in folds 2 and 1 it would train the thresholds on a test pair"),
    ("repeated in its fold", _path_list(extra=["Ann/Ann_0002.jpg\tAnn/Ann_0001.jpg\t1\t1"]),
     r"pairs\.txt:6: repeats the pair of line 2 .*it would count twice"),
    ("all pairs in one fold", _path_list(folds=1),
     r"pairs\.txt: all 2 pairs are in one fold; k-fold evaluation needs at least two"),
])
def test_path_list_degenerate_refused(work, case, text, match):
    (work / "pairs.txt").write_text(text)
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "emb.npz", "--out", work / "out"], match, work)


def test_ytf_same_videos_under_another_pair_number_refused(ytf_work):
    root, rows, _ = ytf_work
    (root / "splits.txt").write_text(HEADER + "\n".join(rows + ["10, 3, P1/1, P1/0, 1"]) + "\n")
    refused(["eval-ytf", "--splits", root / "splits.txt", "-e", root / "videos.npz"],
            r"splits\.txt:22: repeats the pair of line 2 \(P1/1, P1/0\): in folds 1 and 10", root)


def test_fglfw_repeated_pair_refused(work):
    pair = ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Ann/Ann_0001.jpg", "Bob/Bob_0001.jpg"]
    (work / "list.txt").write_text("\n".join(pair * 2) + "\n")
    refused(["eval-fglfw", "--pairs", work / "list.txt", "-e", work / "emb.npz", "--pairs-per-fold", "2"],
            r"list\.txt:5: repeats the pair of line 1 .*in folds 1 and 2", work)
