"""Writes peer_references.json (and peer_references.npz): the numbers the peers' own evaluation code
printed, run under the SciPy and scikit-learn they were written for, for tests/test_peer_numbers.py.

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
    base = {"np": np, "math": math, "KFold": KFold, "interpolate": interpolate, "sklearn": sklearn}
    facenet = load_functions(Path(facenet_src) / "facenet.py", ["distance", "calculate_roc", "calculate_accuracy",
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


if __name__ == "__main__":
    main(*sys.argv[1:3])
