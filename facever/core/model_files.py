"""No data file runs code: the one rule for reading PyTorch files, and what TorchScript means.

A PyTorch weights file (`model.pt`, `checkpoint.pt`, arcface_torch's `backbone.pth`, facenet-pytorch's
weights) is data: it is read with `torch.load(weights_only=True)`, which unpickles tensors, numbers,
strings and containers only, through `load_tensor_file` and nowhere else.

A TorchScript archive is code: its `code/` folder holds Python-like source that `torch.jit.load` compiles
and its `forward` (and `__setstate__`) run with the user's rights; a crafted one can write files. So
facever loads TorchScript only when the user asks for it by name: a file whose name ends in one of
`settings.TORCHSCRIPT_SUFFIXES` (`model.torchscript`, `model.ts`, what `facever export --format
torchscript` writes). What is *inside* a file never decides that it is run: a TorchScript archive under
any other name (`model.pt`) is refused, with a message saying how to ask for it explicitly.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from facever.core.errors import InputFileError
from facever.core.settings import TORCHSCRIPT_SUFFIXES

# The members only a TorchScript archive has: its compiled source and its constants (`torch.save`'s
# archives hold `data.pkl`, `data/N`, `version`, `byteorder` and nothing of these).
_TORCHSCRIPT_MEMBER = re.compile(r"^[^/]+/(code/|constants\.pkl$)")


def is_torchscript_name(path: str | Path) -> bool:
    """True when the user named a TorchScript file as such (its suffix): the only way facever runs one."""
    return Path(path).suffix.lower() in TORCHSCRIPT_SUFFIXES


def is_torchscript_archive(path: str | Path) -> bool:
    """True when `path` is a zip holding TorchScript code (looked at, never loaded: used only to refuse it)."""
    try:
        if not Path(path).is_file() or not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            return any(_TORCHSCRIPT_MEMBER.match(name) for name in archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def torchscript_refusal(path: str | Path) -> InputFileError:
    """The error for a TorchScript archive under a weights file's name."""
    suffixes = " or ".join(f"*{s}" for s in TORCHSCRIPT_SUFFIXES)
    return InputFileError(
        path, f"is a TorchScript archive, not a weights file: TorchScript is code, and facever runs it only "
              f"from a file named {suffixes} (rename it so, if you trust its source)")


def load_tensor_file(path: str | Path, *, map_location: Any = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`, after refusing a TorchScript archive by name (see module doc).

    Exceptions of `torch.load` (a truncated file, an unsafe pickle) pass through for the caller to word.
    """
    import torch

    if is_torchscript_archive(path):
        raise torchscript_refusal(path)
    return torch.load(path, map_location=map_location, weights_only=True)
