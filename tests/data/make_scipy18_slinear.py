"""Writes scipy18_slinear.json: what SciPy 1.8's `interp1d(x, y, kind="slinear")` returned on x with
repeated values (the FAR curves of facenet's and insightface's VAL@FAR), for
tests/test_peer_numbers.py to check facever's transcription against.

Run it under an old SciPy, in a throw-away environment (SciPy >= 1.9 raises on repeated x):
    python3.10 -m venv /tmp/oldscipy && /tmp/oldscipy/bin/pip install "scipy==1.8.1" "numpy<1.23"
    /tmp/oldscipy/bin/python tests/data/make_scipy18_slinear.py FACENET_SRC
"""

import json
from pathlib import Path

import numpy as np
import scipy
from scipy.interpolate import interp1d

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
Path(__file__).with_name("scipy18_slinear.json").write_text(json.dumps(out) + "\n")


# facenet's own calculate_val (src/facenet.py, read at run time from FACENET_SRC, the first argument:
# davidsandberg/facenet's src/ folder at 096ed77), run with SciPy 1.8's interp1d and scikit-learn's KFold
# on one-dimensional "embeddings" sqrt(d) and 0, whose squared distances are the stored `dist`.
import sys  # noqa: E402

from scipy import interpolate  # noqa: E402
from sklearn.model_selection import KFold  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from make_peer_references import load_functions  # noqa: E402

facenet = load_functions(Path(sys.argv[1]) / "facenet.py", ["distance", "calculate_val", "calculate_val_far"],
                         {"np": np, "math": __import__("math"), "KFold": KFold, "interpolate": interpolate})


def calculate_val(thresholds, dist, actual_issame, far_target):
    e1 = np.sqrt(dist)[:, None]
    e2 = np.zeros_like(e1)
    return facenet["calculate_val"](thresholds, e1, e2, actual_issame, far_target, nrof_folds=10)


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
Path(__file__).with_name("scipy18_slinear.json").write_text(json.dumps(out) + "\n")
