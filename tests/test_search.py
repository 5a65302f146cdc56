"""1:N search (verification/search.py): the blocked top-k against a full sort, ties by row, FAISS's exact
index equal to numpy's (skipped cleanly without faiss-cpu), and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from facever.verification import search


def _unit(rng, n, d=32):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute(gallery, probes, k):
    """Every score, then a full stable sort per probe (score desc, row asc)."""
    s = probes @ gallery.T
    rows, scores = [], []
    for i in range(s.shape[0]):
        order = sorted(range(s.shape[1]), key=lambda j: (-s[i, j], j))[:k]
        rows.append(order)
        scores.append(s[i, order])
    return np.array(scores, dtype=np.float32), np.array(rows)


@pytest.mark.parametrize("k", [1, 3, 7])
@pytest.mark.parametrize("gallery_block", [40, 97, 400])  # below and above the candidate bound's 64 chunks
@pytest.mark.parametrize("ties", [False, True])
def test_blocked_search_equals_a_full_sort(k, gallery_block, ties):
    rng = np.random.default_rng(k)
    gallery, probes = _unit(rng, 1000), _unit(rng, 150)
    if ties:  # small integers: every product exact whatever the summation order, so scores tie exactly
        gallery = rng.integers(0, 3, (1000, 32)).astype(np.float32)
        probes = rng.integers(0, 3, (150, 32)).astype(np.float32)
    s, r = search.numpy_top_k(gallery, probes, k, probe_block=64, gallery_block=gallery_block)
    ws, wr = brute(gallery, probes, k)
    np.testing.assert_array_equal(r, wr)
    np.testing.assert_allclose(s, ws, atol=1e-6)


def test_ties_go_to_the_lower_row_across_blocks():
    # rows 2, 5, 9 are the same template: a probe equal to it scores 1.0 three times
    rng = np.random.default_rng(1)
    gallery = _unit(rng, 12, d=8)
    gallery[5] = gallery[9] = gallery[2]
    probes = gallery[[2]]
    s, r = search.numpy_top_k(gallery, probes, 2, gallery_block=4)
    assert r.tolist() == [[2, 5]]
    assert s[0, 0] == s[0, 1]


def test_k_larger_than_the_gallery_lists_everyone():
    rng = np.random.default_rng(2)
    gallery, probes = _unit(rng, 3), _unit(rng, 2)
    s, r = search.numpy_top_k(gallery, probes, 10)
    assert s.shape == (2, 3) and sorted(r[0].tolist()) == [0, 1, 2]


def test_empty_gallery_and_bad_shapes_are_refused():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="the gallery is empty"):
        search.numpy_top_k(np.zeros((0, 8), np.float32), _unit(rng, 2, 8), 1)
    with pytest.raises(ValueError, match="G x D gallery and P x D probes"):
        search.numpy_top_k(_unit(rng, 4, 8), _unit(rng, 2, 6), 1)
    with pytest.raises(ValueError, match="unknown search backend"):
        search.top_k(_unit(rng, 4, 8), _unit(rng, 2, 8), 1, backend="annoy")


def test_faiss_exact_index_gives_the_numpy_results():
    pytest.importorskip("faiss", reason="faiss-cpu is an optional extra (pip install 'facever[faiss]')")
    rng = np.random.default_rng(4)
    gallery, probes = _unit(rng, 5000, d=64), _unit(rng, 300, d=64)
    ns, nr = search.top_k(gallery, probes, 5, backend="numpy")
    fs, fr = search.top_k(gallery, probes, 5, backend="faiss")
    np.testing.assert_array_equal(fr, nr)
    np.testing.assert_allclose(fs, ns, atol=1e-5)


def test_faiss_missing_says_how_to_install(monkeypatch):
    import builtins

    from facever.core.errors import FaceverError

    real = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("no faiss")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_faiss)
    with pytest.raises(FaceverError, match=r"pip install 'facever\[faiss\]'"):
        search.top_k(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), 1, backend="faiss")


def test_open_set_bound_is_the_union_bound():
    assert search.open_set_fpir_bound(1e-4, 100) == pytest.approx(1e-2)
    assert search.open_set_fpir_bound(1e-3, 5000) == 1.0
