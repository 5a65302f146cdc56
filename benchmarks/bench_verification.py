#!/usr/bin/env python
"""Verification engine speed: 6000 pairs of 512-d embeddings (LFW's size), full report.

Compares, in the same run:
- facever's engine (`evaluate_protocol`: scores, exact 10-fold thresholds, ROC, AUC, EER, TAR@FAR,
  facenet's VAL@FAR), from the embeddings;
- the straightforward facenet-style loop (davidsandberg/facenet `calculate_roc`: distances, then for
  each of 10 folds 400 thresholds, each evaluated with numpy over the training pairs);
- `facever eval-lfw` as a whole process (start-up, reading files, report.json + roc.png).
Goals (foundation issue): engine < 10 ms, >= 20x the loop, whole process < 1.5 s.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402

from facever.protocols.pair_protocol import PairProtocol  # noqa: E402
from facever.core.embeddings_file import Embeddings, save_embeddings  # noqa: E402
from facever.verification.evaluate import evaluate_protocol  # noqa: E402


def facenet_loop(emb1, emb2, actual_issame, nrof_folds=10):
    """facenet's calculate_roc, as written there: per fold, per threshold, tpr/fpr/accuracy."""
    thresholds = np.arange(0, 4, 0.01)
    diff = np.subtract(emb1, emb2)
    dist = np.sum(np.square(diff), 1)
    indices = np.arange(len(actual_issame))
    tprs = np.zeros((nrof_folds, len(thresholds)))
    fprs = np.zeros((nrof_folds, len(thresholds)))
    accuracy = np.zeros(nrof_folds)

    def calc(threshold, d, issame):
        predict = np.less(d, threshold)
        tp = np.sum(np.logical_and(predict, issame))
        fp = np.sum(np.logical_and(predict, np.logical_not(issame)))
        tn = np.sum(np.logical_and(np.logical_not(predict), np.logical_not(issame)))
        fn = np.sum(np.logical_and(np.logical_not(predict), issame))
        tpr = 0 if (tp + fn == 0) else float(tp) / float(tp + fn)
        fpr = 0 if (fp + tn == 0) else float(fp) / float(fp + tn)
        return tpr, fpr, float(tp + tn) / d.size

    for fold_idx, test_set in enumerate(np.array_split(indices, nrof_folds)):
        train_set = np.setdiff1d(indices, test_set)
        acc_train = np.zeros(len(thresholds))
        for i, t in enumerate(thresholds):
            _, _, acc_train[i] = calc(t, dist[train_set], actual_issame[train_set])
        best = np.argmax(acc_train)
        for i, t in enumerate(thresholds):
            tprs[fold_idx, i], fprs[fold_idx, i], _ = calc(t, dist[test_set], actual_issame[test_set])
        _, _, accuracy[fold_idx] = calc(thresholds[best], dist[test_set], actual_issame[test_set])
    return np.mean(tprs, 0), np.mean(fprs, 0), accuracy


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> int:
    quick = "--quick" in sys.argv
    n_pairs, dim, n_people = (600, 64, 100) if quick else (6000, 512, 1680)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(n_people, dim))
    paths, rows = [], []
    for p in range(n_people):
        for k in range(4):
            paths.append(f"P{p:04d}/P{p:04d}_{k + 1:04d}.jpg")
            rows.append(centres[p] + 1.5 * rng.normal(size=dim))
    emb = Embeddings(paths, np.array(rows, dtype=np.float32))
    first, second, labels = [], [], []
    for i in range(n_pairs):
        a = int(rng.integers(n_people))
        b = a if i % 2 == 0 else (a + 1 + int(rng.integers(n_people - 1))) % n_people
        k1, k2 = rng.choice(4, 2, replace=False)
        first.append(paths[4 * a + k1])
        second.append(paths[4 * b + k2])
        labels.append(a == b)
    protocol = PairProtocol("lfw", first, second, np.array(labels), np.repeat(np.arange(10), n_pairs // 10))

    print(f"machine: {describe_machine()}")
    print(f"input: {n_pairs} pairs of {dim}-d float32 embeddings ({len(paths)} images), 10 folds")
    for _ in range(5):  # warm caches and the allocator
        evaluate_protocol(protocol, emb)
    engine = median_time(lambda: evaluate_protocol(protocol, emb), 3 if quick else 50)
    grid = median_time(lambda: evaluate_protocol(protocol, emb, thresholds="grid"), 3 if quick else 7)
    idx = emb.index()
    e1 = emb.embeddings[[idx[p] for p in first]]
    e2 = emb.embeddings[[idx[p] for p in second]]
    e1 = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = e2 / np.linalg.norm(e2, axis=1, keepdims=True)
    loop = median_time(lambda: facenet_loop(e1, e2, protocol.labels), 1 if quick else 3)
    print(f"facever engine, exact thresholds, full report : {1000 * engine:8.2f} ms   (goal < 10 ms)")
    print(f"facever engine, facenet grid, full report     : {1000 * grid:8.2f} ms")
    print(f"facenet-style loop (400 thresholds x 10 folds): {1000 * loop:8.2f} ms")
    print(f"speed-up of the engine over the loop          : {loop / engine:8.1f} x   (goal >= 20x)")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pairs = tmp / "pairs.txt"
        # A pairs.txt in LFW's own format for the same pairs.
        lines = ["10\t%d" % (n_pairs // 20)]
        order = np.argsort(~protocol.labels.reshape(10, -1), axis=1, kind="stable")
        new_first, new_second = [], []
        for f in range(10):
            for j in order[f]:
                i = f * (n_pairs // 10) + j
                a, b = first[i], second[i]
                na, ka = a.split("/")[0], int(a[-8:-4])
                nb, kb = b.split("/")[0], int(b[-8:-4])
                lines.append(f"{na}\t{ka}\t{kb}" if na == nb else f"{na}\t{ka}\t{nb}\t{kb}")
        pairs.write_text("\n".join(lines) + "\n")
        npz = save_embeddings(tmp / "emb.npz", paths, emb.embeddings)
        cmd = [str(Path(sys.executable).parent / "facever"), "eval-lfw", "--pairs", str(pairs), "-e", str(npz)]
        subprocess.run(cmd, capture_output=True, check=True)  # warm the page cache
        whole = median_time(lambda: subprocess.run(cmd, capture_output=True, check=True), 3)
        whole_out = median_time(lambda: subprocess.run(cmd + ["--out", str(tmp / "o")], capture_output=True,
                                                       check=True), 3)
    print(f"`facever eval-lfw` whole process (table)      : {whole:8.2f} s    (goal < 1.5 s)")
    print(f"`facever eval-lfw --out` (+ report.json, roc) : {whole_out:8.2f} s")
    sklearn_instead(e1, e2, protocol.labels, engine, whole, quick)
    return 0


def sklearn_instead(e1, e2, labels, engine: float, whole: float, quick: bool) -> None:
    """What the engine would cost with scikit-learn's roc_curve + auc in place of verification/roc.py
    (why scikit-learn is a test dependency only). Skipped when scikit-learn is not installed."""
    try:
        from sklearn.metrics import auc as sk_auc, roc_curve as sk_roc_curve
    except ImportError:
        print("scikit-learn not installed: its comparison skipped")
        return
    from facever.verification import roc

    scores = np.sum(e1 * e2, axis=1)
    repeats = 3 if quick else 50
    ours = median_time(lambda: roc.auc(*roc.roc_curve(scores, labels)[:2]), repeats)
    theirs = median_time(lambda: sk_auc(*sk_roc_curve(labels, scores)[:2]), repeats)
    code = "import time; t = time.perf_counter(); import sklearn.metrics; print(time.perf_counter() - t)"
    imports = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
               for _ in range(3)]
    print(f"ROC + AUC: facever roc.py {1000 * ours:.2f} ms, scikit-learn {1000 * theirs:.2f} ms")
    print(f"engine with scikit-learn's ROC instead        : {1000 * (engine - ours + theirs):8.2f} ms   (goal < 10 ms)")
    print(f"`import sklearn.metrics` in a new process     : {min(imports):8.2f} s    "
          f"(eval-lfw whole process would be ~{whole + min(imports):.2f} s; goal < 1.5 s)")


if __name__ == "__main__":
    sys.exit(main())
