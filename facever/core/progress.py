"""How long work talks to its caller: messages, warnings and progress, as callbacks (the library never prints).

A workflow takes one `Hooks`; the command line passes its console (`facever.cli._evaluation.console_hooks`),
a library user passes nothing (messages go to `logging`, progress nowhere) or their own callbacks.

`progress(description, total, unit="img", done=0)` is a context manager yielding `advance(n=1)`, the shape of
the CLI's `progress_bar`: one bar per stage, closed when the stage ends, however it ends; `done` is work
finished before (a resumed run's), counted but not timed.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterator, Sequence

log = logging.getLogger("facever")

ProgressFactory = Callable[..., ContextManager[Callable[..., None]]]


@contextlib.contextmanager
def no_progress(description: str, total: int | None, unit: str = "img",  # noqa: ARG001
                done: int = 0) -> Iterator[Callable[..., None]]:  # noqa: ARG001
    """A progress factory that shows nothing."""
    yield lambda n=1, **kw: None


def _log_bad_images(bad: Sequence) -> None:
    for item in bad:
        log.warning("%s: %s", item.path, item.reason)


@dataclass(frozen=True)
class Hooks:
    """What a workflow tells its caller while it runs.

    - `message(text)`: facts worth a line (what was reused, what was written);
    - `warning(text)`: something the user should look at (a report made with another model);
    - `progress(description, total, unit)`: a context manager yielding `advance(n=1)`;
    - `bad_images(list of BadImage)`: inputs that produced no embedding (path and reason each).
    """

    message: Callable[[str], None] = field(default=lambda text: log.info("%s", text))
    warning: Callable[[str], None] = field(default=lambda text: log.warning("%s", text))
    progress: ProgressFactory = no_progress
    bad_images: Callable[[Sequence], None] = _log_bad_images
