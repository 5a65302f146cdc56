"""Shared CLI plumbing: stderr console for progress and messages, one-line errors, progress bars."""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.markup import escape  # messages are text: `facever[onnx]` must not be read as a style tag

err_console = Console(stderr=True)
out_console = Console()

# Open log files (e.g. a training run's training.log) that receive every console line, timestamped.
_log_files: list = []


def _to_logs(text: str) -> None:
    if not _log_files:
        return
    import datetime

    stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    for f in _log_files:
        for line in text.splitlines() or [""]:
            f.write(f"{stamp} {line}\n")
        f.flush()


@contextlib.contextmanager
def log_on_request() -> Iterator:
    """Yields `log_to(path)`, which the library calls once it is ready to write (a training run, after
    every check has passed): from then on, until this block ends, console lines also go to `path` as
    `console_log` writes them. Errors printed before the block ends are logged too."""
    with contextlib.ExitStack() as stack:
        yield lambda path: stack.enter_context(console_log(path))


@contextlib.contextmanager
def console_log(path) -> Iterator[None]:
    """Copy every message, warning, error and plain progress line printed on stderr meanwhile into `path`
    (appended, each line prefixed with an ISO timestamp). On a terminal, where progress is a bar, the
    file gets the plain progress lines at the usual interval instead."""
    f = open(path, "a", encoding="utf-8")
    _log_files.append(f)
    try:
        yield
    finally:
        _log_files.remove(f)
        f.close()


# A cell that reads as a number (`0.9585`, `91.15%`, `89.55% +- 0.88`, `1,234`): its column is right-aligned.
_NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+%?( \+- [\d.]+)?$")


def print_table(columns, rows, *, title: str | None = None, highlight_rows=(), show_lines: bool = False) -> None:
    """A table on stdout: a rich table on a terminal; tab-separated lines (header first) in a pipe or a
    file, so every name, path and recipe stays whole for grep, cut and spreadsheets. The one writer of
    every table facever prints.

    `rows`: sequences of cell strings; `title`: above the table on a terminal, on stderr in a pipe (so
    stdout stays header + rows); `highlight_rows`: indices shown in bold yellow on a terminal.
    """
    rows = [[str(c) for c in row] for row in rows]
    if not sys.stdout.isatty():
        if title:
            info(title)
        def cell(text: str) -> str:
            return " ".join(text.replace("\t", " ").split())

        out = ["\t".join(cell(c) for c in columns)] + ["\t".join(cell(c) for c in row) for row in rows]
        sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()
        return
    from rich.table import Table
    from rich.text import Text

    # Text, not markup: a name such as `[old]` shows as such.
    table = Table(title=Text(title) if title else None, title_justify="left", show_lines=show_lines)
    for k, column in enumerate(columns):
        cells = [row[k] for row in rows if k < len(row) and row[k] not in ("", "-")]
        numeric = bool(cells) and all(_NUMBER.match(c) for c in cells)
        table.add_column(Text(column), overflow="fold", justify="right" if numeric else "left")
    highlighted = set(highlight_rows)
    for i, row in enumerate(rows):
        table.add_row(*(Text(c) for c in row), style="bold yellow" if i in highlighted else None)
    out_console.print(table)


def print_error(message: str) -> None:
    """The one error line on stderr (`error: ...`), whoever raised it: facever's own errors and the
    command-line parser's usage errors look alike."""
    err_console.print(f"[bold red]error:[/] {escape(_one_line(message))}", highlight=False, soft_wrap=True)
    _to_logs(f"error: {_one_line(message)}")


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error on stderr and exit non-zero."""
    import typer

    print_error(message)
    raise typer.Exit(code)


def click_module():
    """The click that typer runs on: typer >= 0.2x vendors it as `typer._click`, older typer depends on it."""
    try:
        import typer._click as click
    except ImportError:  # pragma: no cover - depends on the installed typer
        import click
    return click


def looks_like_model(value: str | Path) -> bool:
    """A model file (`.pt`, `.pth`, `.onnx`, a TorchScript name) or a training run's folder (holding `model.pt`)."""
    from facever.core.settings import TORCHSCRIPT_SUFFIXES

    path = Path(value)
    suffixes = (".pt", ".pth", ".onnx", *TORCHSCRIPT_SUFFIXES)
    return (path.suffix.lower() in suffixes and path.is_file()) or (path / "model.pt").is_file()


