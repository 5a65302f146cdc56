"""Natural mistakes get one helpful `error:` line and exit code 2, whoever catches them: the command-line
parser (a missing option, a value without its option) or facever itself (arguments swapped, a recipe
typo, a pairs file from another folder)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from facever.cli import app
from facever.core.embeddings_file import save_embeddings

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Usage:" not in result.output and "Error:" not in result.output
    return lines[0]


def test_parser_errors_and_facevers_own_share_one_prefix(tmp_path):
    missing_option = _one_error_line(runner.invoke(app, ["eval-lfw", "-e", str(tmp_path / "x.npz")]))
    assert missing_option == "error: missing option '--pairs' (`facever eval-lfw -h` for help)"
    bad_choice = _one_error_line(runner.invoke(app, ["train", str(tmp_path), "--head", "noisy", "--out", "r"]))
    assert "invalid value for '--head'" in bad_choice and "'noisy-softmax'" in bad_choice
    own = _one_error_line(runner.invoke(app, ["eval-lfw", "--pairs", str(tmp_path / "none.txt"), "-e", "x.npz"]))
    assert own.startswith(f"error: {tmp_path / 'none.txt'}")
    # The real console script too (its exit path is the group's, not the test runner's).
    done = subprocess.run([sys.executable, "-m", "facever", "eval-lfw", "-e", "x.npz"], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "error: missing option '--pairs' (`facever eval-lfw -h` for help)"


def test_a_value_without_its_option_names_the_option():
    line = _one_error_line(runner.invoke(app, ["eval-lfw", "test.npz", "--pairs", "p.txt"]))
    assert "unexpected extra argument" in line and "(test.npz)" in line
    assert "an embeddings file goes after -e/--embeddings: `facever eval-lfw -e test.npz ...`" in line
    # A pairs file given twice is not the fix for it: no hint to an option already given.
    line = _one_error_line(runner.invoke(app, ["eval-lfw", "--pairs", "p.txt", "-e", "x.npz", "other.txt"]))
    assert "(other.txt)" in line and "goes after" not in line


def test_embed_with_model_and_images_swapped_says_so(tmp_path):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "model.pt").write_bytes(b"not read: the order is checked first")
    images = tmp_path / "aligned" / "test" / "p1"
    images.mkdir(parents=True)
    (images / "1.png").write_bytes(b"")
    out = tmp_path / "test.npz"
    line = _one_error_line(runner.invoke(app, ["embed", str(images.parent), str(run), "--out", str(out)]))
    assert line == (f"error: {run} is a model and {images.parent} a folder: the model comes first: "
                    f"`facever embed {run} {images.parent} --out {out}`")
    assert not out.exists()


def test_recipe_typo_gets_did_you_mean(tmp_path):
    line = _one_error_line(runner.invoke(app, ["train", str(tmp_path), "--recipe", "cpu-smal", "--out",
                                               str(tmp_path / "run")]))
    assert "unknown recipe 'cpu-smal'; did you mean 'cpu-small'?" in line


def test_path_list_pairs_from_another_folder_do_not_suggest_ext(tmp_path):
    """A `facever pairs` path list names each image with its extension; --ext does nothing there."""
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("# facever pairs: path_a path_b same fold\n"
                     "s1/1.png\ts1/2.png\t1\t1\ns1/1.png\ts2/1.png\t0\t1\n"
                     "s2/1.png\ts2/2.png\t1\t2\ns1/2.png\ts2/2.png\t0\t2\n")
    emb = tmp_path / "emb.npz"
    save_embeddings(emb, ["s1/1.jpg", "s1/2.jpg", "s2/1.jpg", "s2/2.jpg"], np.eye(4, dtype=np.float32))
    line = _one_error_line(runner.invoke(app, ["eval-lfw", "--pairs", str(pairs), "-e", str(emb)]))
    assert "the embeddings have 's1/1.jpg'" in line and "made from different folders" in line
    assert "--ext" not in line
    # An LFW pairs file read with the wrong extension still gets the --ext hint.
    lfw = tmp_path / "lfw.txt"
    lfw.write_text("2\t1\nAnn\t1\t2\nAnn\t1\tBob\t1\nBob\t1\t2\nAnn\t2\tBob\t2\n")
    save_embeddings(emb, ["Ann/Ann_0001.png", "Ann/Ann_0002.png", "Bob/Bob_0001.png", "Bob/Bob_0002.png"],
                    np.eye(4, dtype=np.float32))
    line = _one_error_line(runner.invoke(app, ["eval-lfw", "--pairs", str(lfw), "-e", str(emb)]))
    assert "is the image extension right (--ext)?" in line
