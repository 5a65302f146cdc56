"""Cost of every head against the plain softmax head, measured in the same run.

Forward + cross-entropy + backward of the head alone (CASIA-WebFace sizes: 10,575 classes, 512-d
embeddings, batch 256), on the CPU and, when one is present, on CUDA: softmax, Noisy Softmax, the
margin heads (their default margin and scale), and Noisy Softmax with the training instruments
(`loss_and_instruments`, what the training loop calls). The heads run interleaved so a busy machine
slows all alike; the figure is the median over repeats.

    python benchmarks/bench_heads.py            # full sizes
    python benchmarks/bench_heads.py --quick    # tiny sizes, a few seconds
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from facever.core.settings import HEADS  # noqa: E402
from facever.training.heads import create_head  # noqa: E402


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), {gpu}"
    )


def step_seconds(head, x, labels, device: torch.device, *, instruments: bool = False) -> float:
    """One forward + cross-entropy (+ the instruments) + backward of `head`, in seconds."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    loss = head.loss_and_instruments(x, labels)[0] if instruments else F.cross_entropy(head(x, labels), labels)
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    head.zero_grad(set_to_none=True)
    x.grad = None
    return elapsed


def compare(device: torch.device, *, classes: int, dim: int, batch: int, repeats: int, warmup: int) -> dict:
    heads = {}
    for name in HEADS:
        torch.manual_seed(0)
        heads[name] = create_head(name, dim, classes).to(device).train()
    x = torch.randn(batch, dim, device=device, requires_grad=True)
    labels = torch.randint(0, classes, (batch,), device=device)
    cases = [(name, head, False) for name, head in heads.items()] + [
        ("noisy-softmax + instruments", heads["noisy-softmax"], True)]
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for i in range(warmup + repeats):
        for name, head, instruments in cases:
            seconds = step_seconds(head, x, labels, device, instruments=instruments)
            if i >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--classes", type=int, default=10_575)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    if args.quick:
        args.classes, args.dim, args.batch, args.repeats = 500, 64, 32, 5
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"bench_heads: machine: {machine()}")
    print(f"bench_heads: {args.classes} classes, {args.dim}-d, batch {args.batch}, median of {args.repeats} "
          "forward+loss+backward steps (fp32 head)")
    for device in devices:
        result = compare(device, classes=args.classes, dim=args.dim, batch=args.batch,
                         repeats=args.repeats, warmup=2 if args.quick else 5)
        plain = result["softmax"]
        for name, seconds in result.items():
            print(f"bench_heads: {device.type:4s}  {name:28s} {seconds * 1e3:8.3f} ms  ratio to softmax "
                  f"{seconds / plain:.3f}  ({args.batch / seconds:,.0f} samples/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
