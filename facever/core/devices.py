"""Choosing a torch device from the CLI's `--device cpu|cuda|auto` (or `cuda:1`)."""

from __future__ import annotations

from facever.core.errors import FaceverError


def resolve_device(name: str = "auto"):
    """Return a `torch.device`; `auto` picks CUDA when available. Asking for CUDA without one is an error."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FaceverError(f"--device {name}: no CUDA device is available on this machine (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise FaceverError(f"--device {name}: {exc}") from None


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


def default_amp(device) -> bool:
    """bf16 autocast by default for inference: on CUDA, and on CPUs with native bf16 arithmetic."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
