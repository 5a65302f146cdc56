"""Full-state training checkpoints, written atomically and read back with `weights_only=True`.

A checkpoint is a plain dict of tensors and primitives (no pickled objects), so a checkpoint from
anywhere can be loaded without running code:

    {"format": "facever-checkpoint", "format_version": 2, "config": dict, "class_map": [str],
     "model": state_dict, "head": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ...,
     "epoch": int, "step": int, "world_size": int, "rng": [{...} per rank], "best": {...},
     "validation_pending": bool}

`rng[r]` holds rank r's generators (Python, NumPy, torch CPU, and its own CUDA device's when on a GPU),
restored by rank r on its device. `validation_pending`: the run was stopped at a step that was due a
validation; the resumed run validates first.

With the sharded classifier every rank also writes its own part (its classifier rows, its optimiser
state, its class sampler) to `checkpoint_shards/step<step>-rank<r>-of<W>.pt`, before rank 0 writes
`checkpoint.pt`; the main file names the step, so a crash between the two leaves the previous
step's shards and main file in agreement. Older shards are removed once the main file is written.

`step` counts optimiser steps done; the run continues at epoch `step // steps_per_epoch`, after
`step % steps_per_epoch` batches of it (the sampler's order depends on seed and epoch only).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facever.core.atomic import atomic_path
from facever.core.errors import FaceverError, InputFileError
from facever.core.model_files import load_tensor_file
from facever.training.config import TrainConfig, resume_differences

FORMAT = "facever-checkpoint"
FORMAT_VERSION = 2  # 2: one generator state per rank (1: rank 0's only)


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's generator states as tensors and numbers: Python, NumPy, torch's CPU generator
    and, on a CUDA `device`, that device's generator (the one its noise and dropout draw from)."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    on_cuda = device is not None and device.type == "cuda"
    return {
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
        "numpy": {"name": str(np_name), "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "device": str(device) if device is not None else "cpu",
        "cuda": torch.cuda.get_rng_state(device) if on_cuda else None,
    }


def restore_rng_state(saved: list[dict[str, Any]] | dict[str, Any], *, rank: int = 0,
                      device: torch.device | None = None) -> list[str]:
    """Restore the generators of `rank` from a checkpoint's `rng` (one state per rank) on `device`.

    Returns notes on what could not be restored (the run goes on, but is no longer bitwise the
    uninterrupted one): a rank or a CUDA generator state the checkpoint lacks. A format-1 checkpoint
    (one state, written by rank 0 with every GPU's generator) gives rank 0 its own GPU's state only.
    """
    notes: list[str] = []
    on_cuda = device is not None and device.type == "cuda"
    if isinstance(saved, dict):  # format 1
        state, legacy_cuda = saved, list(saved.get("cuda") or [])
        cuda_state = None
        if on_cuda and rank == 0:
            index = device.index if device.index is not None else torch.cuda.current_device()
            cuda_state = legacy_cuda[index] if index < len(legacy_cuda) else None
    elif rank < len(saved):
        state = saved[rank]
        cuda_state = state.get("cuda")
    else:
        notes.append(f"the checkpoint holds generator states for {len(saved)} process(es), none for rank {rank}: "
                     "its random draws restart from the seed")
        return notes
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state((nps["name"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"], nps["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if on_cuda:
        if cuda_state is None:
            notes.append(f"the checkpoint holds no CUDA generator state for rank {rank} (written on "
                         f"{state.get('device', 'an older facever')}): noise and dropout on {device} restart from "
                         "the seed, so the resumed run is not bitwise the uninterrupted one")
        else:
            torch.cuda.set_rng_state(cuda_state.cpu(), device)
    return notes


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` (plain data) atomically: a crash leaves the previous checkpoint intact."""
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`; InputFileError for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no checkpoint to resume from")
    try:
        ck = load_tensor_file(path)
    except InputFileError:
        raise
    except Exception as exc:  # torch raises many types for truncated, foreign or unsafe files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputFileError(path, f"not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise InputFileError(path, "not a facever training checkpoint")
    version = ck.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputFileError(path, f"checkpoint format version {version!r} is not a version number (a damaged or edited file?)")
    if version > FORMAT_VERSION:
        raise InputFileError(path, f"checkpoint format {ck.get('format_version')} is newer than this facever reads")
    return ck


def shard_path(ck_path: str | Path, *, step: int, rank: int, world_size: int) -> Path:
    """Where rank `rank` of `world_size` keeps its part of the checkpoint of step `step`."""
    ck_path = Path(ck_path)
    return ck_path.parent / f"{ck_path.stem}_shards" / f"step{step:09d}-rank{rank}-of{world_size}.pt"


def save_shard(ck_path: str | Path, state: dict[str, Any], *, step: int, rank: int, world_size: int) -> Path:
    """Write this rank's part of the checkpoint of step `step` (plain data, atomically)."""
    path = shard_path(ck_path, step=step, rank=rank, world_size=world_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, {"step": step, "rank": rank, "world_size": world_size, **state})


def load_shard(ck_path: str | Path, *, step: int, rank: int, world_size: int) -> dict[str, Any]:
    """This rank's part of the checkpoint of step `step`; InputFileError when it is missing or foreign."""
    path = shard_path(ck_path, step=step, rank=rank, world_size=world_size)
    if not path.is_file():
        raise InputFileError(path, f"missing: the checkpoint of step {step} was written by {world_size} processes "
                                   f"with the classifier split across them; rank {rank}'s part is not there")
    shard = load_checkpoint(path)
    if (int(shard.get("step", -1)), int(shard.get("rank", -1)), int(shard.get("world_size", -1))) != (step, rank, world_size):
        raise InputFileError(path, f"holds step {shard.get('step')} rank {shard.get('rank')}, expected step {step} rank {rank}")
    return shard


def prune_shards(ck_path: str | Path, *, keep_step: int) -> None:
    """Remove the shard files of other steps than `keep_step` (call after writing the main file)."""
    folder = shard_path(ck_path, step=keep_step, rank=0, world_size=1).parent
    prefix = f"step{keep_step:09d}-"
    if folder.is_dir():
        for path in folder.glob("step*-rank*-of*.pt"):
            if not path.name.startswith(prefix):
                path.unlink(missing_ok=True)


def check_resume(ck: dict[str, Any], config: TrainConfig, *, world_size: int, path: str | Path) -> TrainConfig:
    """Refuse to resume with settings that would change the run; returns the checkpoint's config."""
    try:
        saved = TrainConfig.from_dict(ck["config"])
    except (FaceverError, TypeError, KeyError) as exc:
        raise InputFileError(path, f"checkpoint config is unreadable ({exc})") from None
    diffs = resume_differences(saved, config)
    if diffs:
        listed = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in sorted(diffs.items()))
        raise FaceverError(
            f"{path}: cannot resume with a different configuration ({listed}); use the original options "
            "or start a new run with another `out`", options=('out',))
    if int(ck.get("world_size", 1)) != world_size:
        raise FaceverError(
            f"{path}: the run used {ck.get('world_size')} process(es), now {world_size}; resume with the same "
            "number of processes (the batches depend on it"
            + (", and each process holds its own part of the classifier)" if saved.classifier == "sharded" else ")")
        )
    return saved
