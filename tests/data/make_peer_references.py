"""Writes peer_references.json, peer_references.npz and scipy18_slinear.json: the numbers the peers' own
evaluation code printed, run under the SciPy and scikit-learn they were written for, and what SciPy 1.8's
interp1d(kind="slinear") returned on repeated x, for tests/test_peer_numbers.py.

The peers' functions are read from their source files at run time (not copied here) and executed
unchanged; only the model forward is replaced by stored embeddings. Run under an old SciPy in a
throw-away environment (SciPy >= 1.9 raises on the repeated FARs of calculate_val):

    python3.10 -m venv /tmp/oldscipy
    /tmp/oldscipy/bin/pip install "scipy==1.8.1" "numpy<1.23" "scikit-learn==1.1.3"
    /tmp/oldscipy/bin/python tests/data/make_peer_references.py FACENET_SRC INSIGHTFACE_VERIFICATION_PY

FACENET_SRC: davidsandberg/facenet's src/ folder (facenet.py, lfw.py; commit 096ed77);
INSIGHTFACE_VERIFICATION_PY: deepinsight/insightface recognition/arcface_torch/eval/verification.py.
"""

import ast
import json
import math
import sys
from pathlib import Path

import numpy as np
import scipy
import sklearn
import sklearn.preprocessing
from scipy import interpolate
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn import metrics
from sklearn.model_selection import KFold

HERE = Path(__file__).parent


