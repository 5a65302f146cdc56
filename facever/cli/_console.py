"""Shared CLI plumbing: stderr console for progress and messages, one-line errors, progress bars."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from rich.console import Console
from rich.markup import escape  # messages are text: `facever[onnx]` must not be read as a style tag

err_console = Console(stderr=True)
out_console = Console()


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error on stderr and exit non-zero."""
    import typer

    err_console.print(f"[bold red]error:[/] {escape(_one_line(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def info(message: str) -> None:
    err_console.print(message, highlight=False, soft_wrap=True, markup=False)


def _one_line(message: str) -> str:
    return " ".join(str(message).splitlines())


# Library parameters whose command-line option has another name.
_FLAG_NAMES = {"out_dir": "out", "config": "config_file"}


def with_flags(message: str, options) -> str:
    """The library's `message` with each parameter it names (in backticks, listed in `options`) written
    as the running command's flag: `batch_size` -> --batch-size. Names the command has no option for
    stay as they are."""
    if not options:
        return message
    try:
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click import get_current_context
    ctx = get_current_context(silent=True)
    if ctx is None:
        return message
    flags = {}
    for param in ctx.command.params:
        longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        if longs:
            flags[param.name] = longs[0]
    for name in options:
        flag = flags.get(_FLAG_NAMES.get(name, name))
        if flag:
            message = message.replace(f"`{name}`", flag)
    return message


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the library's FaceverError (and OSError on user files) into a one-line error and exit 2."""
    from facever.core.errors import FaceverError

    try:
        yield
    except FaceverError as exc:
        fail(with_flags(str(exc), getattr(exc, "options", ())))
    except OSError as exc:
        # A user's path that cannot be read or written (missing, a file where a folder is needed, full
        # disk, a name too long): one line naming it, not a traceback.
        if getattr(exc, "filename", None) is None:
            fail(exc.strerror or str(exc))  # e.g. a full disk while writing
        fail(f"{exc.filename}: {exc.strerror or exc}")


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, unit: str = "img") -> Iterator:
    """A rich progress bar on stderr with rate and ETA. Yields `advance(n=1, **fields)`.

    Disabled automatically when stderr is not a terminal (CI logs stay clean).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class RateColumn(TextColumn):
        def __init__(self):
            super().__init__("")

        def render(self, task):  # noqa: D401
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} {unit}/s" if speed else f"- {unit}/s", style="cyan")

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=err_console,
        disable=not sys.stderr.isatty(),
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, status="")

        def advance(n: int = 1, status: str | None = None) -> None:
            if status is None:
                progress.update(task, advance=n)
            else:
                progress.update(task, advance=n, status=status)

        yield advance


@contextlib.contextmanager
def stop_on_signal(message: str | None) -> Iterator:
    """Ctrl-C / SIGTERM ask long work to stop cleanly; a second Ctrl-C aborts at once.

    Yields `stop_requested() -> bool` for the library's loop to poll (training saves a checkpoint and
    returns). The first signal prints `message` (None: say nothing, e.g. on non-zero DDP ranks); a
    second SIGINT raises KeyboardInterrupt for the caller to turn into exit 130. The previous
    handlers are restored on the way out.
    """
    import signal

    state = {"requested": False}

    def on_signal(signum, frame):  # noqa: ARG001
        if state["requested"]:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        state["requested"] = True
        if message:
            warn(message)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: state["requested"]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def library_warnings() -> Iterator[None]:
    """Show the library's logged warnings (resized crops, cache misses) as `warning:` lines on stderr."""
    import logging

    class _ToConsole(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warn(record.getMessage())

    logger = logging.getLogger("facever")
    handler = _ToConsole(level=logging.WARNING)
    old_level = logger.level
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