def _usage_hint(exc) -> str | None:
    """What the user probably meant by a usage error, when it can be told: a value given without its
    option (`eval-lfw test.npz` for `eval-lfw -e test.npz`)."""
    found = re.search(r"unexpected extra argument(?:s|\(s\))? \((.+)\)", exc.message or "")
    ctx = getattr(exc, "ctx", None)
    if not found or ctx is None:
        return None
    flags = {}
    for param in ctx.command.params:
        opts = sorted(getattr(param, "opts", []), key=len)
        if param.param_type_name == "option" and opts:
            flags[param.name] = "/".join(opts)
    for value in found.group(1).split():
        suffix = Path(value).suffix.lower()
        for name, fits, what in (("embeddings", suffix == ".npz", "an embeddings file"),
                                 ("model", looks_like_model(value), "a model"),
                                 ("pairs", suffix in (".txt", ".csv", ".tsv"), "a pairs file")):
            if fits and name in flags and ctx.params.get(name) is None:  # an option given already is not it
                return f"{what} goes after {flags[name]}: `{ctx.command_path} {flags[name].split('/')[0]} {value} ...`"
    if not any(p.param_type_name == "argument" for p in ctx.command.params):
        return f"`{ctx.command_path}` takes no arguments without an option: give each value after its option"
    return None


def usage_error_line(exc) -> str:
    """A command-line usage error (click's UsageError) as one error line: its message, a hint where the
    mistake can be told, and where the help is."""
    message = exc.format_message().rstrip(".").replace("Value error, ", "")  # typer's validation prefix
    message = message[:1].lower() + message[1:] if message[:2] != message[:2].upper() else message
    hint = _usage_hint(exc)
    ctx = getattr(exc, "ctx", None)
    where = f" (`{ctx.command_path} -h` for help)" if ctx is not None else ""
    return message + (f"; {hint}" if hint else "") + where


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)
    _to_logs(f"warning: {message}")


def info(message: str) -> None:
    err_console.print(message, highlight=False, soft_wrap=True, markup=False)
    _to_logs(message)


def report_bad_images(bad, *, limit: int = 20) -> None:
    """List images that produced no embedding (`BadImage`s: path, reason) on stderr: the first `limit`, then a count."""
    for item in bad[:limit]:
        warn(f"{item.path}: {item.reason}")
    if len(bad) > limit:
        warn(f"... and {len(bad) - limit} more images without an embedding")


def _one_line(message: str) -> str:
    return " ".join(str(message).splitlines())


# Library parameters whose command-line option has another name.
_FLAG_NAMES = {"out_dir": "out", "config": "config_file", "max_detect_side": "max_side", "format": "fmt"}


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


def say(message: str) -> None:
    """`info` for a library message: the settings it names in backticks written as this command's flags."""
    import re

    info(with_flags(message, re.findall(r"`(\w+)`", message)))


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




def format_rate(per_second: float | None, unit: str = "img") -> str:
    """A rate with three significant digits: `0.312 img/s`, `3.14 img/s`, `31.4 img/s`, `1,234 img/s`."""
    if per_second is None or per_second != per_second or per_second <= 0:
        return f"- {unit}/s"
    if per_second >= 100:
        return f"{per_second:,.0f} {unit}/s"
    if per_second >= 0.001:
        return f"{per_second:.3g} {unit}/s"
    return f"{per_second:.1e} {unit}/s"


def format_duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `2h07m` (`?` when unknown)."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _count(n) -> str:
    return f"{n:,.1f}" if isinstance(n, float) else str(n)


def _plain_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
    _to_logs(line)


