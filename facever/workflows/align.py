"""`facever align SRC DST` as a library call, in this process (`align`) or in a child process of its own
(`align_in_child`, what `reproduce` runs).

Both do the same: refuse DST when it is SRC, lock DST (one writer), check the device and list the work
before any of it (a missing GPU or an empty SRC fails first), then align what is not aligned yet
(`facever.data_prep.align_dataset`: a rerun resumes). Messages go to `say`, progress to `progress`
(a context-manager factory `progress(description, total, unit=..., done=...)` yielding
`advance(n)`, as the CLI's `progress_bar`).

Why a child process for a pipeline: a process that has run the detector (MTCNN, OpenCV's thread pool
and the crop writer threads) and then forks DataLoader workers for embedding has deadlocked in
OpenCV's inherited state (tests/test_fork_safety.py), and the detector's memory stays with the
process. A child started with `spawn` (a fresh interpreter, no inherited state) runs the alignment
and exits clean; it imports facever as the parent did, so a folder named `facever` in the working
directory cannot stand in for the package (it did, for `python -m facever align`).
"""

from __future__ import annotations

import contextlib
import os
import queue as queue_module
from pathlib import Path
from typing import Any, Callable, ContextManager

from facever.core.errors import FaceverError
from facever.data_prep.align_dataset import AlignConfig, AlignPlan, AlignSummary

ProgressFactory = Callable[..., ContextManager[Callable[..., None]]]


@contextlib.contextmanager
def _no_progress(description: str, total: int | None, unit: str = "img", done: int = 0):  # noqa: ARG001
    yield lambda n=1, **kw: None


def default_workers() -> int:
    """Decoding processes when none are asked for: the CPUs but one, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def plan(src: str | Path, dst: str | Path, config: AlignConfig) -> AlignPlan:
    """What aligning SRC into DST with `config` will do, every check made (hold DST's lock)."""
    from facever.core.devices import resolve_device
    from facever.data_prep.align_dataset import plan_alignment

    resolve_device(config.device)  # a missing GPU fails here, before any work
    found = plan_alignment(src, dst, config=config)
    if not found.items:
        raise FaceverError(f"{src}: no images found")
    return found


def align(
    src: str | Path,
    dst: str | Path,
    config: AlignConfig,
    *,
    say: Callable[[str], None] | None = None,
    progress: ProgressFactory | None = None,
) -> AlignSummary:
    """Align every image of SRC not yet aligned in DST, in this process (module docstring)."""
    from facever.core.devices import resolve_device
    from facever.core.locks import folder_lock
    from facever.data_prep.align_dataset import check_output_folder, make_aligner, run_alignment

    say = say or (lambda text: None)
    check_output_folder(src, dst)
    with folder_lock(dst, kind="align"):  # one writer per DST (new, empty or facever's crops), held until written
        work = plan(src, dst, config)
        if work.already_done:
            say(f"{work.already_done} of {len(work.items)} images already aligned in {dst} (resuming; "
                "`overwrite` redoes them)")
        h, w = config.size
        say(f"aligning {len(work.todo)} images to {h}x{w} on {resolve_device(config.device)}")
        aligner = make_aligner(config)
        if work.todo:
            # The detector's first call costs seconds of start-up (10-15 s on a loaded 2-core CPU): said
            # and paid here, so the progress that follows is the images'.
            say("loading the face detector (MTCNN) ...")
            aligner.warm_up()
        with (progress or _no_progress)("align", total=len(work.todo)) as advance:
            return run_alignment(work, progress=advance, aligner=aligner)


# -- in a child process ----------------------------------------------------------------------------------


def align_in_child(
    src: str | Path,
    dst: str | Path,
    config: AlignConfig,
    *,
    say: Callable[[str], None] | None = None,
    progress: ProgressFactory | None = None,
    stop_requested: Callable[[], bool] | None = None,
    description: str = "align",
) -> dict[str, Any]:
    """`align` in a `spawn`ed child process (module docstring); returns its summary as a dict.

    Messages and progress come back through a queue. When `stop_requested()` turns true the child is
    asked to stop (its finished crops stay, a rerun resumes) and KeyboardInterrupt is raised here.
    FaceverError from the child is raised here with its message; a child that dies is a FaceverError
    naming its exit code.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    child = context.Process(target=_child_main, args=(str(src), str(dst), config, messages), name="facever-align")
    child.start()
    try:
        return _follow(child, messages, say=say or (lambda text: None), progress=progress or _no_progress,
                       stop_requested=stop_requested or (lambda: False), description=description, src=src)
    finally:
        if child.is_alive():  # stopped, or the parent is going down: let the child finish its writes
            child.terminate()
        child.join()


def _follow(child, messages, *, say, progress, stop_requested, description: str, src) -> dict[str, Any]:
    with contextlib.ExitStack() as bars:
        advance = None
        while True:
            if stop_requested() and child.is_alive():
                child.terminate()  # SIGTERM: the child stops after the crops being written (its handler)
                child.join()
                raise KeyboardInterrupt(f"alignment of {src} stopped; rerun to continue")
            try:
                kind, *payload = messages.get(timeout=0.2)
            except queue_module.Empty:
                if not child.is_alive() and messages.empty():
                    raise FaceverError(f"aligning {src} stopped unexpectedly (exit status {child.exitcode}); "
                                       "rerun to continue") from None
                continue
            if kind == "say":
                say(payload[0])
            elif kind == "start":
                advance = bars.enter_context(progress(description, total=payload[0]))
            elif kind == "progress" and advance is not None:
                advance(payload[0])
            elif kind == "error":
                raise FaceverError(payload[0], options=payload[1])
            elif kind == "done":
                return payload[0]


def _child_main(src: str, dst: str, config: AlignConfig, messages) -> None:
    """The child: align, sending messages, progress (batched) and the summary (or the error) back."""
    import signal
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it asks us to stop

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt  # run_alignment finishes the crops being written and writes its report

    signal.signal(signal.SIGTERM, stop)
    pending = {"n": 0, "at": time.monotonic()}

    def advance(n: int = 1, **kw) -> None:  # noqa: ARG001
        pending["n"] += n
        if time.monotonic() - pending["at"] > 0.2:
            messages.put(("progress", pending["n"]))
            pending.update(n=0, at=time.monotonic())

    @contextlib.contextmanager
    def progress(description: str, total: int | None, unit: str = "img", done: int = 0):  # noqa: ARG001
        messages.put(("start", total))
        try:
            yield advance
        finally:
            messages.put(("progress", pending["n"]))

    try:
        summary = align(src, dst, config, say=lambda text: messages.put(("say", text)), progress=progress)
        messages.put(("done", summary.to_dict()))
    except FaceverError as exc:
        messages.put(("error", str(exc), tuple(exc.options)))
    except OSError as exc:  # a path that cannot be read or written: named, as the command line does
        messages.put(("error", f"{exc.filename}: {exc.strerror or exc}" if exc.filename else str(exc), ()))
    except KeyboardInterrupt:
        pass
