"""Classification heads: where the class weights live, apart from what is done to the target logits.

A head is a **storage** and one **transform**:

- storage: the whole `C x D` classifier on one device (`ClassifierHead`, here), or this rank's rows of
  it across processes (`sharded_head.ShardedClassifier`, Partial FC style). Both compute the logits
  `x W^T` in float32 (even inside an autocast region: the softmax of many classes, and the noise term,
  a small difference of large numbers, lose too much in bf16/fp16), then hand the target logits, one
  per sample, to the same transform, then add the bias, if any.
- transform (`TargetTransform`, built by `make_transform(head)`): a margin (`Margin`: none,
  SphereFace's, CosFace's or ArcFace's), then Noisy Softmax's annealed noise (batch or sample xi, or
  none). It applies in training mode only; evaluation scores the plain logits.

This is how insightface's arcface_torch splits it (a `CombinedMarginLoss` passed into `PartialFC_V2`):
every transform is written once and both storages apply it, so the sharded classifier equals the
full one for every head (tests/test_sharded_head.py).

The transform sees each target logit `t = W_y . x` (of the operands actually scored) and its
magnitude `n = ||W_y|| ||x||`, so `cos(theta_y) = t / n`, and returns a shift added to the target
logit. With `cosine_scale` s > 0 embeddings are scaled to length s and class weights to length 1
(NormFace, Wang et al. 2017): logits `s cos(theta_j)` and `n = s`; 0 keeps the paper's
`||W_j|| ||x|| cos(theta_j)`. SphereFace normalises the class weights in any case (its Caffe layer
does), so there `n = ||x||`.

- Noisy Softmax (Chen, Deng, Du, CVPR 2017): `f'_y = n (cos - alpha |xi| (1 - cos))`,
  alpha = sqrt(alpha2), written `t - alpha |xi| (n - t)` (no division by the norms); on a margin
  head the same noise acts on the margin's value v: `v - alpha |xi| (n - v)`.
- SphereFace (A-Softmax, Liu et al. 2017): `n (lambda cos + psi(theta)) / (1 + lambda)`,
  `psi = (-1)^k cos(m theta) - 2k` for theta in [k pi/m, (k+1) pi/m], lambda annealed per
  training step as SphereFace's margin_inner_product layer does.
- CosFace (Wang et al. 2018): `n (cos - m)`.
- ArcFace (Deng et al. 2019): `n cos(theta + m)` while theta + m < pi, else `n (cos - m sin m')`
  with m' = pi - m (insightface's threshold, which keeps the logit decreasing in theta).

Every head initialises its weight like `nn.Linear` (no bias unless asked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facever.core.errors import FaceverError
from facever.core.settings import (
    DEFAULT_ALPHA2,
    DEFAULT_NOISE,
    DEFAULT_MARGINS,
    DEFAULT_SPHEREFACE_LAMBDA,
    HEADS,
    MARGIN_HEADS,
    NOISE_MODES,
    NOISE_OFF,
    SATURATION_LEVEL,
)
from facever.training.head_options import (
    check_alpha2,
    check_cosine_scale,
    check_margin,
    check_sphereface_lambda,
    resolve_head_options,
)

__all__ = ["HEADS", "NOISE_MODES", "ClassifierHead", "NoisySoftmax", "Softmax", "create_head", "make_transform"]


# ---------------------------------------------------------------------------------------------
# Margins: what a head does to the target value (before the noise)


class Margin(nn.Module):
    """No margin: the target logit as it is (softmax, Noisy Softmax).

    A margin maps the target logits `t` and their magnitudes `n` (one per scored sample) to the new
    target logits, or None for "unchanged". `advance()` is called once per training step, before it.
    """

    name = "none"
    normalises_weights = False  # score against unit class weights whatever the cosine scale

    def advance(self) -> None:
        pass

    def forward(self, t: torch.Tensor, n: torch.Tensor) -> torch.Tensor | None:
        return None


# cos(m theta) as a polynomial of cos(theta) (Chebyshev T_m): SphereFace's Caffe layer and
# clcarwin/sphereface_pytorch compute it so, which keeps the gradient finite at cos = +-1.
_CHEBYSHEV = {
    1: lambda c: c,
    2: lambda c: 2 * c**2 - 1,
    3: lambda c: 4 * c**3 - 3 * c,
    4: lambda c: 8 * c**4 - 8 * c**2 + 1,
}


class SphereFaceMargin(Margin):
    """SphereFace's multiplicative angular margin with its annealed blend (wy1iu/sphereface,
    margin_inner_product_layer.cpp): with the class weights normalised, c = cos(theta_y),

        f_y = n (lambda c + psi(theta)) / (1 + lambda),   psi = (-1)^k cos(m theta) - 2k,
        k = floor(m theta / pi),   lambda = max(lambda_min, base (1 + gamma iteration)^-power),

    the iteration counting this head's training steps from 1 (Caffe's `iter_ += 1` before use). The
    count is saved in `state_dict`, so a resumed run continues the schedule. The gradient is the true
    one of this forward (as clcarwin/sphereface_pytorch's autograd); the Caffe layer's hand-written
    backward rescales its two terms instead, which this does not copy.
    """

    name = "sphereface"
    normalises_weights = True

    def __init__(self, m: float = DEFAULT_MARGINS["sphereface"], lambda_schedule=DEFAULT_SPHEREFACE_LAMBDA):
        super().__init__()
        self.m = int(check_margin("sphereface", m))
        self.base, self.gamma, self.power, self.lambda_min = check_sphereface_lambda(lambda_schedule)
        self.iteration = 0

    def extra_repr(self) -> str:
        return (f"m={self.m}, lambda=max({self.lambda_min:g}, {self.base:g} (1 + {self.gamma:g} it)^-{self.power:g}), "
                f"iteration={self.iteration}")

    @property
    def lam(self) -> float:
        return max(self.lambda_min, self.base * (1.0 + self.gamma * self.iteration) ** -self.power)

    def advance(self) -> None:
        self.iteration += 1

    # The step count travels with the head's weights (and each rank's shard), not as a tensor: reading
    # a tensor back every step would synchronise a GPU with the host.
    def get_extra_state(self) -> dict[str, int]:
        return {"iteration": self.iteration}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.iteration = int(state["iteration"])

    def psi(self, c: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            k = torch.floor(self.m * torch.acos(c) / math.pi)
            sign = 1 - 2 * torch.remainder(k, 2)
        return sign * _CHEBYSHEV[self.m](c) - 2 * k

    def forward(self, t: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        c = (t / n).clamp(-1, 1)
        lam = self.lam
        # Caffe: (lambda x'w + |x| psi) / (1 + lambda), x'w = t the target logit on unit weights.
        return (lam * t + n * self.psi(c)) / (1 + lam)


class CosFaceMargin(Margin):
    """CosFace's additive cosine margin: f_y = n (cos(theta_y) - m) = t - n m."""

    name = "cosface"

    def __init__(self, m: float = DEFAULT_MARGINS["cosface"]):
        super().__init__()
        self.m = check_margin("cosface", m)

    def extra_repr(self) -> str:
        return f"m={self.m}"

    def forward(self, t: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return t - n * self.m


class ArcFaceMargin(Margin):
    """ArcFace's additive angular margin, as insightface's CombinedMarginLoss (m1 = 1, m3 = 0) computes it
    with `easy_margin = False` (recognition/arcface_torch/losses.py, until its 2022-12 rewrite):

        c = cos(theta_y);  cos(theta + m) = c cos m - sin(theta) sin m
        f_y = n cos(theta + m)        where c > cos(pi - m)   (theta + m < pi)
        f_y = n (c - m sin(pi - m))   elsewhere (keeps the logit decreasing in theta past pi - m)

    with the true gradient (`sin(theta)` floored at 1e-6 so that a target at theta = 0 has a finite one).
    """

    name = "arcface"

    def __init__(self, m: float = DEFAULT_MARGINS["arcface"]):
        super().__init__()
        self.m = check_margin("arcface", m)
        self.cos_m, self.sin_m = math.cos(self.m), math.sin(self.m)
        self.threshold = math.cos(math.pi - self.m)
        self.sinmm = math.sin(math.pi - self.m) * self.m

    def extra_repr(self) -> str:
        return f"m={self.m}"

    def forward(self, t: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        c = (t / n).clamp(-1, 1)
        sin = (1 - c * c).clamp_min(1e-12).sqrt()
        return n * torch.where(c > self.threshold, c * self.cos_m - sin * self.sin_m, c - self.sinmm)


MARGINS: dict[str, type[Margin]] = {"sphereface": SphereFaceMargin, "cosface": CosFaceMargin, "arcface": ArcFaceMargin}


# ---------------------------------------------------------------------------------------------
# The transform: the margin, then the noise


class TargetTransform(nn.Module):
    """What a head does to its target logits in training: `margin`, then Noisy Softmax's noise.

    Noise (`noise` "batch" or "sample" with `alpha2` > 0): `v' = v - alpha |xi| (n - v)` on the margin's
    value v (the target logit itself without a margin), alpha = sqrt(alpha2), xi ~ N(0, 1) drawn from
    torch's global RNG on the logits' device, once per batch or once per sample of the (global) batch,
    so restoring the RNG state reproduces it and every rank of a sharded classifier draws the same xi.
    Gradients flow through W and x with xi held constant.
    """

    def __init__(self, margin: Margin | None = None, *, alpha2: float = DEFAULT_ALPHA2, noise: str = NOISE_OFF,
                 eps: float = 1e-12, label: str = "head"):
        super().__init__()
        check_alpha2(label, alpha2)
        if noise not in NOISE_MODES and noise != NOISE_OFF:
            raise FaceverError(f"{label}: noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
        self.margin = margin if margin is not None else Margin()
        self.alpha2, self.noise, self.eps = float(alpha2), noise, float(eps)

    @property
    def alpha(self) -> float:
        return math.sqrt(self.alpha2)

    @property
    def noisy(self) -> bool:
        return self.noise != NOISE_OFF and self.alpha2 > 0

    @property
    def active(self) -> bool:
        """Whether training changes the target logits at all."""
        return self.noisy or type(self.margin) is not Margin

    def extra_repr(self) -> str:
        return f"noise={self.noise!r}, alpha2={self.alpha2}" if self.noisy else "noise='off'"

    def begin_step(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """Once per training forward: advance the margin's schedule, draw |xi| (shape () or (batch,))."""
        self.margin.advance()
        if not self.noisy:
            return None
        shape = () if self.noise == "batch" else (batch,)
        return torch.randn(shape, device=device, dtype=dtype).abs()

    def shifts(self, t: torch.Tensor, n: torch.Tensor, xi: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(margin's change of the target logits, the noise's), each None when there is none.
        `xi` is |xi| for these rows (or the batch's one value)."""
        v = self.margin(t, n)
        margin_shift = None if v is None else v - t
        noise_shift = None
        if xi is not None:
            # alpha |xi| (v - n) = f'_y - v, always <= 0: the noise only lowers the target logit.
            noise_shift = self.alpha * xi * ((t if v is None else v) - n)
        return margin_shift, noise_shift

    def slope(self, t: torch.Tensor, n: torch.Tensor, xi: torch.Tensor | None) -> torch.Tensor:
        """d f'_y / d t per row (the norms and xi held fixed): what the gradient on the final target
        logit is multiplied by on its way to the plain one (1 without a transform)."""
        with torch.enable_grad():
            t = t.detach().requires_grad_(True)
            parts = [s for s in self.shifts(t, n.detach(), xi) if s is not None]
            if not parts:
                return torch.ones_like(t)
            (grad,) = torch.autograd.grad(sum(parts).sum(), t, allow_unused=True)
        return 1 + (grad if grad is not None else torch.zeros_like(t))


def make_transform(head: str, *, margin: float | None = None, alpha2: float | None = None, noise: str | None = None,
                   eps: float | None = None, sphereface_lambda: Any = None) -> TargetTransform:
    """The transform of head `head` (one of settings.HEADS); None options take the head's defaults
    (`head_options.resolve_head_options`, which checks them): `softmax` has no margin and no noise,
    `noisy-softmax` the noise, a margin head its margin and no noise unless `noise` is batch or sample."""
    options = resolve_head_options(head, margin=margin, alpha2=alpha2, noise=noise, sphereface_lambda=sphereface_lambda)
    if head == "sphereface":
        built: Margin = SphereFaceMargin(options.margin, options.sphereface_lambda)
    elif head in MARGINS:
        built = MARGINS[head](options.margin)
    else:
        built = Margin()
    return TargetTransform(built, alpha2=options.alpha2, noise=options.noise, eps=1e-12 if eps is None else eps, label=head)


def default_cosine_scale(head: str, cosine_scale: float | None) -> float:
    """`cosine_scale`, or the head's default when None (checked: CosFace and ArcFace need one > 0)."""
    return resolve_head_options(head, cosine_scale=cosine_scale).cosine_scale


# ---------------------------------------------------------------------------------------------
# What both storages do: operands, the transform of the target logits, the instruments


def cosine_operands(x: torch.Tensor, w: torch.Tensor, cosine_scale: float, *,
                    normalise_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """`(x, w)` unchanged for scale 0, else rows of x scaled to length s and rows of w to length 1, so
    that `x w^T = s cos(theta)` and `||w_j|| ||x|| = s` in every formula written for plain logits.
    `normalise_weights` (SphereFace) gives unit class weights whatever the scale."""
    if cosine_scale:
        x = cosine_scale * F.normalize(x, dim=1)
    if cosine_scale or normalise_weights:
        w = F.normalize(w, dim=1)
    return x, w


@dataclass
class TargetScores:
    """The target logits one storage scored in a training step, detached, for the instruments: their
    plain value `raw` (bias included, before the transform), `cos` = cos(theta_y), `slope` =
    d f'_y / d f_y, and the noise's change `noise` (None without noise); one per row of the batch,
    of which only the rows in `owned` (None: all) are this storage's."""

    owned: torch.Tensor | None
    raw: torch.Tensor
    cos: torch.Tensor
    slope: torch.Tensor
    noise: torch.Tensor | None


def _norm(v: torch.Tensor, eps: float) -> torch.Tensor:
    # sqrt of a clamped squared norm: exact for any non-degenerate vector, and a zero embedding (or
    # class weight) gets a zero gradient instead of 0/0 = NaN.
    return (v * v).sum(1).clamp_min(eps**2).sqrt()


def transform_targets(logits: torch.Tensor, x: torch.Tensor, w: torch.Tensor, cols: torch.Tensor,
                      owned: torch.Tensor | None, transform: TargetTransform, *, training: bool,
                      instruments: bool, bias: torch.Tensor | None = None,
                      ) -> tuple[torch.Tensor, TargetScores | None]:
    """Apply `transform` to the target logits `logits[i, cols[i]]` of the rows this storage holds
    (`owned`, a mask; None: every row) and return the logits and, with `instruments`, `TargetScores`.

    Called by both storages with their own logits `x w^T` (before any bias; `bias` is only read for
    the instruments' plain target logit). Rows outside `owned` are computed with a stand-in column and
    get a shift of exactly 0 (a mask instead of a list of rows: no device-to-host synchronisation).
    In training the transform's schedule advances and its noise is drawn even when this storage holds
    no target of the batch (as every rank must).
    """
    xi = transform.begin_step(x.shape[0], x.device, x.dtype) if training else None
    change = training and transform.active
    if not (change or instruments):
        return logits, None
    rows = torch.arange(x.shape[0], device=x.device)
    with torch.set_grad_enabled(change and torch.is_grad_enabled()):
        # Only the N target rows of W are read; a sparse gather keeps the backward from building (and
        # then adding) a second class-count-sized weight gradient (1.5x slower on a CPU otherwise).
        w_y = F.embedding(cols, w, sparse=True) if change else w.detach()[cols]
        x_y = x if change else x.detach()
        # t = W_y . x and n = ||W_y|| ||x||: the formulas need no division by the norms, hence no 0/0.
        t = (w_y * x_y).sum(1)
        n = _norm(w_y, transform.eps) * _norm(x_y, transform.eps)
        margin_shift, noise_shift = transform.shifts(t, n, xi) if change else (None, None)
        if change:
            shift = noise_shift if margin_shift is None else (
                margin_shift if noise_shift is None else margin_shift + noise_shift)
            if owned is not None:
                shift = torch.where(owned, shift, torch.zeros_like(shift))
    raw = None
    if instruments:
        raw = logits.detach()[rows, cols]
        if bias is not None:
            raw = raw + bias.detach().to(raw.dtype)[cols]
    if change:
        # Add the shift at (i, y_i) (rows are distinct, so accumulate is a plain add); the gradient
        # passes through to the logits unchanged instead of through a full-size scatter copy.
        logits = logits.index_put((rows, cols), shift, accumulate=True)
    if not instruments:
        return logits, None
    with torch.no_grad():
        cos = t.detach() / n.detach()
        slope = transform.slope(t, n, xi) if change else torch.ones_like(cos)
        noise = None if noise_shift is None else noise_shift.detach().expand_as(cos)
    return logits, TargetScores(owned, raw, cos, slope, noise)


#: The instruments' sums per step, in this order (summed over the rows a storage scored; the training
#: loop adds them over steps and ranks, and divides by the count when it writes a line).
INSTRUMENT_SUMS = ("count", "target_prob", "saturated", "target_grad", "target_angle", "noise", "train_correct")


def instrument_sums(p: torch.Tensor, correct: torch.Tensor, scores: TargetScores) -> torch.Tensor:
    """One float64 vector of `INSTRUMENT_SUMS` over the owned rows of `scores`, on their device (no
    host synchronisation).

    `p`: each row's target probability (the softmax of the logits the loss used); `correct`: whether
    its plain target logit is at least every other logit. The cross-entropy's gradient on the final
    target logit is `p - 1`; on the plain one (before the transform) `(p - 1) slope`, whose size is
    `target_grad`. Angles in degrees; `noise` the size of the noise's change of the target logit.
    """
    weight = torch.ones_like(p, dtype=torch.float64) if scores.owned is None else scores.owned.double()
    p = p.detach().double()
    angle = torch.rad2deg(torch.acos(scores.cos.double().clamp(-1, 1)))
    noise = scores.noise.double().abs() if scores.noise is not None else torch.zeros_like(p)
    # torch.where, not a product: a row this storage does not hold may carry any value.
    terms = torch.stack([torch.ones_like(p), p, (p > SATURATION_LEVEL).double(), (1 - p) * scores.slope.double().abs(),
                         angle, noise, correct.double()])
    return torch.where(weight.bool(), terms, torch.zeros_like(terms)).sum(1)


# ---------------------------------------------------------------------------------------------
# The full classifier


class ClassifierHead(nn.Module):
    """The whole classifier on one device: `forward(embeddings N x D, labels N)` gives float32 logits
    `N x C` for `F.cross_entropy` (float64 inputs stay float64, for gradient checks), the target logits
    changed by `transform` in training mode; `loss_and_instruments` gives the loss and the instruments."""

    def __init__(self, in_features: int, num_classes: int, *, transform: TargetTransform | None = None,
                 bias: bool = False, cosine_scale: float = 0.0):
        super().__init__()
        if int(in_features) < 1 or int(num_classes) < 1:
            raise FaceverError(
                f"head needs in_features >= 1 and num_classes >= 1, got {in_features} and {num_classes}"
            )
        self.in_features, self.num_classes = int(in_features), int(num_classes)
        self.cosine_scale = check_cosine_scale("softmax", cosine_scale)
        self.transform = transform if transform is not None else TargetTransform()
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.in_features))
        self.bias = nn.Parameter(torch.empty(self.num_classes)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Exactly nn.Linear's initialisation.
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def alpha2(self) -> float:
        return self.transform.alpha2

    @property
    def alpha(self) -> float:
        return self.transform.alpha

    @property
    def noise(self) -> str:
        return self.transform.noise

    @property
    def eps(self) -> float:
        return self.transform.eps

    @property
    def margin(self) -> Margin:
        return self.transform.margin

    def extra_repr(self) -> str:
        text = f"in_features={self.in_features}, num_classes={self.num_classes}, bias={self.bias is not None}"
        return text + (f", cosine_scale={self.cosine_scale}" if self.cosine_scale else "")

    def _upcast(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and weight in float32 (float64 stays float64), as the cosine scale wants them."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__} expects embeddings of shape N x {self.in_features}, "
                f"got {tuple(embeddings.shape)}"
            )
        dtype = torch.promote_types(torch.promote_types(embeddings.dtype, self.weight.dtype), torch.float32)
        return cosine_operands(embeddings.to(dtype), self.weight.to(dtype), self.cosine_scale,
                               normalise_weights=self.transform.margin.normalises_weights)

    def _logits(self, embeddings: torch.Tensor, labels: torch.Tensor | None, *,
                instruments: bool) -> tuple[torch.Tensor, TargetScores | None]:
        x, w = self._upcast(embeddings)
        logits = F.linear(x, w)
        scores = None
        if labels is not None and (self.training or instruments):
            if labels.shape != (x.shape[0],):
                raise ValueError(f"{type(self).__name__} expects labels of shape ({x.shape[0]},), got {tuple(labels.shape)}")
            logits, scores = transform_targets(logits, x, w, labels.long(), None, self.transform,
                                               training=self.training, instruments=instruments, bias=self.bias)
        if self.bias is not None:
            logits = logits + self.bias.to(logits.dtype)
        return logits, scores

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self._logits(embeddings, labels, instruments=False)[0]

    def loss_and_instruments(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean cross-entropy, `instrument_sums` of the batch), in float32 whatever the autocast."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            logits, scores = self._logits(embeddings, labels, instruments=True)
            labels = labels.long()
            loss = F.cross_entropy(logits, labels)
            with torch.no_grad():
                z = logits.detach()
                rows = torch.arange(z.shape[0], device=z.device)
                p = (z[rows, labels] - z.logsumexp(1)).exp()
                others = z.index_put((rows, labels), z.new_tensor(-math.inf)).max(1).values
                sums = instrument_sums(p, scores.raw >= others, scores)
        return loss, sums


class Softmax(ClassifierHead):
    """Plain softmax head: logits = x W^T + b in float32; with `cosine_scale` s > 0, s cos(theta) + b.

    `labels` is accepted and ignored, so every head is called the same way."""

    def __init__(self, in_features: int, num_classes: int, *, bias: bool = False, cosine_scale: float = 0.0):
        super().__init__(in_features, num_classes, transform=make_transform("softmax"), bias=bias,
                         cosine_scale=cosine_scale)


class NoisySoftmax(ClassifierHead):
    """Noisy Softmax head. In training mode only the target logit changes:

        f'_y = ||W_y|| ||x|| (cos(theta_y) - alpha |xi| (1 - cos(theta_y))),   alpha = sqrt(alpha2),

    with xi ~ N(0, 1) drawn once per batch (`noise="batch"`, as the authors' Caffe layer) or once per
    sample (`noise="sample"`) (`TargetTransform`). The bias, if any, is added after. In eval mode (or
    with alpha2 = 0) the logits are the plain softmax logits. With `cosine_scale` s > 0,
    ||W_y|| ||x|| = s (module docstring).
    """

    def __init__(self, in_features: int, num_classes: int, *, alpha2: float = DEFAULT_ALPHA2, noise: str = DEFAULT_NOISE,
                 bias: bool = False, eps: float = 1e-12, cosine_scale: float = 0.0):
        if noise not in NOISE_MODES:
            raise FaceverError(f"noisy-softmax: noise must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
        super().__init__(in_features, num_classes, transform=make_transform("noisy-softmax", alpha2=alpha2, noise=noise, eps=eps),
                         bias=bias, cosine_scale=cosine_scale)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha2={self.alpha2}, noise={self.noise!r}"


_TRANSFORM_OPTIONS = ("margin", "alpha2", "noise", "eps", "sphereface_lambda")


def create_head(name: str, in_features: int, num_classes: int, **options: Any) -> nn.Module:
    """Build the full head `name` (one of settings.HEADS) with options `bias`, `cosine_scale` (None:
    the head's default) and the transform's `margin`, `alpha2`, `noise`, `eps`, `sphereface_lambda`
    (`make_transform`); None-valued options are dropped.

    The plain softmax head ignores the Noisy Softmax options (alpha2, noise, eps); an option the head
    does not have (a margin on softmax), an unknown option or an unknown name is a FaceverError.
    """
    if name not in HEADS:
        raise FaceverError(f"unknown head {name!r}; known heads: {', '.join(HEADS)}")
    kwargs = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(kwargs) - {"bias", "cosine_scale", *_TRANSFORM_OPTIONS})
    if name in ("softmax", "noisy-softmax"):
        unknown = sorted(set(unknown) | ({"margin", "sphereface_lambda"} & set(kwargs)))
    elif name != "sphereface" and "sphereface_lambda" in kwargs:
        unknown.append("sphereface_lambda")
    if unknown:
        allowed = ["bias", "cosine_scale", "alpha2", "noise", "eps"] + (["margin"] if name in MARGIN_HEADS else []) + (
            ["sphereface_lambda"] if name == "sphereface" else [])
        raise FaceverError(f"head {name!r} has no option {', '.join(unknown)}; its options: {', '.join(sorted(allowed))}")
    transform_options = {k: kwargs.pop(k) for k in _TRANSFORM_OPTIONS if k in kwargs}
    scale = default_cosine_scale(name, kwargs.pop("cosine_scale", None))
    if name == "softmax":
        return Softmax(in_features, num_classes, cosine_scale=scale, **kwargs)
    if name == "noisy-softmax":
        return NoisySoftmax(in_features, num_classes, cosine_scale=scale, **transform_options, **kwargs)
    return ClassifierHead(in_features, num_classes, transform=make_transform(name, **transform_options),
                          cosine_scale=scale, **kwargs)
