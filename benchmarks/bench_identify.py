#!/usr/bin/env python
"""1:N identify throughput (probes per second) against galleries of 10k, 100k and 1M enrolled templates
(synthetic 512-d unit vectors), top-5 per probe, in one run:

- `numpy` blocks: `facever.verification.search.numpy_top_k` (what `facever identify` runs by default):
  1,024 probes at a time against 65,536 templates at a time, a running top-k;
- `faiss`: FAISS's exact flat inner-product index (`--backend faiss`; needs `facever[faiss]`), index
  built once (build time printed apart);
- a plain numpy loop: one probe at a time, `scores = gallery @ probe`, `argsort`, first k. Run on a
  sample of the probes (every probe costs the same) and reported per probe.

Every method's answers are checked equal (same rows in the same order) on the probes the loop ran.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

from facever.verification.search import FaissIndex, numpy_top_k  # noqa: E402

DIM, K = 512, 5
FULL = [(10_000, 2_000, 200), (100_000, 2_000, 50), (1_000_000, 1_024, 8)]  # templates, probes, loop probes
QUICK = [(2_000, 256, 20), (20_000, 256, 10)]


def unit_rows(rng, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def plain_loop(gallery: np.ndarray, probes: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((probes.shape[0], k), dtype=np.int64)
    for i, p in enumerate(probes):
        scores = gallery @ p
        out[i] = np.argsort(-scores, kind="stable")[:k]
    return out


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def main(argv: list[str]) -> int:
    sizes = QUICK if "--quick" in argv else FULL
    try:
        import faiss  # noqa: F401

        have_faiss = True
    except ImportError:
        have_faiss = False
    print(describe_machine())
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())} at start")
    print(f"{DIM}-d float32 unit templates, top-{K}; probes/s (higher is better)\n")
    head = f"{'templates':>10}  {'numpy blocks':>13}  {'faiss flat':>11}  {'faiss build':>11}  {'plain loop':>11}  " \
           f"{'blocks/loop':>11}  equal"
    print(head)
    rng = np.random.default_rng(0)
    for n, n_probes, n_loop in sizes:
        gallery = unit_rows(rng, n, DIM)
        probes = unit_rows(rng, n_probes, DIM)
        (_, rows), t_np = timed(numpy_top_k, gallery, probes, K)
        loop_rows, t_loop = timed(plain_loop, gallery, probes[:n_loop], K)
        equal = bool(np.array_equal(rows[:n_loop], loop_rows))
        faiss_cell = build_cell = "-"
        if have_faiss:
            index, t_build = timed(FaissIndex, gallery)
            (_, f_rows), t_f = timed(index.search, probes, K)
            equal = equal and bool(np.array_equal(f_rows, rows))
            faiss_cell, build_cell = f"{n_probes / t_f:,.0f}", f"{t_build:.2f}s"
            del index
        np_rate, loop_rate = n_probes / t_np, n_loop / t_loop
        print(f"{n:>10,}  {np_rate:>13,.0f}  {faiss_cell:>11}  {build_cell:>11}  {loop_rate:>11,.1f}  "
              f"{np_rate / loop_rate:>10.0f}x  {'yes' if equal else 'NO'}", flush=True)
        del gallery
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"\npeak memory (max RSS) {peak:.1f} GB" + ("" if have_faiss else "; faiss-cpu not installed"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
