"""Classification heads for training embeddings: Noisy Softmax (Chen, Deng, Du, CVPR 2017) and plain
softmax with the same interface, so the two compare like for like.

Both map `(embeddings N x D, labels N)` to float32 logits `N x C` for `F.cross_entropy`. They compute
in float32 even inside an autocast region: under bf16/fp16 the logits of 10k classes and the
softmax lose too much precision, and the paper's noise term is a small difference of large numbers.

`cosine_scale` s > 0 scores normalised embeddings against normalised class weights, logits
`s cos(theta_j)` (NormFace, Wang et al. 2017), instead of the paper's `||W_j|| ||x|| cos(theta_j)`.
Noisy Softmax keeps its formula with `||W_y|| ||x|| = s`: `f'_y = s (cos(theta_y) - alpha |xi| (1 -
cos(theta_y)))`; lengthening a feature no longer lowers the loss, only aligning it with its class does.
0 (the default) is the paper's head.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facever.core.errors import FaceverError
from facever.core.settings import DEFAULT_ALPHA2, DEFAULT_NOISE, NOISE_MODES



def check_cosine_scale(cosine_scale: float) -> None:
    if not (math.isfinite(float(cosine_scale)) and float(cosine_scale) >= 0):
        raise FaceverError(f"cosine_scale must be a finite number >= 0 (0: the paper's linear logits), got {cosine_scale!r}")


def cosine_operands(x: torch.Tensor, w: torch.Tensor, cosine_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`(x, w)` unchanged for scale 0, else rows of x scaled to length s and rows of w to length 1, so
    that `x w^T = s cos(theta)` and `||w_j|| ||x|| = s` in every formula written for plain logits."""
    if not cosine_scale:
        return x, w
    return cosine_scale * F.normalize(x, dim=1), F.normalize(w, dim=1)


