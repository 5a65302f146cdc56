"""Environment variables are options: each one facever reads is checked like an option, in one place.

A bad value (text where a number goes, `inf`, `nan`, a negative count) is a one-line error naming the
variable and the value, never a traceback deep inside a thread and never a silent fallback:

- `FACEVER_PROGRESS_INTERVAL`: seconds between plain progress lines, a finite number in
  [`MIN_INTERVAL`, `MAX_INTERVAL`];
- `FACEVER_OFFLINE`: a flag, 1/true/yes/on or 0/false/no/off (empty: unset);
- torchrun's `WORLD_SIZE`, `RANK`, `LOCAL_RANK`: whole numbers (at least 1, 0, 0), read by training.

`check_environment()` checks facever's own variables at the start of every command; the getters below
check again where a value is read, so library callers get the same rule.
"""

from __future__ import annotations

import math
import os
from typing import Mapping

from facever.core.errors import FaceverError
from facever.core.settings import OFFLINE_ENV

PROGRESS_INTERVAL = "FACEVER_PROGRESS_INTERVAL"
OFFLINE = OFFLINE_ENV
MIN_INTERVAL, MAX_INTERVAL = 0.1, 86400.0
DEFAULT_PROGRESS_INTERVAL = 15.0  # seconds between plain progress lines when stderr is a log or a pipe

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _value(name: str, environ: Mapping[str, str] | None) -> str | None:
    text = (os.environ if environ is None else environ).get(name)
    return None if text is None or not text.strip() else text.strip()


def env_number(name: str, default: float, *, low: float, high: float, unit: str = "",
               environ: Mapping[str, str] | None = None) -> float:
    """The finite number in [low, high] that `name` holds, `default` when unset; FaceverError otherwise."""
    text = _value(name, environ)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise FaceverError(f"environment variable {name}={text!r}: expected a number of {unit + ' ' if unit else ''}"
                           f"from {low:g} to {high:g}")
    return value


def env_int(name: str, default: int, *, low: int, high: int = 1 << 20,
            environ: Mapping[str, str] | None = None) -> int:
    """The whole number in [low, high] that `name` holds, `default` when unset; FaceverError otherwise."""
    text = _value(name, environ)
    if text is None:
        return default
    if not (text.isascii() and text.lstrip("+").isdigit()) or not low <= int(text) <= high:
        raise FaceverError(f"environment variable {name}={text!r}: expected a whole number from {low} to {high}")
    return int(text)


def env_flag(name: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """True/False for 1/true/yes/on and 0/false/no/off (False when unset); FaceverError otherwise."""
    text = _value(name, environ)
    if text is None or text.lower() in _FALSE:
        return False
    if text.lower() in _TRUE:
        return True
    raise FaceverError(f"environment variable {name}={text!r}: expected 1/true/yes/on or 0/false/no/off")


def progress_interval(environ: Mapping[str, str] | None = None) -> float:
    """Seconds between plain progress lines: $FACEVER_PROGRESS_INTERVAL, else 15."""
    return env_number(PROGRESS_INTERVAL, DEFAULT_PROGRESS_INTERVAL, low=MIN_INTERVAL, high=MAX_INTERVAL,
                      unit="seconds", environ=environ)


def offline(environ: Mapping[str, str] | None = None) -> bool:
    """$FACEVER_OFFLINE: never try the network for pretrained weights."""
    return env_flag(OFFLINE, environ=environ)


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Check every FACEVER_* variable facever reads (FaceverError naming the first bad one)."""
    progress_interval(environ)
    offline(environ)
