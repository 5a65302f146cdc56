"""`facever train` as one library call: where a run's settings come from, which folder it writes,
whether it continues a run there, and who writes what under torchrun; then the loop
(`facever.training.loop.train`).

`train_run(TrainRequest(...), TrainHooks(...))` works in this order, so that a refused command
leaves nothing behind (no folder, no config.toml, no training.log):

1. settings: TrainConfig's defaults < `recipe` < `config_file` < `options` (the command line's), each
   value remembering its source (RUN/config.toml writes them; an error names the file or recipe);
2. the run folder, locked by rank 0 for the whole job. RUN/checkpoint.pt is continued: with `resume`
   the options default to the run's own; without it the command must be the one that started the run,
   and a setting that decides the numbers (outside `RUNTIME_FIELDS`) that differs is refused, naming
   it. A finished run (its last step checkpointed, model.pt written) is reported, not redone. A new run
   goes only into a new or empty folder, or one holding facever's leftovers of a run that never
   checkpointed: never over a finished model.pt, never among files facever did not write;
3. every check that can fail: the configuration, the validation inputs, the training data (opened
   once, handed to the loop), the model's size (counted on the meta device);
4. rank 0 writes RUN/config.toml, starts RUN/training.log (`hooks.log_to`) and TensorBoard;
5. the loop, polling the stop flag of `hooks.stop_signals`: a first Ctrl-C or SIGTERM checkpoints and
   returns `interrupted`; a second Ctrl-C raises KeyboardInterrupt (the last checkpoint stands).

The library prints nothing: messages, progress, the stop signals and the log file go through `TrainHooks`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping

from facever.core.errors import FaceverError, InputFileError
from facever.training.config import TrainConfig

#: What a training run writes in its folder (besides the lock); a new run may start among these only.
RUN_FILES = frozenset({
    "checkpoint.pt", "checkpoint_shards", "model.pt", "model_last.pt", "metrics.jsonl", "config.json",
    "config.toml", "classes.txt", "corrupt_images.txt", "training.log", "cache", "tensorboard",
})
DEFAULT_LOG_EVERY = 10
STOPPING = "stopping after this step and saving a checkpoint (Ctrl-C again to abort at once)"


@dataclass(frozen=True)
class TrainRequest:
    """What a `facever train` command asks for.

    `options`: TrainConfig fields as the command line gave them (None or absent: not given), typed
    (input_size a (h, w) tuple, milestones a tuple, paths absolute strings). `data`: DATA, else the
    config file's `data`, else (with `resume`) the run's own. `log_every`: steps per metrics line
    (default: the run's own when continuing, else 10).
    """

    out: Path
    data: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    config_file: Path | None = None
    resume: bool = False
    log_every: int | None = None
    tensorboard: bool = False


@dataclass
class TrainHooks:
    """How the caller follows a run; all optional. Rank 0 alone gets messages, progress and the log.

    `say(text)`: notable events; `warn(text)`: the abort notice; `progress(StepInfo)` after each step;
    `scan_progress(n)` while the images are checked; `stop_signals(message)`: a context manager yielding
    `stop_requested() -> bool` that turns Ctrl-C/SIGTERM into a stop request and says `message` (None on
    other ranks) at the first one; `log_to(path)`: from now on copy the console into `path` (training.log).
    """

    say: Callable[[str], None] | None = None
    warn: Callable[[str], None] | None = None
    progress: Callable[[Any], None] | None = None
    scan_progress: Callable[[int], None] | None = None
    stop_signals: Callable[[str | None], ContextManager[Callable[[], bool]]] | None = None
    log_to: Callable[[Path], None] | None = None


@dataclass
class TrainOutcome:
    """`result`: the loop's TrainResult (rank 0's files in it). `continued`: the run resumed from its
    checkpoint; `already_done`: it had finished before, nothing was trained. `data`: the training data."""

    result: Any
    config: TrainConfig
    data: Path
    continued: bool
    already_done: bool
    is_main: bool


@dataclass
class _Plan:
    config: TrainConfig
    sources: dict[str, str]
    data: Path
    resume: bool
    log_every: int
    checkpoint: dict[str, Any] | None  # the small part of it: step, steps_per_epoch, best, class_map
    training_set: Any = None


# ---------------------------------------------------------------------------------------------------
# 1-3: settings, run folder, checks (nothing written)


def check_run_folder(out: Path) -> None:
    """A new run goes into a new or empty folder, or one holding only a training run's own files: never
    over a finished model (`loop.refuse_finished_model`), never among the user's files."""
    from facever.core.locks import LOCK_NAME
    from facever.training.loop import refuse_finished_model

    if not out.is_dir():
        return
    refuse_finished_model(out)

    def ours(name: str) -> bool:  # the run's files, the lock, a killed write's leftover (.NAME.partial-*)
        return name in RUN_FILES or name == LOCK_NAME or (name.startswith(".") and ".partial-" in name)

    foreign = sorted(p.name for p in out.iterdir() if not ours(p.name))
    if foreign:
        raise FaceverError(f"{out}: holds files a training run does not write (e.g. {foreign[0]}); a run goes into "
                           "a new or empty folder: choose another `out`", options=("out",))


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """What deciding to continue needs from a checkpoint (its weights are left to the loop)."""
    from facever.training.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    try:
        saved = TrainConfig.from_dict(ck["config"])
    except (FaceverError, TypeError, KeyError) as exc:
        raise InputFileError(path, f"checkpoint config is unreadable ({exc})") from None
    keys = ("step", "steps_per_epoch", "best", "class_map", "world_size", "log_every")
    return {"saved": saved, "config": ck["config"], **{k: ck.get(k) for k in keys}}


