"""Choosing a torch device from the CLI's `--device cpu|cuda|auto` (or `cuda:1`), and the process-wide
settings that go with it (current CUDA device, cuDNN autotuning, deterministic kernels)."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

from facever.core.errors import FaceverError

# cuBLAS needs a fixed workspace to be deterministic (CUDA's and torch's reproducibility notes).
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"


def resolve_device(name="auto"):
    """Return a `torch.device` for a name (or a `torch.device`, checked and returned).

    `auto` picks CUDA when available. Asking for CUDA without one, or for `cuda:N` beyond the
    machine's devices, is a FaceverError (instead of torch's later "invalid device ordinal").
    """
    import torch

    if isinstance(name, torch.device):
        device = name
    else:
        name = (name or "auto").lower()
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise FaceverError(f"`device` {name}: no CUDA device is available on this machine (use `device` cpu)", options=('device',))
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise FaceverError(f"`device` {name}: {exc}", options=('device',)) from None
    if device.type == "cuda" and device.index is not None:
        check_cuda_index(device.index, torch.cuda.device_count())
    elif device.type not in ("cpu", "cuda"):
        _check_other_backend(device)
    return device


# Device types besides cpu and cuda that facever runs on when this PyTorch build and machine have them.
OTHER_BACKENDS = ("mps", "xpu")


def _check_other_backend(device) -> None:
    """FaceverError unless `device` (mps, xpu) works here: asked for on a build or machine without it,
    it would otherwise fail at the first tensor moved there, deep inside a run."""
    import torch

    if device.type not in OTHER_BACKENDS:
        raise FaceverError(f"`device` {device}: not a device facever runs on (cpu, cuda, cuda:N, "
                           f"{', '.join(OTHER_BACKENDS)} or auto)", options=("device",))
    if device.type == "mps" and not torch.backends.mps.is_available():
        reason = "no Apple GPU here" if torch.backends.mps.is_built() else "this PyTorch is built without MPS"
        raise FaceverError(f"`device` {device}: not available ({reason}); use `device` cpu", options=("device",))
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FaceverError(f"`device` {device}: not available with this PyTorch on this machine ({reason[:120]})",
                           options=("device",)) from None


def check_cuda_index(index: int, count: int) -> None:
    """FaceverError unless `cuda:index` exists among `count` CUDA devices."""
    if not 0 <= index < count:
        known = "none" if count == 0 else "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        raise FaceverError(f"cuda:{index}: this machine has {count} CUDA device(s) ({known})")


@contextlib.contextmanager
def device_scope(device) -> Iterator[None]:
    """Make a CUDA `device` the current one while the block runs (nothing for other devices).

    Work that does not name a device (the DataLoader's pin-memory thread, `torch.cuda` queries)
    then uses it too, instead of opening a second context on GPU 0.
    """
    if getattr(device, "type", None) == "cuda" and device.index is not None:
        import torch

        with torch.cuda.device(device):
            yield
    else:
        yield


@contextlib.contextmanager
def cudnn_autotune(enabled: bool) -> Iterator[None]:
    """cuDNN benchmarks the convolution algorithms of each new input shape (`enabled`) or not, inside
    the block; the previous setting is restored afterwards. Worth it only for fixed shapes."""
    import torch

    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = bool(enabled)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


@contextlib.contextmanager
def compute_settings(device, *, deterministic: bool = False) -> Iterator[None]:
    """The kernel choices of a training run (and of anything that must time it the same way).

    - default: cuDNN autotuning on CUDA (fixed batch shapes), torch's default kernels otherwise;
    - `deterministic`: no autotuning, `cudnn.deterministic`, a fixed cuBLAS workspace
      (`CUBLAS_WORKSPACE_CONFIG`, when not already set) and `torch.use_deterministic_algorithms(True,
      warn_only=True)`: an operation without a deterministic implementation warns instead of failing.
    Everything is restored afterwards. On a CPU both give the same numbers.
    """
    import torch

    before = (
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    if deterministic:
        # Read when cuBLAS creates its handle, i.e. at the first matrix product on the device.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with cudnn_autotune(getattr(device, "type", None) == "cuda" and not deterministic):
            yield
    finally:
        torch.backends.cudnn.deterministic = before[0]
        torch.use_deterministic_algorithms(before[1], warn_only=before[2])
        if before[3] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = before[3]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a cluster job's share), at least 1."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def bound_workers(requested: int, *, tasks: int) -> int:
    """Worker processes to start for `tasks` units of work (batches, images) when `requested` were asked
    for: never more than the CPUs available nor than the tasks (a thousand workers for ten images only
    spend a minute starting up), and 0 (work in this process) stays 0."""
    return max(0, min(int(requested), available_cpus(), int(tasks)))


def default_loader_workers(cap: int = 4) -> int:
    """Data-loading worker processes by default: `cap`, but never more than the CPUs available
    (more workers than CPUs only compete with the training process; torch warns about it)."""
    return min(cap, available_cpus())


def cpu_has_native_bf16() -> bool:
    """True when the CPU multiplies bfloat16 natively (Intel AMX or AVX512-BF16), where bf16 autocast
    runs convolutions several times faster than float32 (oneDNN); elsewhere it is emulated and slower."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def resolve_amp(mode: str, device) -> str:
    """The precision `mode` ("auto", "bf16", "fp16" or "off") means on `device` (a name or a torch.device):
    "bf16", "fp16" or "off". The one auto rule of facever, for training and inference alike
    (`facever.core.settings.AMP_AUTO_RULE`): bf16 autocast on CUDA (fp16 on GPUs without bf16), float32
    on a CPU, so that a CPU's numbers do not depend on which CPU ran them."""
    from facever.core.settings import AMP_MODES, check_choice

    check_choice("amp", mode, AMP_MODES)
    if mode != "auto":
        return mode
    device = resolve_device(device)
    if device.type != "cuda":
        return "off"
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def amp_dtype(mode: str):
    """The autocast dtype of a resolved precision ("bf16", "fp16", "off"): torch.bfloat16, torch.float16 or None."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[mode]