class PlainProgress:
    """Progress for logs and pipes: one plain line on stderr every `interval` seconds and at the end.

    `description: done/total (pct%), rate, elapsed, eta [status]`. Lines come from a timer thread, so
    a log shows the job alive even while one step takes longer than the interval.
    """

    def __init__(self, description: str, total: int | None, unit: str = "img", *, interval: float | None = None,
                 write=None, clock=None, done: int = 0):
        import threading
        import time

        self.description, self.total, self.unit = description, total, unit
        if interval is None:
            from facever.core.environment import progress_interval

            interval = progress_interval()  # checked: $FACEVER_PROGRESS_INTERVAL, a finite number of seconds
        self.interval = interval
        self.clock = clock or time.monotonic
        self.write = write or _plain_line
        self.done = self.done_before = done  # work done by an earlier run (a resume): counted, not timed
        self.status = ""
        self.start = self.last_advance = self.clock()
        self.closed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="facever-progress", daemon=True)
        self._thread.start()

    def line(self, final: bool = False) -> str:
        now = self.clock()
        # While running, the rate counts the time so far (a stalled job shows it); the final line counts
        # time up to the last progress made (a finished scan's rate does not decay while the next stage
        # sets up), and so does its elapsed time.
        done_here = self.done - self.done_before
        elapsed = self.last_advance - self.start if final and done_here else now - self.start
        rate = done_here / elapsed if elapsed > 0 and done_here else None
        total = self.total if self.total is not None else (self.done if final else None)
        parts = [f"{_count(self.done)}/{_count(total) if total is not None else '?'}"]
        if total:
            parts[0] += f" ({100.0 * self.done / total:.0f}%)"
        parts.append(format_rate(rate, self.unit))
        parts.append(f"elapsed {format_duration(elapsed)}")
        if final:
            parts.append("done")
        elif total is not None and rate:
            parts.append(f"eta {format_duration((total - self.done) / rate)}")
        text = f"{self.description}: " + ", ".join(parts)
        return text + (f"  {self.status}" if self.status else "")

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if not self.closed:
                    self.write(self.line())

    def advance(self, n: int = 1, status: str | None = None) -> None:
        with self._lock:
            self.done += n
            self.last_advance = self.clock()
            if status is not None:
                self.status = status

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self.write(self.line(final=True))
        self._stop.set()


class _RichProgress:
    """The terminal bar (rich): rate with significant digits, ETA; `close()` completes a bar of unknown total."""

    def __init__(self, description: str, total: int | None, unit: str = "img", done: int = 0):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class RateColumn(TextColumn):
            def __init__(self):
                super().__init__("")

            def render(self, task):  # noqa: D401
                return Text(format_rate(task.finished_speed or task.speed, unit), style="cyan")

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
            console=err_console, transient=False,
        )
        self.progress.start()
        # `completed` at the start is not a step of rich's speed estimate: the rate counts this run's work only.
        self.task = self.progress.add_task(description, total=total, completed=done, status="")
        self.closed = False

    def advance(self, n: int = 1, status: str | None = None) -> None:
        if status is None:
            self.progress.update(self.task, advance=n)
        else:
            self.progress.update(self.task, advance=n, status=status)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        task = self.progress.tasks[0]
        if task.total is None:  # e.g. "checking images N/?": the count is now known
            self.progress.update(self.task, total=task.completed)
        self.progress.stop()


def open_progress(description: str, total: int | None, unit: str = "img", *, done: int = 0):
    """A progress display with `advance(n=1, status=None)` and `close()`: a rich bar on a terminal,
    plain timed lines (`PlainProgress`) when stderr is a log file or a pipe. `done`: work finished
    before (a resumed run), shown in the count but not in the rate and ETA."""
    if not sys.stderr.isatty():
        return PlainProgress(description, total, unit, done=done)
    if not _log_files:
        return _RichProgress(description, total, unit, done=done)
    return _Both(_RichProgress(description, total, unit, done=done),
                 PlainProgress(description, total, unit, write=_to_logs, done=done))


class _Both:
    def __init__(self, *displays):
        self.displays = displays

    def advance(self, n: int = 1, status: str | None = None) -> None:
        for d in self.displays:
            d.advance(n, status)

    def close(self) -> None:
        for d in self.displays:
            d.close()


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, unit: str = "img", *, done: int = 0) -> Iterator:
    """Progress on stderr with rate and ETA, closed on the way out. Yields `advance(n=1, status=None)`.

    On a terminal: a rich bar. In a log or a pipe: a plain line every $FACEVER_PROGRESS_INTERVAL
    seconds (default 15) and one at the end, so a job under nohup or a cluster scheduler is never silent.
    `done`: work finished before this run (a resume), counted but not timed.
    """
    bar = open_progress(description, total, unit, done=done)
    try:
        yield bar.advance
    finally:
        bar.close()


