"""Output paths: a file where a folder goes, outputs over inputs, names escaping --out, writes into data sets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.bad_input.conftest import lfw_lines, refused, snapshot

EVAL = ["eval-lfw", "--pairs", "{w}/pairs.txt", "-e", "{w}/emb.npz"]
OUT_IS_A_FILE = {
    "eval-lfw": EVAL,
    "ensemble": ["ensemble", "{w}/emb.npz", "{w}/emb.npz", "-p", "lfw", "--pairs", "{w}/pairs.txt", "--names", "a,b"],
    "compare": ["compare", "{w}/run"],
    "train": ["train", "{w}/faces", "--device", "cpu"],
    "eval-fglfw": ["eval-fglfw", "--pairs", "{w}/list.txt", "-e", "{w}/emb.npz"],
    "eval-ytf": ["eval-ytf", "--splits", "{w}/splits.txt", "-e", "{w}/emb.npz"],
    "eval-bin": ["eval-bin", "{w}/set.bin", "-e", "{w}/emb.npz"],
    "demo": ["demo", "--quick", "--device", "cpu"],
}


@pytest.mark.parametrize("command", list(OUT_IS_A_FILE))
@pytest.mark.parametrize("where", ["file", "under a file"])
def test_out_is_a_file(work, command, where):
    (work / "taken").write_text("precious")
    (work / "run").mkdir()
    (work / "run" / "config.toml").write_text('arch = "sphere20"\n')
    out = work / "taken" if where == "file" else work / "taken" / "sub"
    args = [a.format(w=work) for a in OUT_IS_A_FILE[command]] + ["--out", str(out)]
    refused(args, r"taken(/sub)?: (exists and is not a folder|cannot write there)", work)
    assert (work / "taken").read_text() == "precious"


def test_embed_out_is_a_folder(work, tiny_model):
    (work / "imgs").mkdir()
    (work / "outdir").mkdir()
    refused(["embed", tiny_model, work / "imgs", "--out", work / "outdir"], r"outdir: is a folder", work)


def test_ensemble_save_embeddings_over_an_input(work):
    import shutil

    shutil.copy(work / "emb.npz", work / "emb2.npz")
    refused(["ensemble", work / "emb.npz", work / "emb2.npz", "-p", "lfw", "--pairs", work / "pairs.txt",
             "--save-embeddings", work / "emb2.npz"], r"emb2\.npz: is also an input", work)


@pytest.mark.parametrize("names", ["../../X,b", "a,../b", "a,.hidden", "a,/abs"])
def test_ensemble_names_escaping_out(work, names):
    parent = work.parent
    before = snapshot(parent)
    refused(["ensemble", work / "emb.npz", work / "emb.npz", "-p", "lfw", "--pairs", work / "pairs.txt",
             "--names", names, "--out", work / "ens"], r"must be a plain name", work)
    assert snapshot(parent) == before


def test_export_over_its_model(tmp_path, tiny_model):
    import shutil

    shutil.copy(tiny_model, tmp_path / "model.pt")
    refused(["export", tmp_path / "model.pt", "--out", tmp_path / "model.pt", "--format", "torchscript"],
            r"model\.pt: is also an input", tmp_path)


def _repro_inputs(root):
    (root / "casia" / "Ann").mkdir(parents=True)
    (root / "lfw").mkdir()
    (root / "lfw" / "pairs.txt").write_text("10\t1\n" + "\n".join(lfw_lines()) + "\n")
    (root / "ytf").mkdir()
    rows = [f"{s}, 1, P{s}/0, P{s}/1, 1\n{s}, 2, P{s}/0, Q{s}/0, 0" for s in range(1, 11)]
    (root / "ytf" / "splits.txt").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("inside", ["casia", "casia/Ann", "lfw", "ytf"])
def test_reproduce_out_inside_an_input(tmp_path, inside):
    _repro_inputs(tmp_path)
    refused(["reproduce", "--casia", tmp_path / "casia", "--lfw", tmp_path / "lfw", "--ytf", tmp_path / "ytf",
             "--out", tmp_path / inside / "repro"], r"repro: inside the input", tmp_path)


def test_reproduce_missing_ytf_layout_fails_before_any_work(tmp_path):
    _repro_inputs(tmp_path)
    refused(["reproduce", "--casia", tmp_path / "casia", "--lfw", tmp_path / "lfw", "--ytf", tmp_path / "ytf",
             "--out", tmp_path / "repro"], r"ytf: no aligned_images_DB/ or frame_images_DB/ folder", tmp_path)


def test_fetch_force_failure_keeps_the_verified_file(tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "pairs.txt").write_text("the verified file")
    refused(["data", "fetch", "lfw-pairs", "--dest", dest, "--force", "--url", f"file://{tmp_path}/nowhere.txt",
             "--retries", "0"], r"cannot read file://", tmp_path)
    assert (dest / "pairs.txt").read_text() == "the verified file"


def test_fetch_force_wrong_digest_keeps_the_verified_file(tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "pairs.txt").write_text("the verified file")
    (tmp_path / "other.txt").write_text("another file")
    refused(["data", "fetch", "lfw-pairs", "--dest", dest, "--force", "--url", f"file://{tmp_path}/other.txt",
             "--retries", "0"], r"sha256", tmp_path)
    assert (dest / "pairs.txt").read_text() == "the verified file"


# -- names from data files never leave their folder (core.paths) ---------------------------------------

def _ijb(root, *, tid_names=("1.jpg", "2.jpg"), pts_names=("1.jpg", "2.jpg")):
    """A minimal IJB-C layout: two images in two templates, one pair, landmarks for each."""
    from PIL import Image

    folder = root / "IJBC"
    (folder / "loose_crop").mkdir(parents=True)
    (folder / "meta").mkdir()
    for name in ("1.jpg", "2.jpg"):
        Image.fromarray(np.full((60, 50, 3), 128, np.uint8)).save(folder / "loose_crop" / name)
    (folder / "meta" / "ijbc_face_tid_mid.txt").write_text("".join(f"{n} {t} {t}\n" for t, n in enumerate(tid_names, 1)))
    (folder / "meta" / "ijbc_template_pair_label.txt").write_text("1 2 0\n")
    points = "18 25 32 25 25 33 20 42 30 42"
    (folder / "meta" / "ijbc_name_5pts_score.txt").write_text("".join(f"{n} {points} 0.9\n" for n in pts_names))
    return folder


@pytest.mark.parametrize("name, match", [
    ("../victim.jpg", r"ijbc_face_tid_mid\.txt:2: image name '\.\./victim\.jpg' leaves its folder"),
    ("/tmp/victim.jpg", r"ijbc_face_tid_mid\.txt:2: image name '/tmp/victim\.jpg' is an absolute path"),
])
def test_ijb_image_names_leaving_loose_crop_refused(tmp_path, tiny_model, name, match):
    from PIL import Image

    _ijb(tmp_path, tid_names=("1.jpg", name))
    Image.fromarray(np.zeros((60, 50, 3), np.uint8)).save(tmp_path / "IJBC" / "victim.jpg")  # a user's photo
    refused(["eval-ijb", tmp_path, "--model", tiny_model, "--out", tmp_path / "out", "--device", "cpu"], match, tmp_path)


def test_ijb_landmark_names_leaving_their_folder_refused(tmp_path, tiny_model):
    _ijb(tmp_path, pts_names=("1.jpg", "2.jpg", "../../x.jpg"))
    refused(["eval-ijb", tmp_path, "--model", tiny_model, "--out", tmp_path / "out", "--device", "cpu"],
            r"ijbc_name_5pts_score\.txt:3: image name '\.\./\.\./x\.jpg' leaves its folder", tmp_path)


def test_crops_are_never_written_outside_their_folder(tmp_path):
    """Defence in depth behind the readers: the crop writer itself refuses a name that leaves its folder."""
    from facever.core.errors import FaceverError
    from facever.data_prep.landmark_crops import crop_from_landmarks

    _ijb(tmp_path)
    points = np.array([[18, 25], [32, 25], [25, 33], [20, 42], [30, 42]], np.float64)
    for name in ("../escaped.jpg", "/tmp/escaped.jpg", "a/./b.jpg"):
        with pytest.raises(FaceverError, match="names must stay inside their folder"):
            crop_from_landmarks(tmp_path / "IJBC" / "loose_crop", [name], points[None], tmp_path / "crops", (28, 24))
    assert not (tmp_path / "escaped.jpg").exists() and not (tmp_path / "crops").exists()


EVERY_READER = {
    # reader: (file name, content with one name leaving the folder on line 2, extra args, expected message)
    "lfw pairs": ("pairs.txt", "10\t1\nAnn\t1\t2\n../Ann\t1\tBob\t1\n", ["eval-lfw", "--pairs"],
                  r"pairs\.txt:3: name '\.\./Ann' is not a person's name \(it leaves its folder"),
    "path-list pairs": ("pairs.txt", "# facever pairs: path_a path_b same fold\nA/1.jpg\tA/2.jpg\t1\t1\n"
                        "A/1.jpg\t../B/1.jpg\t0\t1\n", ["eval-lfw", "--pairs"],
                        r"pairs\.txt:3: '\.\./B/1\.jpg' is not a path inside the images folder \(it leaves its folder"),
    "fglfw list": ("list.txt", "A/A_0001.jpg\n/B/B_0001.jpg\n", ["eval-fglfw", "--pairs"],
                   r"list\.txt:2: image path '/B/B_0001\.jpg' must be relative.*is an absolute path"),
    "calfw list": ("list.txt", "A_0001.jpg 1\n~A_0002.jpg 1\n", ["eval-fglfw", "--protocol", "calfw", "--pairs"],
                   r"list\.txt:2: image path '~A_0002\.jpg' .*starts with ~"),
    "ytf splits": ("splits.txt", "1, 1, P1/0, P1/1, 1\n1, 2, P1/0, ../Q1, 0\n", ["eval-ytf", "--splits"],
                   r"splits\.txt:2: video '\.\./Q1' is not of the form Name/video \(it leaves its folder"),
}


@pytest.mark.parametrize("reader", list(EVERY_READER))
def test_every_reader_refuses_names_leaving_their_folder(work, reader):
    name, text, args, match = EVERY_READER[reader]
    (work / name).write_text(text)
    refused([*args, work / name, "-e", work / "emb.npz", "--out", work / "out"], match, work)


# -- outputs never alias inputs ---------------------------------------------------------------------

@pytest.fixture
def photos(tmp_path):
    from tests.bad_input.conftest import write_images

    write_images(tmp_path / "imgs", names=["Ann", "Bob"])
    return tmp_path


def test_embed_out_naming_its_model(photos, tiny_model):
    import shutil

    shutil.copy(tiny_model, photos / "model.pt")
    refused(["embed", photos / "model.pt", photos / "imgs", "--out", photos / "model.pt", "--device", "cpu"],
            r"model\.pt: is also an input", photos)


def test_embed_out_naming_its_run_folders_model(photos, tiny_model):
    import shutil

    (photos / "run").mkdir()
    shutil.copy(tiny_model, photos / "run" / "model.pt")
    refused(["embed", photos / "run", photos / "imgs", "--out", photos / "run" / "model.pt", "--device", "cpu"],
            r"model\.pt: is also an input", photos)


@pytest.mark.parametrize("how", ["the image", "a hard link to it", "a symbolic link to it"])
def test_embed_out_naming_an_input_image(photos, tiny_model, how):
    import os

    image = photos / "imgs" / "Ann" / "Ann_0001.jpg"
    out = image
    if how != "the image":
        out = photos / "out.npz"
        (os.link if how.startswith("a hard") else os.symlink)(image, out)
    refused(["embed", tiny_model, photos / "imgs", "--out", out, "--device", "cpu", "--workers", "0"],
            r"is also an input .*Ann_0001\.jpg", photos)


def test_embed_out_naming_its_image_list(photos, tiny_model):
    (photos / "list.txt").write_text("imgs/Ann/Ann_0001.jpg\n")
    refused(["embed", tiny_model, photos / "list.txt", "--out", photos / "list.txt", "--device", "cpu"],
            r"list\.txt: is also an input", photos)


def test_pairs_out_naming_an_image_of_its_folder(photos):
    from tests.bad_input.conftest import write_images

    write_images(photos / "imgs", names=["Ann", "Bob", "Cid"], numbers=(1, 2, 3))
    refused(["pairs", photos / "imgs", "--out", photos / "imgs" / "Bob" / "Bob_0002.jpg", "--folds", "2",
             "--per-fold", "1"], r"Bob_0002\.jpg: is also an input", photos)


# -- folders of the user's files are never written into (core.output_folders) ----------------------

def test_align_with_its_folders_swapped(photos):
    crops = photos / "crops"
    crops.mkdir()
    (crops / "alignment.json").write_text('{"format": "facever-alignment"}')
    (crops / "Ann").mkdir()
    (crops / "Ann" / "Ann_0001.jpg").write_bytes((photos / "imgs" / "Ann" / "Ann_0001.jpg").read_bytes())
    refused(["align", crops, photos / "imgs", "--device", "cpu"],
            r"imgs: holds files facever did not write \(Ann, Bob\).*new or empty folder", photos)


def test_align_src_inside_dst_names_the_real_cause(photos):
    refused(["align", photos / "imgs" / "Ann", photos / "imgs", "--device", "cpu"],
            r"imgs/Ann: the input is inside the output folder .*imgs", photos)


@pytest.mark.parametrize("command", ["eval-lfw", "compare", "ensemble"])
def test_out_into_a_folder_of_user_files(work, command):
    (work / "mine").mkdir()
    (work / "mine" / "notes.txt").write_text("the user's")
    (work / "run").mkdir()
    (work / "run" / "config.toml").write_text('arch = "sphere20"\n')
    args = {"eval-lfw": EVAL, "compare": ["compare", "{w}/run"],
            "ensemble": ["ensemble", "{w}/emb.npz", "{w}/emb.npz", "-p", "lfw", "--pairs", "{w}/pairs.txt", "--names", "a,b"]}
    refused([a.format(w=work) for a in args[command]] + ["--out", work / "mine"],
            r"mine: holds files facever did not write \(notes\.txt\)", work)


def test_out_into_facever_output_of_another_kind(work):
    (work / "aligned").mkdir()
    (work / "aligned" / ".facever-output").write_text('{"format": "facever-output", "kind": "align"}')
    refused([a.format(w=work) for a in EVAL] + ["--out", work / "aligned"],
            r"aligned: holds facever's align output, not evaluation output", work)


def test_out_into_its_own_output_again_and_into_an_older_one(work):
    from tests.bad_input.conftest import accepted

    args = [a.format(w=work) for a in EVAL]
    accepted(args + ["--out", work / "res"])
    accepted(args + ["--out", work / "res"])  # a rerun replaces its own report
    assert json.loads((work / "res" / ".facever-output").read_text())["kind"] == "evaluation"
    (work / "old").mkdir()
    (work / "old" / "report.json").write_text("{}")  # written before facever marked its folders
    accepted(args + ["--out", work / "old"])


def test_failed_run_into_an_empty_folder_leaves_it_empty(work):
    (work / "empty").mkdir()
    (work / "pairs.txt").write_text("garbage\n")
    refused([a.format(w=work) for a in EVAL] + ["--out", work / "empty"], r"pairs\.txt:1", work)
    assert list((work / "empty").iterdir()) == []
