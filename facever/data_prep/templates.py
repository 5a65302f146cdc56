"""Five-point alignment templates: where the eyes, nose tip and mouth corners land in an aligned crop.

Points are (x, y) pixels in the order left eye, right eye, nose, left mouth corner, right mouth corner
("left" as seen in the image). The reference is the 96x112 (w x h) template of the SphereFace/CosFace
generation, the one the Noisy Softmax paper trained on; ArcFace's 112x112 template is the same points
shifted right by 8 pixels. Any other size is the reference scaled uniformly to fit and centred, which
reproduces both published templates exactly and keeps the face's proportions for every other size
(160x160 for FaceNet-style models is ArcFace's scaled by 160/112).
"""

from __future__ import annotations

import numpy as np

# (x, y) for an image 112 high and 96 wide.
REFERENCE_112x96 = np.array(
    [
        [30.2946, 51.6963],
        [65.5318, 51.5014],
        [48.0252, 71.7366],
        [33.5493, 92.3655],
        [62.7299, 92.2041],
    ],
    dtype=np.float64,
)
REFERENCE_SIZE = (112, 96)  # (h, w)

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def template_for_size(size: tuple[int, int]) -> np.ndarray:
    """The five template points `(5, 2)` float64 `(x, y)` for an aligned crop of `size = (h, w)` pixels.

    `(112, 96)` is the reference itself, `(112, 112)` the ArcFace template (x + 8); other sizes scale
    the reference by `min(h / 112, w / 96)` and centre it, so the face keeps its shape and fits.
    """
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"invalid crop size {size!r}: height and width must be positive")
    ref_h, ref_w = REFERENCE_SIZE
    scale = min(h / ref_h, w / ref_w)
    offset = np.array([(w - ref_w * scale) / 2.0, (h - ref_h * scale) / 2.0])
    return REFERENCE_112x96 * scale + offset
