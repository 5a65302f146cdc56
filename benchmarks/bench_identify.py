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
The three run in turn, three rounds (`ROUNDS`), and the best rate of each is kept: on a machine shared
with other jobs, interleaving keeps a burst of load from landing on one method only.
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
FULL = [(10_000, 2_000, 200), (100_000, 1_024, 30), (1_000_000, 512, 4)]  # templates, probes, loop probes
QUICK = [(2_000, 256, 20), (20_000, 256, 10)]
ROUNDS = 3


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
    print(f"{DIM}-d float32 unit templates, top-{K}; probes/s (higher is better), best of {ROUNDS} interleaved rounds\n")
    head = f"{'templates':>10}  {'numpy blocks':>13}  {'faiss flat':>11}  {'faiss build':>11}  {'plain loop':>11}  " \
           f"{'blocks/loop':>11}  equal"
    print(head)
    rng = np.random.default_rng(0)
    for n, n_probes, n_loop in sizes:
        gallery = unit_rows(rng, n, DIM)
        probes = unit_rows(rng, n_probes, DIM)
        index, t_build = timed(FaissIndex, gallery) if have_faiss else (None, None)
        best = {"numpy": 0.0, "faiss": 0.0, "loop": 0.0}
        equal = True
        for _ in range(ROUNDS):
            (_, rows), t = timed(numpy_top_k, gallery, probes, K)
            best["numpy"] = max(best["numpy"], n_probes / t)
            loop_rows, t = timed(plain_loop, gallery, probes[:n_loop], K)
            best["loop"] = max(best["loop"], n_loop / t)
            equal = equal and bool(np.array_equal(rows[:n_loop], loop_rows))
            if index is not None:
                (_, f_rows), t = timed(index.search, probes, K)
                best["faiss"] = max(best["faiss"], n_probes / t)
                equal = equal and bool(np.array_equal(f_rows, rows))
        faiss_cell = f"{best['faiss']:,.0f}" if index is not None else "-"
        build_cell = f"{t_build:.2f}s" if index is not None else "-"
        print(f"{n:>10,}  {best['numpy']:>13,.0f}  {faiss_cell:>11}  {build_cell:>11}  {best['loop']:>11,.1f}  "
              f"{best['numpy'] / best['loop']:>10.0f}x  {'yes' if equal else 'NO'}", flush=True)
        del gallery, index
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    print(f"\npeak memory (max RSS) {peak:.1f} GB; load average {', '.join(f'{v:.2f}' for v in os.getloadavg())} "
          "at the end" + ("" if have_faiss else "; faiss-cpu not installed"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
