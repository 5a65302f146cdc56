"""facever.core.devices: device names, the CUDA index check, and the process-wide kernel settings."""

from __future__ import annotations

import os

import pytest
import torch

from facever.core.devices import check_cuda_index, compute_settings, cudnn_autotune, device_scope, resolve_device
from facever.core.errors import FaceverError


def test_a_cuda_index_beyond_the_machines_devices_is_a_clear_error():
    check_cuda_index(1, 2)
    with pytest.raises(FaceverError, match=r"^cuda:2: this machine has 2 CUDA device\(s\) \(cuda:0 to cuda:1\)$"):
        check_cuda_index(2, 2)
    with pytest.raises(FaceverError, match=r"cuda:1: this machine has 1 CUDA device\(s\) \(cuda:0\)"):
        check_cuda_index(1, 1)


def test_resolve_device_takes_names_and_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(FaceverError, match="no CUDA device is available"):
            resolve_device("cuda:1")
    else:
        with pytest.raises(FaceverError, match=f"cuda:{torch.cuda.device_count()}: this machine has"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    with device_scope(torch.device("cpu")):  # nothing to select on a CPU
        pass


def test_kernel_settings_hold_inside_and_are_restored():
    before = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
              torch.are_deterministic_algorithms_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    with cudnn_autotune(True):
        assert torch.backends.cudnn.benchmark
        with cudnn_autotune(False):
            assert not torch.backends.cudnn.benchmark
        assert torch.backends.cudnn.benchmark
    with compute_settings(torch.device("cuda", 0)):  # flags only: nothing touches a GPU
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    with compute_settings(torch.device("cuda", 0), deterministic=True):
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (before[3] or ":4096:8",)
    with compute_settings(torch.device("cpu")):
        assert not torch.backends.cudnn.benchmark
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
            torch.are_deterministic_algorithms_enabled(), os.environ.get("CUBLAS_WORKSPACE_CONFIG")) == before