class _LinearHead(nn.Module):
    """A bias-optional linear classifier `x W^T + b` initialised like `nn.Linear`, run in float32."""

    def __init__(self, in_features: int, num_classes: int, *, bias: bool = False, cosine_scale: float = 0.0):
        super().__init__()
        if int(in_features) < 1 or int(num_classes) < 1:
            raise FaceverError(
                f"head needs in_features >= 1 and num_classes >= 1, got {in_features} and {num_classes}"
            )
        check_cosine_scale(cosine_scale)
        self.in_features, self.num_classes = int(in_features), int(num_classes)
        self.cosine_scale = float(cosine_scale)
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.in_features))
        self.bias = nn.Parameter(torch.empty(self.num_classes)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Exactly nn.Linear's initialisation.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        text = f"in_features={self.in_features}, num_classes={self.num_classes}, bias={self.bias is not None}"
        return text + (f", cosine_scale={self.cosine_scale}" if self.cosine_scale else "")

    def _upcast(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and weight in float32 (float64 stays float64, for gradient checks); with a
        cosine scale s, the embeddings normalised to length s and the class weights to length 1."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__} expects embeddings of shape N x {self.in_features}, "
                f"got {tuple(embeddings.shape)}"
            )
        dtype = torch.promote_types(torch.promote_types(embeddings.dtype, self.weight.dtype), torch.float32)
        return cosine_operands(embeddings.to(dtype), self.weight.to(dtype), self.cosine_scale)

    def _add_bias(self, logits: torch.Tensor) -> torch.Tensor:
        return logits if self.bias is None else logits + self.bias.to(logits.dtype)


class Softmax(_LinearHead):
    """Plain softmax head: logits = x W^T + b in float32 (float64 inputs stay float64); with
    `cosine_scale` s > 0, logits = s cos(theta) + b.

    `labels` is accepted and ignored, so both heads are called the same way."""

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x, w = self._upcast(embeddings)
            return self._add_bias(F.linear(x, w))


class NoisySoftmax(_LinearHead):
    """Noisy Softmax head. In training mode only the target logit changes:

        f'_y = ||W_y|| ||x|| (cos(theta_y) - alpha |xi| (1 - cos(theta_y))),   alpha = sqrt(alpha2),

    with xi ~ N(0, 1) drawn once per batch (`noise="batch"`, as the authors' Caffe layer) or once per
    sample (`noise="sample"`), from torch's global RNG on the embeddings' device (so restoring RNG
    state reproduces it). The bias, if any, is added after. Gradients flow through W and x with xi
    held constant. In eval mode (or with alpha2 = 0) the logits are the plain softmax logits. With
    `cosine_scale` s > 0, ||W_y|| ||x|| = s (module docstring).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        alpha2: float = DEFAULT_ALPHA2,
        noise: str = DEFAULT_NOISE,
        bias: bool = False,
        eps: float = 1e-12,
        cosine_scale: float = 0.0,
    ):
        super().__init__(in_features, num_classes, bias=bias, cosine_scale=cosine_scale)
        if not (math.isfinite(float(alpha2)) and float(alpha2) >= 0):
            raise FaceverError(f"noisy-softmax: alpha2 must be a finite number >= 0, got {alpha2!r}")
        if noise not in NOISE_MODES:
            raise FaceverError(f"noisy-softmax: noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
        self.alpha2 = float(alpha2)
        self.noise = noise
        self.eps = float(eps)

    @property
    def alpha(self) -> float:
        return math.sqrt(self.alpha2)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha2={self.alpha2}, noise={self.noise!r}"

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x, w = self._upcast(embeddings)
            logits = F.linear(x, w)
            if self.training and self.alpha2 > 0:
                logits = self._perturb_targets(logits, x, w, labels)
            return self._add_bias(logits)

    def _perturb_targets(
        self, logits: torch.Tensor, x: torch.Tensor, w: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        if labels.shape != (x.shape[0],):
            raise ValueError(f"NoisySoftmax expects labels of shape ({x.shape[0]},), got {tuple(labels.shape)}")
        labels = labels.long()
        # With t = W_y . x and n = ||W_y|| ||x||, the formula is f'_y = t - alpha |xi| (n - t): the
        # same number with no division by the norms, so it needs no cosine and no 0/0 guard.
        # Only N rows of W are touched; a sparse gather keeps the backward from building (and then
        # adding) a second class-count-sized weight gradient, which made the head 1.5x slower on CPU.
        w_y = F.embedding(labels, w, sparse=True)
        target = (w_y * x).sum(1)
        # sqrt of a clamped squared norm: exact for any non-degenerate vector, and a zero embedding
        # (or class weight) gets a zero gradient instead of 0/0 = NaN.
        norms = (w_y * w_y).sum(1).clamp_min(self.eps**2).sqrt() * (x * x).sum(1).clamp_min(self.eps**2).sqrt()
        shape = () if self.noise == "batch" else (x.shape[0],)
        xi = torch.randn(shape, device=x.device, dtype=x.dtype).abs()
        shift = self.alpha * xi * (target - norms)  # f'_y - f_y, always <= 0
        # Add the shift at (i, y_i) (rows are distinct, so accumulate is a plain add); the gradient
        # passes through to the logits unchanged instead of through a full-size scatter copy.
        rows = torch.arange(x.shape[0], device=x.device)
        return logits.index_put((rows, labels), shift, accumulate=True)


HEADS = {"noisy-softmax": NoisySoftmax, "softmax": Softmax}

# Noise options a plain softmax run may carry in its config; the plain head ignores them so that
# one configuration drives both heads.
_NOISE_ONLY_OPTIONS = ("alpha2", "noise", "eps")


def create_head(name: str, in_features: int, num_classes: int, **options: Any) -> nn.Module:
    """Build the head `name` ("noisy-softmax" or "softmax"), options `bias`, `cosine_scale` and (Noisy
    Softmax) `alpha2`, `noise`, `eps`; None-valued options are dropped.

    The plain softmax head ignores the Noisy Softmax options (alpha2, noise, eps); any other unknown
    option, or an unknown name, is a FaceverError.
    """
    if name not in HEADS:
        raise FaceverError(f"unknown head {name!r}; known heads: {', '.join(HEADS)}")
    kwargs = {key: value for key, value in options.items() if value is not None}
    if name == "softmax":
        kwargs = {key: value for key, value in kwargs.items() if key not in _NOISE_ONLY_OPTIONS}
    allowed = {"bias", "cosine_scale"} | (set(_NOISE_ONLY_OPTIONS) if name == "noisy-softmax" else set())
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise FaceverError(f"head {name!r} has no option {', '.join(unknown)}; its options: {', '.join(sorted(allowed))}")
    return HEADS[name](in_features, num_classes, **kwargs)