def plan_run(request: TrainRequest, *, world_size: int = 1) -> _Plan:
    """Steps 1-3 of the module docstring for `request`: the configuration and what to do, every check
    done, nothing written. Call it holding the run folder's lock."""
    from facever.training.checkpoint import check_resume
    from facever.training.loop import CHECKPOINT_NAME, check_model_size, open_run_data
    from facever.training.options import make_train_config, name_the_source, train_command_options
    from facever.training.validation import check_validation_inputs

    out = Path(request.out)
    values, data, sources = train_command_options(
        request.options, request.data, config_file=request.config_file, recipe=request.recipe, out=out,
        resume=request.resume)
    data_str = str(Path(data).resolve())
    ck_path = out / CHECKPOINT_NAME
    ck = _read_checkpoint(ck_path) if request.resume or ck_path.is_file() else None
    if ck is not None and request.resume:  # the run's own settings, changed only where the command says
        try:
            config = ck["saved"].replace(data=data_str, **values)
        except FaceverError as exc:
            raise name_the_source(exc, sources) from None
    else:  # the command's own settings: for a run in progress, they must be the ones that started it
        config = make_train_config({**values, "data": data_str}, sources=sources)
    if ck is not None:
        check_resume(ck, config, world_size=world_size, path=ck_path)
    else:
        check_run_folder(out)
    log_every = request.log_every or int((ck or {}).get("log_every") or DEFAULT_LOG_EVERY)
    plan = _Plan(config, dict(sources), Path(data), ck is not None, log_every, ck)
    if _finished(plan, out):
        return plan
    check_validation_inputs(config)
    if config.cache_dir and config.cache != "none":  # a file where the cache folder goes: refused before writing
        from facever.core.output_folders import check_folder_path

        check_folder_path(config.cache_dir, what="cache folder")
    if request.tensorboard:
        from facever.training.tensorboard import check_tensorboard

        check_tensorboard()
    plan.training_set = open_run_data(config)
    try:
        check_model_size(config, num_classes=len(plan.training_set.classes), world_size=world_size)
    except FaceverError as exc:
        raise name_the_source(exc, sources) from None
    return plan


