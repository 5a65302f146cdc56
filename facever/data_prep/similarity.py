"""Least-squares similarity transforms (rotation + uniform scale + translation) between point sets.

Umeyama's closed form (IEEE TPAMI 13(4), 1991): the exact least-squares optimum, never a failure
mode like RANSAC/LMedS estimators that can return nothing on five points. Pure numpy.
"""

from __future__ import annotations

import math

import numpy as np


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix `M` of the similarity that best maps `src` onto `dst` in the least-squares sense.

    `src`, `dst`: `(n, 2)` points, n >= 2. `M @ [x, y, 1]` gives the mapped point; reflections are
    excluded (a mirrored face is not the same alignment). Raises ValueError for non-finite input or
    when every `src` point coincides (no scale or rotation can be estimated).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"expected two (n, 2) point arrays with n >= 2, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("points must be finite")
    n = len(src)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / n
    if src_var <= 1e-12:
        raise ValueError("source points all coincide: no similarity transform is defined")
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    # Force a proper rotation (det = +1): flip the weakest axis when the optimum would be a reflection.
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / src_var)
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map `(n, 2)` points through a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def similarity_matrix(*, scale: float = 1.0, angle_deg: float = 0.0, tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    """Build the 2x3 matrix of a similarity: rotate counter-clockwise by `angle_deg` (in x-right, y-up
    terms; clockwise on screen, where y points down), scale, then translate."""
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    return np.array([[c, -s, tx], [s, c, ty]], dtype=np.float64)


def decompose_similarity(matrix: np.ndarray) -> tuple[float, float, np.ndarray]:
    """`(scale, angle_deg, translation)` of a similarity matrix built like `similarity_matrix`."""
    m = np.asarray(matrix, dtype=np.float64)
    scale = math.hypot(m[0, 0], m[1, 0])
    angle = math.degrees(math.atan2(m[1, 0], m[0, 0]))
    return scale, angle, m[:, 2].copy()
