"""The crop policy: how any image is fitted to a model's input size.

One rule for every path that feeds a model (training, `facever embed`, every `eval-*`, `.bin`, YTF frames):
centre-crop to the input's aspect ratio, then resize. A 112x112 ArcFace crop fitted to 112x96 loses 8
columns on each side and is not resampled, which is exactly the 96x112 alignment template.
"""

from __future__ import annotations

import numpy as np

# The name of this policy, recorded in model files, embeddings files and cache keys: a file made under
# another policy (e.g. "resize", the stretch `facever embed` did before) is recognisably different.
CROP_POLICY = "center-crop-to-aspect,resize"


def fit_to_input(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop `rgb` (H x W x 3) to the aspect ratio of `size` = (h, w), then resize to exactly (h, w).

    A 112x112 ArcFace crop fitted to (112, 96) loses 8 columns on each side and is not resampled: that is
    exactly the 96x112 alignment template. Resizing uses area averaging when shrinking, bilinear when
    enlarging.
    """
    from facever.core.opencv_guard import opencv

    h, w = int(size[0]), int(size[1])
    if rgb.shape[:2] == (h, w):
        return np.ascontiguousarray(rgb)
    cv2 = opencv()
    src_h, src_w = rgb.shape[:2]
    # Compare aspect ratios in integers: src_w / src_h vs w / h.
    if src_w * h > w * src_h:  # too wide: cut columns
        new_w = int(round(src_h * w / h))
        x0 = (src_w - new_w) // 2
        rgb = rgb[:, x0 : x0 + new_w]
    elif src_w * h < w * src_h:  # too tall: cut rows
        new_h = int(round(src_w * h / w))
        y0 = (src_h - new_h) // 2
        rgb = rgb[y0 : y0 + new_h]
    if rgb.shape[:2] != (h, w):
        shrink = rgb.shape[0] > h or rgb.shape[1] > w
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb)
