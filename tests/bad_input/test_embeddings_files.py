"""Embeddings files (.npz): bad values and bad structure are refused with one line; nothing written."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.bad_input.conftest import lfw_items, refused


def _spoil_rows(work, fn):
    from facever.core.embeddings_file import load_embeddings

    emb = load_embeddings(work / "emb.npz")
    x = emb.embeddings.copy()
    fn(x)
    # Written with numpy directly: facever itself refuses to write non-finite embeddings.
    np.savez(work / "bad.npz", paths=np.array(emb.paths), embeddings=x,
             metadata=np.array(json.dumps({"format": "facever-embeddings", "format_version": 1})))


VALUE_CASES = {
    "NaN row": (lambda x: x.__setitem__(3, np.nan), r"1 embeddings contain NaN"),
    "inf value": (lambda x: x.__setitem__((0, 0), np.inf), r"1 embeddings contain NaN, infinite"),
    "1e-22 row (not zero)": (lambda x: x.__setitem__(2, 1e-22), r"1 embeddings are too small to score in float32"),
    "zero row": (lambda x: x.__setitem__(2, 0.0), r"1 embeddings are all zeros"),
}


@pytest.mark.parametrize("case", list(VALUE_CASES))
def test_bad_values_refused(work, case):
    fn, match = VALUE_CASES[case]
    _spoil_rows(work, fn)
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "bad.npz", "--out", work / "out"], match, work)


def test_identical_embeddings_with_subtract_mean(work):
    _spoil_rows(work, lambda x: x.__setitem__(slice(None), 1.0))
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "bad.npz", "--subtract-mean", "--out", work / "o"],
            r"equal the mean .*identical embeddings", work)


def _npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


ITEMS = lfw_items()
E = np.ones((len(ITEMS), 4), np.float32)
STRUCT_CASES = {
    "not a zip": (lambda p: p.write_text("paths,embeddings\n"), r"bad\.npz: cannot read embeddings file"),
    "truncated": (lambda p: p.write_bytes((p.parent / "emb.npz").read_bytes()[:300]), r"bad\.npz: cannot read"),
    "object array (pickle)": (lambda p: _npz(p, paths=np.array(ITEMS, dtype=object), embeddings=E), r"bad\.npz: cannot read"),
    "no embeddings key": (lambda p: _npz(p, paths=np.array(ITEMS)), r"missing embeddings"),
    "1-D embeddings": (lambda p: _npz(p, paths=np.array(ITEMS), embeddings=np.ones(len(ITEMS), np.float32)), r"must be N x D"),
    "integer embeddings": (lambda p: _npz(p, paths=np.array(ITEMS), embeddings=np.ones((len(ITEMS), 4), np.int32)),
                           r"must be floating point"),
    "count mismatch": (lambda p: _npz(p, paths=np.array(ITEMS[:-1]), embeddings=E), r"\d+ paths but \d+ embeddings"),
    "duplicate path": (lambda p: _npz(p, paths=np.array([ITEMS[0]] + ITEMS[:-1]), embeddings=E), r"duplicate path"),
    "empty": (lambda p: _npz(p, paths=np.zeros(0, "<U1"), embeddings=np.zeros((0, 4), np.float32)), r"holds no embeddings"),
    "metadata not an object": (lambda p: _npz(p, paths=np.array(ITEMS), embeddings=E, metadata=np.array("[1]")),
                               r"metadata` is not a JSON object"),
    "format version a string": (lambda p: _npz(p, paths=np.array(ITEMS), embeddings=E,
                                               metadata=np.array('{"format_version": "9"}')), r"'9' is not a version number"),
    "format version newer": (lambda p: _npz(p, paths=np.array(ITEMS), embeddings=E,
                                            metadata=np.array('{"format_version": 9}')), r"format_version 9 is newer"),
}


@pytest.mark.parametrize("case", list(STRUCT_CASES))
def test_bad_structure_refused(work, case):
    make, match = STRUCT_CASES[case]
    make(work / "bad.npz")
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "bad.npz", "--out", work / "out"], match, work)


def test_missing_file(work):
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "none.npz"], r"none\.npz: embeddings file not found", work)


@pytest.mark.timeout(20)
def test_fifo_does_not_hang(work):
    os.mkfifo(work / "emb.fifo")
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "emb.fifo"], r"emb\.fifo: .*not a regular file", work)


def test_missing_image_named(work):
    from facever.core.embeddings_file import load_embeddings, save_embeddings

    emb = load_embeddings(work / "emb.npz")
    save_embeddings(work / "part.npz", emb.paths[1:], emb.embeddings[1:])
    refused(["eval-lfw", "--pairs", work / "pairs.txt", "-e", work / "part.npz", "--out", work / "out"],
            rf"need images with no embedding .*{emb.paths[0]}", work)


def test_ensemble_of_bad_values_refused(work):
    _spoil_rows(work, lambda x: x.__setitem__(0, np.nan))
    refused(["ensemble", work / "emb.npz", work / "bad.npz", "-p", "lfw", "--pairs", work / "pairs.txt", "--out", work / "o"],
            r"NaN", work)
