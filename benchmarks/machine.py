"""One line describing the machine a benchmark ran on (every benchmark prints it)."""

from __future__ import annotations

import os
import platform


def describe_machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    parts = [f"{platform.system()} {platform.machine()}", cpu, f"{os.cpu_count()} CPUs",
             f"Python {platform.python_version()}"]
    try:
        import numpy

        parts.append(f"numpy {numpy.__version__}")
    except ImportError:
        pass
    try:
        import sys

        if "torch" in sys.modules:
            import torch

            parts.append(f"torch {torch.__version__}")
            if torch.cuda.is_available():
                parts.append(f"GPU {torch.cuda.get_device_name(0)}")
            else:
                parts.append("no GPU")
    except ImportError:
        pass
    return " | ".join(parts)