class TrainingProgress:
    """A training run's progress: "checking images" while the data is scanned, then "training" in
    steps with the last window's epoch, loss, learning rate and images/s. `scan` and `step` are the
    hooks the training library calls; `close()` ends whichever bar is open."""

    def __init__(self, description: str = "training"):
        self.description = description
        self.bars: dict = {}

    def _close(self, name: str) -> None:
        if name in self.bars:
            self.bars.pop(name).close()

    def scan(self, n: int) -> None:
        if "scan" not in self.bars:
            self.bars["scan"] = open_progress("checking images", None)
        self.bars["scan"].advance(n)

    def step(self, info) -> None:
        status = None
        if info.loss is not None:
            status = (f"epoch {info.epoch + 1} loss {info.loss:.3f} lr {info.lr:.3g} "
                      f"{format_rate(info.images_per_second)}")
        if "train" in self.bars:
            self.bars["train"].advance(1, status=status)
            return
        self._close("scan")  # the scan is over: its count is final
        # The bar starts after this step: the steps done so far (all of them for a resumed run, which
        # starts at its checkpoint's step) are counted, not timed, so the rate is this run's.
        self.bars["train"] = open_progress(self.description, info.total_steps, unit="step", done=info.step)
        self.bars["train"].advance(0, status=status)

    def close(self) -> None:
        self._close("scan")
        self._close("train")


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


class DownloadProgress:
    """A download (bytes), then maybe an archive's extraction (members), on stderr: rich bars on a
    terminal, plain timed lines in a log or a pipe. Feed it `data_prep.fetch`'s callbacks:
    `on_start(already, total)`, `advance(n)`, `on_extract(members)`, `extract_advance(n)`; `close()`
    (or leave the `with` block) stops the bars."""

    def __init__(self, label: str):
        self.label = label
        self.quiet = not sys.stderr.isatty()
        self._bars: dict = {}  # rich Progress objects: "download", "extract"
        self._tasks: dict = {}
        self._plain: dict = {}  # PlainProgress: "download" (MB), "extract" (members)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def on_start(self, already: int, total: int | None) -> None:
        if already:
            info(f"resuming {self.label} from byte {already:,}")
        if self.quiet:
            if "download" in self._plain:
                self._plain.pop("download").close()
            # Bytes a resumed download already had are counted, not timed: the rate is this run's.
            self._plain["download"] = PlainProgress(self.label, total / 1e6 if total else None, unit="MB",
                                                    done=already / 1e6)
            return
        if "download" not in self._bars:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

            bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                           TimeRemainingColumn(), console=err_console)
            bar.start()
            self._bars["download"] = bar
            self._tasks["download"] = bar.add_task(self.label, total=total, completed=already)
        else:  # a retry: the server may have restarted from zero
            self._bars["download"].reset(self._tasks["download"], total=total, completed=already)

    def advance(self, n: int) -> None:
        if self.quiet:
            self._plain["download"].advance(n / 1e6)
        else:
            self._bars["download"].advance(self._tasks["download"], n)

    def on_extract(self, members: int) -> None:
        if self.quiet:
            if "download" in self._plain:
                self._plain.pop("download").close()
            self._plain["extract"] = PlainProgress(f"extracting {self.label}", members, unit="file")
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if "download" in self._bars:
            self._bars.pop("download").stop()
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       console=err_console)
        bar.start()
        self._bars["extract"] = bar
        self._tasks["extract"] = bar.add_task(f"extracting {self.label}", total=members)

    def extract_advance(self, n: int) -> None:
        if self.quiet:
            self._plain["extract"].advance(n)
        else:
            self._bars["extract"].advance(self._tasks["extract"], n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.stop()
        for plain in self._plain.values():
            plain.close()
        self._bars.clear()
        self._plain.clear()


def pull_events():
    """What the library's model pulls say (`facever.data_prep.pretrained.PullEvents`), shown here: licence
    and trust-on-first-use notices as plain lines, the download as a progress bar, all on stderr."""
    from facever.data_prep.pretrained import PullEvents

    class ConsolePullEvents(PullEvents):
        def __init__(self):
            self.progress: DownloadProgress | None = None

        def notice(self, text: str) -> None:
            info(text)

        def download_started(self, filename: str, already: int, total: int | None) -> None:
            if self.progress is None:
                self.progress = DownloadProgress(filename)
            self.progress.on_start(already, total)

        def downloaded(self, n: int) -> None:
            if self.progress is not None:
                self.progress.advance(n)

        def download_finished(self) -> None:
            if self.progress is not None:
                self.progress.close()
                self.progress = None

    return ConsolePullEvents()


@contextlib.contextmanager
def library_warnings() -> Iterator[None]:
    """Show the library's logged warnings (resized crops, cache misses) as `warning:` lines on stderr,
    and what a model pulled by name on first use says (licence, trust on first use, download progress)."""
    import logging

    from facever.data_prep.pretrained import pull_events as library_pull_events

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
        with library_pull_events(pull_events()):
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
