"""Output paths: a file where a folder goes, outputs over inputs, names escaping --out, writes into data sets."""

from __future__ import annotations

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
