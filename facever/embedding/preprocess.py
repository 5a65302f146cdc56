"""From uint8 RGB crops to the normalised NCHW float tensor a model expects.

Split in two on purpose: the crop policy (`facever.core.crop.fit_to_input`: centre crop to the model's
aspect ratio, then resize) runs on uint8 arrays in the data-loading workers (cheap to ship, 4x smaller
than float), `normalize_batch` runs on the model's device in one fused pass.
"""

from __future__ import annotations

import functools
from typing import Sequence

# Relative difference of height/width ratios above which fitting an image to the model crops it visibly.
ASPECT_TOLERANCE = 0.02


def aspect_ratio_differs(shape: Sequence[int], size: Sequence[int], *, tol: float = ASPECT_TOLERANCE) -> bool:
    """True when fitting an `h x w` image to `size = (h, w)` cuts a visible part of it (its aspect ratio differs)."""
    h, w = int(shape[0]), int(shape[1])
    th, tw = int(size[0]), int(size[1])
    return abs((h / w) / (th / tw) - 1.0) > tol


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
    scale, shift = _scale_shift(batch.device, tuple(float(m) for m in mean), tuple(float(s) for s in std))
    x = torch.addcmul(shift, batch.to(torch.float32), scale)  # broadcast over the last (channel) axis
    return x.permute(0, 3, 1, 2).to(dtype)


@functools.lru_cache(maxsize=32)
def _scale_shift(device, mean: tuple[float, ...], std: tuple[float, ...]):
    """`(x/255 - m)/s == x * (1/(255 s)) + (-m/s)`: one multiply-add per pixel, with these two tensors
    made once per device and model statistics. Made per batch, each would be a blocking
    host-to-device copy on a GPU, which stalls the loop's overlap of copies and compute."""
    import torch

    with torch.inference_mode(False):  # ordinary tensors: usable inside and outside inference mode
        scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=torch.float32, device=device)
        shift = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=torch.float32, device=device)
    return scale, shift
