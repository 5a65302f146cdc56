"""From uint8 RGB crops to the normalised NCHW float tensor a model expects.

Split in two on purpose: `resize_to_input` runs on uint8 arrays in the data-loading workers (cheap
to ship, 4x smaller than float), `normalize_batch` runs on the model's device in one fused pass.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

# Relative difference of height/width ratios above which resizing visibly distorts a face.
ASPECT_TOLERANCE = 0.02


def aspect_ratio_differs(shape: Sequence[int], size: Sequence[int], *, tol: float = ASPECT_TOLERANCE) -> bool:
    """True when an `h x w` image would be stretched by resizing it to `size = (h, w)`."""
    h, w = int(shape[0]), int(shape[1])
    th, tw = int(size[0]), int(size[1])
    return abs((h / w) / (th / tw) - 1.0) > tol


def resize_to_input(rgb: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize an `H x W x 3` uint8 image to `size = (h, w)`; returned unchanged when it already fits.

    Area interpolation when shrinking (no aliasing), bilinear when enlarging, as OpenCV recommends.
    The whole image is resized (no cropping): aligned crops are expected, so a different aspect ratio
    means a different alignment template, which the caller warns about.
    """
    th, tw = int(size[0]), int(size[1])
    if rgb.shape[0] == th and rgb.shape[1] == tw:
        return rgb
    from facever.core.opencv_guard import opencv

    cv2 = opencv()

    shrinking = rgb.shape[0] * rgb.shape[1] > th * tw
    out = cv2.resize(rgb, (tw, th), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return np.ascontiguousarray(out, dtype=np.uint8)


def normalize_batch(batch, *, mean: Sequence[float], std: Sequence[float], color: str = "RGB", dtype=None):
    """`N x H x W x 3` uint8 RGB tensor -> `N x 3 x H x W` float `(x/255 - mean) / std` in `color` order.

    The result is a permuted view of NHWC memory, i.e. already `channels_last`; call `.contiguous()`
    for the classic NCHW layout. `dtype` defaults to float32.
    """
    import torch

    dtype = dtype or torch.float32
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected N x H x W x 3 pixels, got shape {tuple(batch.shape)}")
    if color.upper() == "BGR":
        batch = batch.flip(-1)
    elif color.upper() != "RGB":
        raise ValueError(f"unknown colour order {color!r}")
    # (x/255 - m)/s == x * (1/(255 s)) + (-m/s): one multiply-add per pixel.
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=torch.float32, device=batch.device)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32, device=batch.device)
    x = torch.addcmul(shift, batch.to(torch.float32), scale)  # broadcast over the last (channel) axis
    return x.permute(0, 3, 1, 2).to(dtype)


def preprocess_crops(crops: Sequence[np.ndarray] | np.ndarray, model, *, device=None):
    """uint8 RGB crops (`H x W x 3` each) -> the normalised `N x 3 x h x w` float32 input of `model`.

    Crops of another size are resized to `model.input_size`; a warning is logged once per call when
    that changes the aspect ratio. The result is contiguous NCHW (plain layout).
    """
    import torch

    size = tuple(model.input_size)
    warned = False
    resized = []
    for crop in crops:
        crop = np.asarray(crop)
        if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
            raise ValueError(f"expected H x W x 3 uint8 RGB crops, got {crop.dtype} {crop.shape}")
        if not warned and aspect_ratio_differs(crop.shape, size):
            log.warning(
                "crops of %dx%d (h x w) are resized to the model's %dx%d: the aspect ratio differs, faces are "
                "stretched (align to the model's size for best accuracy)",
                crop.shape[0], crop.shape[1], size[0], size[1],
            )
            warned = True
        resized.append(resize_to_input(crop, size))
    if not resized:
        return torch.zeros((0, 3, *size), dtype=torch.float32)
    batch = torch.from_numpy(np.stack(resized))
    if device is not None:
        batch = batch.to(device)
    return normalize_batch(batch, mean=model.mean, std=model.std, color=model.color).contiguous()
