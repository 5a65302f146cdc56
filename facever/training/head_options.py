"""A head's options, resolved to the head's defaults and checked: the one place their ranges are
enforced, for the training configuration, config files and the heads themselves (torch-free, so the
command line and `facever compare` read it without loading torch).

Options: `margin` (the margin heads only), `cosine_scale`, `noise` (off, batch or sample), `alpha2`,
`sphereface_lambda` (SphereFace only). None means "the head's default" (core/settings.py); errors
are one line naming the option in backticks (`FaceverError.options`), for a front end to write as
its flag or config key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from facever.core.errors import FaceverError
from facever.core.settings import (
    ARCFACE_MARGIN_RANGE,
    COSFACE_MARGIN_RANGE,
    COSINE_ONLY_HEADS,
    DEFAULT_ALPHA2,
    DEFAULT_COSINE_SCALES,
    DEFAULT_MARGINS,
    DEFAULT_SPHEREFACE_LAMBDA,
    HEADS,
    MARGIN_HEADS,
    NOISE_CHOICES,
    NOISE_OFF,
    SPHEREFACE_MARGINS,
    default_noise,
)


def _fail(message: str, *options: str) -> FaceverError:
    return FaceverError(message, options=options)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class HeadOptions:
    """The options a head trains with, every default filled in (`margin` and `sphereface_lambda`
    None where the head has none; `noise` "off" where it has none)."""

    head: str
    margin: float | None
    cosine_scale: float
    noise: str
    alpha2: float
    sphereface_lambda: tuple[float, float, float, float] | None

    @property
    def noisy(self) -> bool:
        return self.noise != NOISE_OFF and self.alpha2 > 0

    def describe(self) -> str:
        """One phrase: `arcface m=0.5 s=64`, `noisy-softmax alpha2=0.1 (batch)`, `sphereface m=4 + noise ...`."""
        parts = [self.head]
        if self.margin is not None:
            parts.append(f"m={self.margin:g}")
        if self.cosine_scale:
            parts.append(f"s={self.cosine_scale:g}")
        if self.noisy:
            parts.append(f"alpha2={self.alpha2:g} ({self.noise})")
        return " ".join(parts)


def check_margin(head: str, margin: Any) -> float:
    """`margin` as a float when `head` accepts it; else a FaceverError naming its range."""
    value = _number(margin)
    if head == "sphereface":
        if value is None or value not in SPHEREFACE_MARGINS:
            raise _fail(f"sphereface: `margin` must be an integer {', '.join(map(str, SPHEREFACE_MARGINS))} "
                        f"(the multiplicative angular margin m), got {margin!r}", "margin")
    elif head == "cosface":
        lo, hi = COSFACE_MARGIN_RANGE
        if value is None or not lo <= value <= hi:
            raise _fail(f"cosface: `margin` must be in [{lo:g}, {hi:g}] (a cosine margin), got {margin!r}", "margin")
    elif head == "arcface":
        lo, hi = ARCFACE_MARGIN_RANGE
        if value is None or not lo <= value < hi:
            raise _fail(f"arcface: `margin` must be in [{lo:g}, pi/2) radians, got {margin!r}", "margin")
    else:
        raise _fail(f"head {head!r} has no `margin` (the margin heads have one: {', '.join(MARGIN_HEADS)})", "margin")
    return value  # type: ignore[return-value]


def check_cosine_scale(head: str, cosine_scale: Any) -> float:
    value = _number(cosine_scale)
    if value is None or value < 0:
        raise _fail(f"`cosine_scale` must be a finite number >= 0 (0: the paper's linear logits), got {cosine_scale!r}",
                    "cosine_scale")
    if head in COSINE_ONLY_HEADS and value <= 0:
        raise _fail(f"{head}: `cosine_scale` must be > 0 ({head} scores cosines; its paper uses 64), got {cosine_scale!r}",
                    "cosine_scale")
    return value


def check_alpha2(head: str, alpha2: Any) -> float:
    value = _number(alpha2)
    if value is None or value < 0:
        raise _fail(f"{head}: `alpha2` must be a finite number >= 0, got {alpha2!r}", "alpha2")
    return value


def check_sphereface_lambda(schedule: Any) -> tuple[float, float, float, float]:
    try:
        values = tuple(_number(v) for v in schedule)
    except TypeError:
        values = ()
    if len(values) != 4 or any(v is None for v in values):
        raise _fail(f"`sphereface_lambda` must be 4 numbers (base, gamma, power, lambda_min), got {schedule!r}",
                    "sphereface_lambda")
    if any(v < 0 for v in values):  # type: ignore[operator]
        raise _fail(f"`sphereface_lambda`: base, gamma, power and lambda_min must be >= 0, got {schedule!r}",
                    "sphereface_lambda")
    return values  # type: ignore[return-value]


def resolve_head_options(head: str, *, margin: Any = None, cosine_scale: Any = None, noise: str | None = None,
                         alpha2: Any = None, sphereface_lambda: Any = None) -> HeadOptions:
    """Head `head`'s options with None filled from its defaults, each checked (FaceverError naming the option).

    `softmax` has no noise (it ignores `noise`/`alpha2`, so that one configuration drives both of the
    paper's heads); `noisy-softmax` has the noise (`batch` unless set; `off` is refused: that is the
    softmax head); a margin head has none unless `noise` is batch or sample (Noisy ArcFace, ...).
    """
    if head not in HEADS:
        raise _fail(f"`head` must be one of {', '.join(HEADS)}, got {head!r}", "head")
    if margin is not None and head not in MARGIN_HEADS:
        raise _fail(f"head {head} has no `margin` (the margin heads have one: {', '.join(MARGIN_HEADS)})", "margin")
    if sphereface_lambda is not None and head != "sphereface":
        raise _fail(f"head {head} has no `sphereface_lambda` (SphereFace's annealing)", "sphereface_lambda")
    if noise is not None and noise not in NOISE_CHOICES:
        raise _fail(f"{head}: `noise` must be one of {', '.join(NOISE_CHOICES)}, got {noise!r}", "noise")
    noise = default_noise(head) if noise is None else noise
    if head == "softmax":
        noise = NOISE_OFF
    elif head == "noisy-softmax" and noise == NOISE_OFF:
        raise _fail("noisy-softmax: `noise` must be batch or sample (without noise it is the softmax head)", "noise")
    return HeadOptions(
        head=head,
        margin=check_margin(head, DEFAULT_MARGINS[head] if margin is None else margin) if head in MARGIN_HEADS else None,
        cosine_scale=check_cosine_scale(head, DEFAULT_COSINE_SCALES[head] if cosine_scale is None else cosine_scale),
        noise=noise,
        alpha2=check_alpha2(head, DEFAULT_ALPHA2 if alpha2 is None else alpha2),
        sphereface_lambda=(check_sphereface_lambda(DEFAULT_SPHEREFACE_LAMBDA if sphereface_lambda is None
                                                   else sphereface_lambda) if head == "sphereface" else None),
    )
