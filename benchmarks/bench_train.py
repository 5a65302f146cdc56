#!/usr/bin/env python
"""Training throughput (images/s) of `facever train` from real JPEG crops, against the same model on
synthetic data already on the device, measured in the same run.

Paths measured, all through the real training loop (`facever.training.loop.train`, images/s read back
from its metrics.jsonl, checkpoint and validation time excluded):
- `workers`: JPEG decode in DataLoader workers each step (pinned memory, prefetch);
- `memmap cache`: crops decoded once into a uint8 .npy file, read by the workers;
- `device cache` (GPU only): the whole uint8 set on the GPU, flip and normalisation there;
and, with the same step function outside the loop:
- `synthetic on device`: random uint8 batches already on the device (the ceiling);
- the same with the plain softmax head (the Noisy Softmax head's cost).

The goal (issue 4): the real data paths reach >= 90% of the synthetic rate on a GPU.

The JPEG folder: `--data DIR` (an identity folder of aligned crops), or by default one written to a
temporary folder from the real ORL faces in ../shared/data (crops fitted to the model input, varied in
brightness so each file differs, JPEG quality 90), or from the demo's synthetic faces where those are absent.

    python benchmarks/bench_train.py            # GPU: sphere20, bf16 + channels_last, batch 256
    python benchmarks/bench_train.py --quick    # tiny, CPU, a minute at most
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from machine import describe_machine  # noqa: E402


def shared_orl() -> Path:
    base = Path(os.environ.get("FACEVER_SHARED_DATA", ROOT.parent / "shared" / "data"))
    return base / "faces" / "orl"


def crop_source() -> str:
    """What `make_jpeg_folder` draws its crops from: the real ORL photos when present, else synthetic faces."""
    orl = shared_orl()
    return "ORL faces" if orl.is_dir() and any(orl.iterdir()) else f"synthetic faces (no ORL photos at {orl})"


def make_jpeg_folder(dest: Path, *, images: int, identities: int, input_size: tuple[int, int]) -> Path:
    """Write `images` JPEG crops in `identities` folders, made from the real ORL photos, or from the demo's
    synthetic faces where the ORL photos are absent (a user's clone): the data path's speed and the
    training paths' correctness do not depend on what the faces show (`crop_source()` says which)."""
    from PIL import Image

    from facever.core.images import list_images, read_image_rgb
    from facever.core.crop import fit_to_input

    orl = shared_orl()
    sources = list_images(orl) if orl.is_dir() else []
    if sources:
        crops = [fit_to_input(read_image_rgb(orl / s), tuple(input_size)) for s in sources]
    else:
        from facever.data_prep.synthetic_faces import SyntheticSpec, generate_identity_images

        spec = SyntheticSpec(identities=40, images_per_identity=10, size=tuple(input_size))
        crops = [img for i in range(spec.identities) for img in generate_identity_images(spec, i, seed=0)]
    rng = np.random.default_rng(0)
    per_id = max(1, images // identities)
    for k in range(images):
        ident = dest / f"id{k // per_id:05d}"
        ident.mkdir(parents=True, exist_ok=True)
        crop = crops[k % len(crops)].astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-10, 10)
        Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).save(ident / f"{k:06d}.jpg", quality=90)
    return dest