def load_functions(path, names, namespace):
    """Execute the top-level definitions `names` of the Python file `path` in `namespace`."""
    tree = ast.parse(Path(path).read_text())
    body = [node for node in tree.body if getattr(node, "name", None) in names]
    missing = set(names) - {node.name for node in body}
    assert not missing, missing
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def main(facenet_src, insightface_py):
    global FACENET
    base = {"np": np, "math": math, "KFold": KFold, "interpolate": interpolate, "sklearn": sklearn}
    facenet = FACENET = load_functions(Path(facenet_src) / "facenet.py", ["distance", "calculate_roc", "calculate_accuracy",
                                                                 "calculate_val", "calculate_val_far"], dict(base))
    lfw = load_functions(Path(facenet_src) / "lfw.py", ["evaluate"], {"np": np, "facenet": type("m", (), facenet)})
    insight = load_functions(insightface_py, ["LFold", "calculate_roc", "calculate_accuracy", "calculate_val",
                                              "calculate_val_far", "evaluate"], dict(base, PCA=None))
    rng = np.random.default_rng(2024)
    arrays, sets = {}, []
    for name, n_pairs, dim, quantum in (("small-300", 300, 8, 0.0), ("ties-400", 400, 6, 0.5),
                                        ("lfw-like-1200", 1200, 8, 0.0)):
        people = rng.normal(size=(n_pairs, dim))
        labels = np.zeros(n_pairs, bool)
        labels[: n_pairs // 2] = True
        rng.shuffle(labels)
        other = np.where(labels[:, None], people, rng.normal(size=(n_pairs, dim)))
        # raw outputs of a model: f(x) and f(mirror x) of each image, not normalised (norms around 3-20)
        views = []
        for base_vec in (people, other):
            f = 5 * (base_vec + 0.6 * rng.normal(size=base_vec.shape))
            g = f + 1.5 * rng.normal(size=base_vec.shape)
            if quantum:
                f, g = np.round(f / quantum) * quantum, np.round(g / quantum) * quantum
            views.append(np.concatenate([f, g], axis=1).astype(np.float32))
        first, second = views
        arrays[f"{name}_first"], arrays[f"{name}_second"], arrays[f"{name}_labels"] = first, second, labels
        issame = list(labels)
        interleaved = np.empty((2 * n_pairs, 2 * dim), np.float32)
        interleaved[0::2], interleaved[1::2] = first, second
        out = {"name": name}
        # insightface test(): embeddings_list = [f(x) rows, f(mirror x) rows] as float64; the flip sum, normalised.
        e64 = interleaved.astype(np.float64)
        embeddings = sklearn.preprocessing.normalize(e64[:, :dim] + e64[:, dim:])
        _, _, accuracy, val, val_std, far = insight["evaluate"](embeddings, issame, nrof_folds=10)
        xnorm = float(np.mean(np.r_[np.linalg.norm(e64[:, :dim], axis=1), np.linalg.norm(e64[:, dim:], axis=1)]))
        out["insightface"] = {"accuracy_mean": float(np.mean(accuracy)), "accuracy_std": float(np.std(accuracy)),
                              "val": float(val), "val_std": float(val_std), "far": float(far), "xnorm": xnorm}
        # facenet validate_on_lfw.py --distance_metric 1 --use_flipped_images --subtract_mean: concatenated
        # views (float64 array), lfw.evaluate, then its AUC and EER lines.
        tpr, fpr, accuracy, val, val_std, far = lfw["evaluate"](e64, issame, nrof_folds=10, distance_metric=1,
                                                               subtract_mean=True)
        auc = metrics.auc(fpr, tpr)
        eer = brentq(lambda x: 1. - x - interpolate.interp1d(fpr, tpr)(x), 0., 1.)
        out["facenet"] = {"accuracy_mean": float(np.mean(accuracy)), "accuracy_std": float(np.std(accuracy)),
                          "val": float(val), "val_std": float(val_std), "far": float(far), "auc": float(auc),
                          "eer": float(eer)}
        sets.append(out)
    np.savez_compressed(HERE / "peer_references.npz", **arrays)
    meta = {"scipy": scipy.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__,
            "facenet_commit": "096ed770f163957c1e56efa7feeb194773920f6e", "sets": sets}
    (HERE / "peer_references.json").write_text(json.dumps(meta, indent=1) + "\n")


def write_scipy18_slinear():
    """scipy18_slinear.json: SciPy 1.8's interp1d(kind="slinear") on repeated x, and facenet's own
    calculate_val on one-dimensional "embeddings" sqrt(d) and 0 (squared distances d), with SciPy 1.8."""
    rng = np.random.default_rng(2022)
    cases = []
    for trial in range(60):
        m = int(rng.integers(2, 30))
        # FAR-like levels: k / n_negatives, each repeated over several thresholds; y increasing thresholds.
        n_neg = int(rng.integers(1, 12))
        x = np.sort(rng.integers(0, n_neg + 1, m)) / n_neg
        y = np.round(np.sort(rng.random(m)) * 4, 3)
        queries = sorted(set(np.unique(x).tolist()) | set(rng.uniform(x.min(), x.max(), 3).tolist()))
        values = [float(interp1d(x, y, kind="slinear")(q)) for q in queries]
        cases.append({"x": x.tolist(), "y": y.tolist(), "queries": queries, "values": values})
    out = {"scipy": scipy.__version__, "numpy": np.__version__, "cases": cases}

    def calculate_val(thresholds, dist, actual_issame, far_target):
        e1 = np.sqrt(dist)[:, None]
        e2 = np.zeros_like(e1)
        return FACENET["calculate_val"](thresholds, e1, e2, actual_issame, far_target, nrof_folds=10)

    sets = []
    for name, n, gap in (("bin-305", 305, 0.5), ("small-600", 600, 0.7), ("lfw-like-6000", 6000, 0.8)):
        labels = np.zeros(n, bool)
        labels[: n // 2] = True
        rng.shuffle(labels)
        dist = np.where(labels, rng.normal(1.7 - gap, 0.3, n), rng.normal(1.7, 0.2, n))
        dist = np.round(np.clip(dist, 0.0, 3.9), 4)  # 4 decimals: ties between pairs
        dist = np.sum(np.square(np.sqrt(dist)[:, None] - 0.0), 1)  # what calculate_val's distance gives
        results = {}
        for target in (1e-3, 1e-2):
            v, s, f = calculate_val(np.arange(0, 4, 0.001), dist, labels, target)
            results[repr(target)] = [float(v), float(s), float(f)]
        sets.append({"name": name, "dist": dist.tolist(), "labels": labels.astype(int).tolist(), "val": results})
    out["calculate_val"] = sets
    (HERE / "scipy18_slinear.json").write_text(json.dumps(out) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
    write_scipy18_slinear()