def _finished(plan: _Plan, out: Path) -> bool:
    """The run in `out` did its last step and wrote its model: nothing left to train."""
    ck = plan.checkpoint
    if ck is None or not ck.get("steps_per_epoch") or not (out / "model.pt").is_file():
        return False
    return int(ck["step"]) >= plan.config.epochs * int(ck["steps_per_epoch"])


def _finished_result(plan: _Plan, out: Path):
    """The TrainResult of a run that had finished before, from its checkpoint and model.pt."""
    from facever.models.bundle import read_model_bundle
    from facever.training.loop import TrainResult

    ck = plan.checkpoint
    model = read_model_bundle(out / "model.pt")
    best = ck.get("best") or {}
    last = out / "model_last.pt"
    return TrainResult(
        out_dir=out, steps=int(ck["step"]), total_steps=plan.config.epochs * int(ck["steps_per_epoch"]),
        interrupted=False, model_path=out / "model.pt", last_model_path=last if last.exists() else None,
        best_accuracy=best.get("accuracy"), best_step=best.get("step"), num_classes=len(ck["class_map"]),
        num_images=int(model.get("train_images") or 0),
    )


# ---------------------------------------------------------------------------------------------------
# 4-5: the run


def train_run(request: TrainRequest, hooks: TrainHooks | None = None) -> TrainOutcome:
    """Run `facever train` (module docstring). Raises FaceverError for anything the user can fix,
    before writing anything; KeyboardInterrupt at a second Ctrl-C."""
    from facever.core.locks import folder_lock
    from facever.training.distributed import launched_rank

    hooks = hooks or TrainHooks()
    rank, world_size = launched_rank()
    main = rank == 0
    out = Path(request.out)
    # Rank 0 holds OUT for the whole job: a second `train` into it is refused instead of interleaving.
    with folder_lock(out if main else None, kind=None):  # run folders: train's own rule (plan_run)
        plan = plan_run(request, world_size=world_size)
        say = (hooks.say or (lambda text: None)) if main else (lambda text: None)
        if _finished(plan, out):
            say(f"{out}: this run finished before (step {plan.checkpoint['step']}); nothing to train")
            return TrainOutcome(_finished_result(plan, out), plan.config, plan.data, True, True, main)
        result = _train(plan, out, request, hooks, main=main, say=say)
    return TrainOutcome(result, plan.config, plan.data, plan.resume, False, main)


def _train(plan: _Plan, out: Path, request: TrainRequest, hooks: TrainHooks, *, main: bool, say) -> Any:
    from facever.training.config_files import write_run_config
    from facever.training.loop import train

    from facever.training.tensorboard import MetricsToTensorBoard

    board = None
    if main:
        write_run_config(out, plan.config, sources=plan.sources)
        if hooks.log_to is not None:
            hooks.log_to(out / "training.log")  # the console's lines, appended on every rerun
        if request.tensorboard:
            board = MetricsToTensorBoard(out)

    def progress(info) -> None:
        if board is not None and info.loss is not None:
            board.update()
        if hooks.progress is not None:
            hooks.progress(info)

    signals = hooks.stop_signals or (lambda message: contextlib.nullcontext(None))
    try:
        with signals(STOPPING if main else None) as stop_requested:
            return train(plan.config, out, resume=plan.resume, progress=progress if main else None,
                         scan_progress=hooks.scan_progress if main else None, on_message=say,
                         stop_requested=stop_requested, log_every=plan.log_every, training_set=plan.training_set)
    except KeyboardInterrupt:
        # A second Ctrl-C: stop at once. Files are written atomically, so the last checkpoint stands.
        if main and hooks.warn is not None:
            hooks.warn(f"aborted; the last checkpoint in {out} (if any) is intact: run the same command again to "
                       "continue")
        raise
    finally:
        if board is not None:
            board.close()