def synthetic_rate(args, device, num_classes: int, head_name: str) -> float:
    """Images/s of the training step on random uint8 batches already on the device."""
    from facever.core.devices import compute_settings, device_scope
    from facever.training.heads import create_head
    from facever.models import create_model
    from facever.training.data import to_model_input
    from facever.core.devices import amp_dtype
    from facever.training.loop import TrainNet, train_step

    torch.manual_seed(0)
    backbone = create_model(args.arch, **arch_kwargs(args)).to(device)
    if args.channels_last:
        backbone.to(memory_format=torch.channels_last)
    head = create_head(head_name, backbone.embedding_dim, num_classes).to(device)
    net = TrainNet(backbone, head, amp_dtype(args.amp)).train()
    if args.compile:
        net.backbone = torch.compile(backbone)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    h, w = backbone.input_size
    images = torch.randint(0, 256, (args.batch_size, h, w, 3), dtype=torch.uint8, device=device)
    labels = torch.randint(0, num_classes, (args.batch_size,), device=device)
    flips = torch.rand(args.batch_size, device=device) < 0.5
    mean = torch.tensor(backbone.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std, device=device).view(1, 3, 1, 1)

    def run(steps: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            x = to_model_input(images, flips, mean, std, channels_last=args.channels_last)
            loss, _ = train_step(net, x, labels, opt, scaler)
        loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    # The kernel choices of `train()` itself (cuDNN autotuning on a GPU, or --deterministic's), so the
    # ceiling and the real paths run the same convolution algorithms.
    with device_scope(device), compute_settings(device, deterministic=args.deterministic):
        run(args.warmup_steps)
        # Best of three: a shared machine's transient load should not pass for the model's speed.
        return args.synthetic_steps * args.batch_size / min(run(args.synthetic_steps) for _ in range(3))


def arch_kwargs(args) -> dict:
    kw = {}
    if args.input_size:
        kw["input_size"] = tuple(int(v) for v in args.input_size.split("x"))
    if args.width:
        kw["width"] = args.width
    return kw


def loop_rate(args, data: Path, out: Path, cache: str) -> tuple[float, float]:
    """Median and max images/s over the logged windows of a real training run (first window dropped)."""
    from facever.training.config import TrainConfig
    from facever.training.loop import train

    kw = arch_kwargs(args)
    config = TrainConfig(
        data=str(data), arch=args.arch, input_size=kw.get("input_size"), width=kw.get("width"),
        epochs=args.epochs, batch_size=args.batch_size, lr=0.01, amp=args.amp, channels_last=args.channels_last,
        compile=args.compile, deterministic=args.deterministic, workers=args.workers, cache=cache,
        cache_dir=str(out.parent / "cache"),
        device=args.device, checkpoint_every=0, seed=0,
    )
    train(config, out, log_every=args.log_every)
    rates = [json.loads(l)["images_per_second"] for l in (out / "metrics.jsonl").read_text().splitlines()
             if json.loads(l)["kind"] == "train"]
    rates = rates[1:] or rates
    return statistics.median(rates), max(rates)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes on the CPU (checks the script runs)")
    p.add_argument("--data", type=Path, help="identity folder of aligned JPEG crops (default: generated from ORL, else synthetic faces)")
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--identities", type=int, default=500)
    p.add_argument("--arch", default="sphere20")
    p.add_argument("--input-size", default=None, help="HxW override")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default=None, help="bf16 (GPU default) / fp16 / off (CPU default)")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--deterministic", action="store_true", help="deterministic kernels, as train --deterministic")
    args = p.parse_args(argv)

    from facever.core.devices import resolve_amp, resolve_device

    device = resolve_device(args.device)
    args.device = str(device)
    if device.type != "cuda" and not args.quick:
        # Full sizes are 60,000 sphere20 training images per path: hours on a CPU. The goal is a GPU goal.
        print("no GPU: running the small CPU configuration (as --quick); the full benchmark needs a GPU")
        args.quick = True
    if args.quick:
        args.images, args.identities, args.batch_size, args.epochs = 96, 8, 16, 2
        args.input_size, args.width, args.workers = args.input_size or "56x48", args.width or 8, min(args.workers, 2)
    args.amp = resolve_amp(args.amp or "auto", device)
    args.channels_last = device.type == "cuda" and not args.no_channels_last
    args.warmup_steps, args.synthetic_steps = (2, 4) if args.quick else (20, 100)
    args.log_every = 2 if args.quick else 10

    print(f"machine: {describe_machine()}")
    print(f"model: {args.arch} {arch_kwargs(args) or '(defaults)'}, batch {args.batch_size}, amp {args.amp}, "
          f"channels_last {args.channels_last}, compile {args.compile}, deterministic {args.deterministic}, workers {args.workers}, device {device}")
    with tempfile.TemporaryDirectory(prefix="facever-bench-train-") as tmp:
        tmp = Path(tmp)
        from facever.models import create_model

        input_size = tuple(create_model(args.arch, **arch_kwargs(args)).input_size)
        if args.data:
            data = args.data
        else:
            start = time.perf_counter()
            data = make_jpeg_folder(tmp / "jpeg", images=args.images, identities=args.identities, input_size=input_size)
            print(f"wrote {args.images} JPEG crops {input_size[1]}x{input_size[0]} from {crop_source()} "
                  f"({time.perf_counter() - start:.1f}s)")
        n_classes = sum(1 for d in Path(data).iterdir() if d.is_dir())

        rows = []
        synth = synthetic_rate(args, device, n_classes, "noisy-softmax")
        rows.append(("synthetic on device (noisy-softmax)", synth, synth))
        plain = synthetic_rate(args, device, n_classes, "softmax")
        rows.append(("synthetic on device (plain softmax)", plain, plain))
        paths = ["none", "memmap"] + (["device"] if device.type == "cuda" else [])
        for cache in paths:
            med, best = loop_rate(args, data, tmp / f"run-{cache}", cache)
            label = {"none": "JPEG folder, decode in workers", "memmap": "memmap uint8 cache, workers",
                     "device": "device cache (uint8 on GPU)"}[cache]
            rows.append((label, med, best))

    print(f"\n{'path':42s} {'images/s':>10s} {'best window':>12s} {'vs synthetic':>13s}")
    for label, med, best in rows:
        print(f"{label:42s} {med:10,.0f} {best:12,.0f} {med / synth:12.0%}")
    print(f"\nNoisy Softmax head cost in a full step: {(plain / synth - 1):+.1%} time vs plain softmax")
    if device.type != "cuda":
        print("note: no GPU here; the 90%-of-synthetic target is for a GPU run (CPU compute is the bottleneck)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
