"""One process or many (torchrun): which rank we are, which device we use, and how ranks agree.

`torchrun --nproc_per_node=N -m facever train ...` sets RANK, WORLD_SIZE and LOCAL_RANK; we then
join a process group (NCCL on CUDA, gloo on CPU) and use GPU LOCAL_RANK. Without those variables
the run is a single process and every collective is a no-op. Rank 0 alone writes files.

Two timeouts: collectives of the training steps use the group's (`COLLECTIVE_TIMEOUT`); the wait
while rank 0 alone decodes the training set before the first step (hours for Glint360K, or on slow
storage) goes through a gloo group of its own with `MAIN_WORK_TIMEOUT`, so that NCCL's watchdog
does not kill the waiting ranks.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from facever.core.devices import resolve_device
from facever.core.environment import env_int
from facever.core.errors import FaceverError

COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=60)
MAIN_WORK_TIMEOUT = datetime.timedelta(hours=48)


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool
    # gloo group whose barrier waits up to MAIN_WORK_TIMEOUT (None in one process)
    patient_group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def wait_for_main(self) -> None:
        """A barrier for long work done by rank 0 alone (the decode pass): waits up to MAIN_WORK_TIMEOUT."""
        if self.distributed:
            dist.barrier(group=self.patient_group)

    def any_true(self, flag: bool) -> bool:
        """True on every rank if `flag` is True on any rank (for a Ctrl-C seen by one process)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, value: float) -> float:
        if not self.distributed:
            return value
        t = torch.tensor([float(value)], device=self.device, dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """`values` (a tensor on this rank's device) summed over every rank: one all-reduce (a copy in one process)."""
        total = values.clone()
        if self.distributed:
            dist.all_reduce(total)
        return total

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (small, picklable: e.g. generator states), in rank order, on every rank."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def close(self) -> None:
        if not dist.is_initialized():
            return
        if self.owns_group:
            dist.destroy_process_group()
        elif self.patient_group is not None:
            dist.destroy_process_group(self.patient_group)


def launched_rank() -> tuple[int, int]:
    """(rank, world size) as torchrun set them for this process; (0, 1) outside torchrun. Read before
    the process group exists, to decide who checks and writes the run folder."""
    return env_int("RANK", 0, low=0), env_int("WORLD_SIZE", 1, low=1)


def init_distributed(device: str = "auto") -> DistContext:
    """Read torchrun's environment and join the process group; a single process otherwise.

    The device always carries its index (`cuda:N`, checked against the machine's GPUs). Under torchrun
    GPU LOCAL_RANK becomes the process's current device (`torch.cuda.set_device`); in one process the
    caller makes it current for the run (`facever.core.devices.device_scope`), so that nothing
    (pin-memory thread, generator queries) opens a second context on GPU 0.
    """
    world_size = env_int("WORLD_SIZE", 1, low=1)
    dev = resolve_device(device)
    if world_size <= 1:
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        return DistContext(0, 1, 0, dev, owns_group=False)
    local_rank = env_int("LOCAL_RANK", 0, low=0)
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise FaceverError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s); "
                "start at most one process per GPU"
            )
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    owns = not dist.is_initialized()
    if owns:
        kwargs = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT, **kwargs)
    # Created by every rank at the same point (a collective); gloo, whose barrier honours its timeout.
    patient = dist.new_group(backend="gloo", timeout=MAIN_WORK_TIMEOUT)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev, owns_group=owns,
                       patient_group=patient)
