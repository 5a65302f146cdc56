"""Messages that must say what is wrong, not what a library tripped over later: byte-string paths read as
the text they are, a file where a cache folder goes named as such, values quoted as the user typed them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.bad_input.conftest import accepted, lfw_items, refused, write_images


def _bytes_paths(work, encode):
    from facever.core.embeddings_file import load_embeddings

    emb = load_embeddings(work / "emb.npz")
    np.savez(work / "bytes.npz", paths=np.array([encode(p) for p in emb.paths]), embeddings=emb.embeddings,
             metadata=np.array(json.dumps({"format": "facever-embeddings", "format_version": 1}).encode()))


def test_byte_string_paths_are_the_names_they_spell(work):
    """Written by a tool that stores names as bytes: the same names, so the same scores (not "missing")."""
    _bytes_paths(work, lambda p: p.encode("utf-8"))
    as_text = json.loads(accepted(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "emb.npz", "--json"]).stdout)
    as_bytes = json.loads(accepted(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "bytes.npz", "--json"]).stdout)
    assert as_bytes["accuracy"] == as_text["accuracy"] and as_bytes["auc"] == as_text["auc"]
    assert as_bytes["pairs"]["total"] == 20


def test_byte_string_paths_that_are_not_text(work):
    _bytes_paths(work, lambda p: p.encode("utf-8") + b"\xff")
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "bytes.npz"],
            r"bytes\.npz: `paths` holds bytes that are not UTF-8 text", work)


def test_ytf_cache_that_is_a_file(tmp_path, tiny_model):
    from PIL import Image

    root = tmp_path / "ytf" / "aligned_images_DB"
    rows = []
    for split in range(1, 3):
        for person in (f"P{split}", f"Q{split}"):
            for video in ("0", "1"):
                (root / person / video).mkdir(parents=True)
                Image.fromarray(np.full((32, 24, 3), 100, np.uint8)).save(root / person / video / f"aligned_detect_{video}.1.jpg")
        rows += [f"{split}, 1, P{split}/0, P{split}/1, 1", f"{split}, 2, P{split}/0, Q{split}/0, 0"]
    (tmp_path / "splits.txt").write_text("\n".join(rows) + "\n")
    (tmp_path / "cache").write_text("a file, not a folder")
    refused(["eval-ytf", "--splits", tmp_path / "splits.txt", "--model", tiny_model, "--videos", tmp_path / "ytf",
             "--cache", tmp_path / "cache", "--device", "cpu"],
            r"cache: exists and is not a folder; give a folder as the cache folder", tmp_path)


def test_train_cache_dir_that_is_a_file(tmp_path):
    """Named with what was expected (was: "[Errno 17] File exists"), before the run folder is written."""
    write_images(tmp_path / "faces", names=["Ann", "Bob", "Cid"], numbers=(1, 2, 3))
    (tmp_path / "cachefile").write_text("mine")
    refused(["train", tmp_path / "faces", "--out", tmp_path / "run", "--cache", "memmap", "--cache-dir",
             tmp_path / "cachefile", "--recipe", "cpu-small", "--device", "cpu"],
            r"cachefile: exists and is not a folder; give a folder as the cache folder", tmp_path)
