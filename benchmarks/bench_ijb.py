#!/usr/bin/env python
"""IJB-C 1:1 scoring speed from embeddings, at the real size: 469,375 images, 23,124 templates,
15,658,489 template pairs, 512-d features (synthetic data in InsightFace's meta-file layout).

Measured in one run, each stage of `facever eval-ijb --embeddings` (without the plot):
reading the meta files, loading the embeddings file, pooling templates (F1 N0 D0), scoring the
pairs (`pair_scores`: BLAS blocks of first templates, bounded memory), ROC + TAR@FAR both ways;
against a plain per-pair loop (`np.dot` of the two template features, one pair at a time) run on a
sample of pairs and extrapolated to all of them. Peak memory (max RSS) is printed too.

Two pair structures: `enrol x verif` (the first templates from one half, the second from the other,
as IJB-C's 1:1 compares enrolment templates with verification templates: ~12% of that product is
listed) and `uniform` (both templates drawn from all 23k: the worst case for the block products).

Goal (issue 17): the whole scoring under 30 s on 2 CPU cores, in bounded memory.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

from facever.core.embeddings_file import load_embeddings, save_embeddings  # noqa: E402
from facever.protocols.ijb import read_ijb  # noqa: E402
from facever.verification.ijb import (  # noqa: E402
    TestMode,
    ijb_template_features,
    pair_scores,
    score_result,
    template_rows,
)

FULL = dict(images=469_375, templates=23_124, pairs=15_658_489, dim=512)
QUICK = dict(images=20_000, templates=1_000, pairs=200_000, dim=64)


def fixed_width_lines(columns: list[np.ndarray], widths: list[int]) -> bytes:
    """Zero-padded integer columns as text lines, built with array operations (15M lines in seconds)."""
    n = columns[0].size
    width = sum(widths) + len(widths)  # separators and newline
    buf = np.empty((n, width), dtype=np.uint8)
    pos = 0
    for col, w in zip(columns, widths):
        powers = 10 ** np.arange(w - 1, -1, -1, dtype=np.int64)
        buf[:, pos:pos + w] = (col[:, None] // powers % 10 + 48).astype(np.uint8)
        pos += w
        buf[:, pos] = 32
        pos += 1
    buf[:, -1] = 10
    return buf.tobytes()


def make_set(root: Path, size: dict, structure: str, rng) -> None:
    folder = root / "IJBC"
    (folder / "meta").mkdir(parents=True, exist_ok=True)
    n_img, n_tpl, n_pairs = size["images"], size["templates"], size["pairs"]
    # Every template has at least one image; media: 1-8 per template, images spread over them.
    tpl = np.sort(np.r_[np.arange(n_tpl), rng.integers(0, n_tpl, n_img - n_tpl)])
    media = tpl * 10 + rng.integers(0, 8, n_img)
    names = [f"{i + 1}.jpg" for i in range(n_img)]
    tid = (tpl * 7 + 1).astype(np.int64)  # sparse ids, as in the real files
    (folder / "meta" / "ijbc_face_tid_mid.txt").write_text(
        "".join(f"{n} {t} {m}\n" for n, t, m in zip(names, tid.tolist(), media.tolist())))
    half = n_tpl // 2
    if structure == "enrol x verif":
        a, b = rng.integers(0, half, n_pairs), rng.integers(half, n_tpl, n_pairs)
    else:
        a, b = rng.integers(0, n_tpl, n_pairs), rng.integers(0, n_tpl, n_pairs)
    labels = (rng.random(n_pairs) < 19_557 / 15_658_489).astype(np.int64)
    labels[:2] = [1, 0]
    ids = np.unique(tid)
    (folder / "meta" / "ijbc_template_pair_label.txt").write_bytes(
        fixed_width_lines([ids[a], ids[b], labels], [6, 6, 1]))


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main() -> int:
    quick = "--quick" in sys.argv
    size = QUICK if quick else FULL
    rng = np.random.default_rng(0)
    print(describe_machine())
    print(f"IJB-C size: {size['images']} images, {size['templates']} templates, {size['pairs']} pairs, "
          f"{size['dim']}-d; mode F1 N0 D0 (embeddings stored as f(x)+f(mirror x), flip 'sum')")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        names = [f"{i + 1}.jpg" for i in range(size["images"])]
        emb = rng.standard_normal((size["images"], size["dim"]), dtype=np.float32)
        emb_file = save_embeddings(tmp / "emb.npz", names, emb, {"flip": "sum"})
        del emb
        for structure in ("enrol x verif", "uniform"):
            root = tmp / structure.replace(" ", "_")
            make_set(root, size, structure, rng)
            t, cpu = {}, {}

            @contextlib.contextmanager
            def stage(name):
                w0, c0 = time.perf_counter(), time.process_time()
                yield
                t[name], cpu[name] = time.perf_counter() - w0, time.process_time() - c0

            with stage("read meta files"):
                meta = read_ijb(root, "ijbc")
            with stage("load embeddings"):
                embeddings = load_embeddings(emb_file)
            with stage("pool templates"):
                ids, feats = ijb_template_features(meta, embeddings, TestMode())
            with stage("score pairs"):
                r1, r2 = template_rows(ids, meta.pairs.t1), template_rows(ids, meta.pairs.t2)
                scores = pair_scores(feats, r1, r2)
            with stage("ROC + TAR@FAR"):
                result = score_result("ijbc", TestMode(), scores, meta.pairs.labels, n_templates=ids.size,
                                      n_images=len(meta.media))
            total, total_cpu = sum(t.values()), sum(cpu.values())

            sample = min(200_000, scores.size) if not quick else 20_000
            t0, c0 = time.perf_counter(), time.process_time()
            loop = np.empty(sample, dtype=np.float32)
            for i in range(sample):
                loop[i] = np.dot(feats[r1[i]], feats[r2[i]])
            loop_time = (time.perf_counter() - t0) * scores.size / sample
            loop_cpu = (time.process_time() - c0) * scores.size / sample
            assert np.allclose(loop, scores[:sample], atol=1e-5), "the fast scores differ from the loop's"
            print(f"\n[{structure}] pairs {scores.size}, templates {ids.size}; TAR@FAR=1e-4 "
                  f"{100 * result.tar_at_far['conservative']['0.0001']['tar']:.2f}% (random features: meaningless)")
            print(f"  {'stage':<16} {'wall':>8} {'CPU (all threads)':>18}")
            for k, v in t.items():
                print(f"  {k:<16} {v:7.2f}s {cpu[k]:17.2f}s")
            print(f"  {'total':<16} {total:7.2f}s {total_cpu:17.2f}s   goal < 30 s wall: "
                  f"{'met' if total < 30 else 'NOT met'} (load average now {os.getloadavg()[0]:.1f} on "
                  f"{os.cpu_count()} CPUs)")
            print(f"  per-pair loop    {loop_time:7.1f}s {loop_cpu:17.1f}s   (np.dot per pair on {sample} pairs, "
                  f"extrapolated) -> pair scoring {loop_time / t['score pairs']:.0f}x faster (wall), "
                  f"{loop_cpu / cpu['score pairs']:.0f}x (CPU)")
            print(f"  peak RSS so far  {peak_rss_gb():.2f} GB (embeddings file: "
                  f"{size['images'] * size['dim'] * 4 / 1e9:.2f} GB)")
            del meta, embeddings, feats, scores, result
    return 0


if __name__ == "__main__":
    sys.exit(main())
