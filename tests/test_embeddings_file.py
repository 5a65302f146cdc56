"""The embeddings file: round trip, atomic writes, and refusal of bad or unsafe files."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from facever.core.embeddings_file import Embeddings, load_embeddings, save_embeddings
from facever.core.errors import InputFileError


def test_round_trip(tmp_path):
    paths = ["A/A_0001.jpg", "B/B_0001.jpg", "Ünïcode/É_0001.jpg"]
    emb = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    out = save_embeddings(tmp_path / "e.npz", paths, emb, {"model": "m", "flip": "concat"})
    loaded = load_embeddings(out)
    assert loaded.paths == paths
    np.testing.assert_array_equal(loaded.embeddings, emb)
    assert loaded.embeddings.dtype == np.float32
    assert loaded.metadata["model"] == "m" and loaded.metadata["format"] == "facever-embeddings"
    np.testing.assert_array_equal(loaded.rows(["B/B_0001.jpg", "zzz"]), [1, -1])
    # no temporary files left behind
    assert sorted(os.listdir(tmp_path)) == ["e.npz"]


def test_failed_write_keeps_old_file(tmp_path):
    target = tmp_path / "e.npz"
    save_embeddings(target, ["a"], np.ones((1, 2)))
    before = target.read_bytes()
    with pytest.raises(ValueError):
        save_embeddings(target, ["a", "b"], np.ones((1, 2)))
    with pytest.raises(ValueError, match="duplicate"):
        save_embeddings(target, ["a", "a"], np.ones((2, 2)))
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["e.npz"]


def test_bad_files(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        load_embeddings(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputFileError, match="cannot read"):
        load_embeddings(junk)
    np.savez(tmp_path / "nokeys.npz", x=np.ones(3))
    with pytest.raises(InputFileError, match="missing embeddings, paths"):
        load_embeddings(tmp_path / "nokeys.npz")
    np.savez(tmp_path / "empty.npz", paths=np.zeros(0, dtype="<U1"), embeddings=np.zeros((0, 4), np.float32))
    with pytest.raises(InputFileError, match="no embeddings"):
        load_embeddings(tmp_path / "empty.npz")
    np.savez(tmp_path / "mismatch.npz", paths=np.array(["a", "b"]), embeddings=np.zeros((3, 4), np.float32))
    with pytest.raises(InputFileError, match="2 paths but 3 embeddings"):
        load_embeddings(tmp_path / "mismatch.npz")
    np.savez(tmp_path / "dup.npz", paths=np.array(["a", "a"]), embeddings=np.zeros((2, 4), np.float32))
    with pytest.raises(InputFileError, match="duplicate path 'a'"):
        load_embeddings(tmp_path / "dup.npz")


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/facever_pwned_by_npz",))


def test_pickled_objects_are_refused_not_executed(tmp_path):
    marker = "/tmp/facever_pwned_by_npz"
    if os.path.exists(marker):
        os.remove(marker)
    evil = np.empty(1, dtype=object)
    evil[0] = _Boom()
    np.savez(tmp_path / "evil.npz", paths=evil, embeddings=np.zeros((1, 2), np.float32))
    with pytest.raises(InputFileError, match="cannot read embeddings file"):
        load_embeddings(tmp_path / "evil.npz")
    assert not os.path.exists(marker)
    assert pickle  # the payload above would have run on a plain unpickle


def test_embeddings_validation():
    with pytest.raises(ValueError, match="N x D"):
        Embeddings(["a"], np.ones(3))
