#!/usr/bin/env python
"""End-to-end speed of `facever align` against the plain facenet-pytorch loop, same images, same run.

Images: LFW-like 250x250 JPEGs (the size of LFW and of CASIA-WebFace, where alignment time matters)
made from the real photos in ../shared/data/faces (or, where those are absent, the demo's synthetic
faces drawn at 250x250, and it says so), repeated to the requested count under distinct names. Measured, each after a short warm-up (model loading excluded from all):

- plain loop: what a user writes with facenet-pytorch: for each file, PIL open, one
  `mtcnn.detect(img, landmarks=True)`, crop the first box, resize to 96x112, save as JPEG;
- facever: `align_dataset` (the library path of `facever align`): worker processes decode, batched
  detection by image size, similarity warp onto the template, atomic JPEG writes in threads;
- detection alone: facenet-pytorch's batched `mtcnn.detect` on the already decoded images (no
  decode, no warp, no writes): the ceiling for any aligner built on this detector.

Goals (issue 3): CPU: facever not slower than the plain loop. GPU: facever >= 5x the plain loop and
>= 90% of batched detection alone.

    python benchmarks/bench_align.py                  # 256 images on CPU, 2048 on a GPU
    python benchmarks/bench_align.py --quick          # 16 images, to check that it runs
    python benchmarks/bench_align.py --device cuda --images 4096 --batch-size 128
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from machine import describe_machine  # noqa: E402

from facever.data_prep.align_dataset import AlignConfig, align_dataset, make_aligner  # noqa: E402
from facever.core.images import list_images, read_image_rgb  # noqa: E402

FACES = Path(os.environ.get("FACEVER_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "faces"
SOURCES = ["lfw_sample", "facenet_pytorch/test_images", "deepface", "knn/train", "bbt"]


def lfw_like(rgb: np.ndarray) -> np.ndarray:
    """Shorter side to 250 pixels, centre 250x250: LFW's framing, roughly."""
    import cv2

    h, w = rgb.shape[:2]
    scale = 250 / min(h, w)
    resized = cv2.resize(rgb, (max(250, round(w * scale)), max(250, round(h * scale))), interpolation=cv2.INTER_AREA)
    y0 = (resized.shape[0] - 250) // 2
    x0 = (resized.shape[1] - 250) // 2
    return resized[y0 : y0 + 250, x0 : x0 + 250]


def image_source() -> str:
    """What `build_images` draws from: the real photos when present, else synthetic faces."""
    return "real photos" if FACES.is_dir() else f"synthetic faces (no real photos at {FACES})"


def build_images(folder: Path, count: int) -> list[Path]:
    """`count` 250x250 JPEGs from the real photos in ../shared/data/faces; where those are absent (a
    user's clone), from the demo's synthetic faces drawn at 250x250 (MTCNN finds a face in about half
    of them; `image_source()` says which, and figures from them are not real-photo figures)."""
    from PIL import Image

    if FACES.is_dir():
        sources = []
        for sub in SOURCES:
            root = FACES / sub
            sources += [root / rel for rel in list_images(root) if "group" not in rel]
        originals = [lfw_like(read_image_rgb(p)) for p in sources[: min(len(sources), count)]]
    else:
        from facever.data_prep.synthetic_faces import SyntheticSpec, generate_identity_images

        spec = SyntheticSpec(identities=max(1, min(count, 97) // 4), images_per_identity=4, size=(250, 250))
        originals = [img for i in range(spec.identities) for img in generate_identity_images(spec, i, seed=0)]
    paths = []
    for i in range(count):
        path = folder / f"person{i % 97:03d}" / f"img{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(originals[i % len(originals)]).save(path, quality=90)
        paths.append(path)
    return paths


def plain_loop(paths: list[Path], out: Path, mtcnn) -> int:
    """The loop a facenet-pytorch user writes: one detect call per image, crop the box, save."""
    from PIL import Image

    written = 0
    for i, path in enumerate(paths):
        img = Image.open(path).convert("RGB")
        boxes, probs, points = mtcnn.detect(img, landmarks=True)
        if boxes is None:
            continue
        crop = img.crop(tuple(int(v) for v in boxes[0])).resize((96, 112), Image.BILINEAR)
        crop.save(out / f"{i:06d}.jpg", quality=95)
        written += 1
    return written


def detection_alone(images: list[np.ndarray], mtcnn, batch_size: int, device: torch.device) -> None:
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.stack(images[start : start + batch_size]))
        if device.type == "cuda":
            batch = batch.pin_memory().to(device, non_blocking=True)
        mtcnn.detect(batch, landmarks=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(*, device: torch.device, count: int, batch_size: int, workers: int, repeats: int) -> dict:
    """Images/s of the plain loop, facever's align path and batched detection alone (best of `repeats`),
    plus facever's summary. Model loading and a short warm-up are not timed."""
    from facenet_pytorch import MTCNN

    tmp = Path(tempfile.mkdtemp(prefix="facever-bench-align-"))
    try:
        src = tmp / "src"
        paths = build_images(src, count)
        warm = paths[: min(8, count)]

        # Plain loop: MTCNN's defaults as a user leaves them (largest face first).
        plain_mtcnn = MTCNN(device=device)
        (tmp / "plain").mkdir()
        plain_loop(warm, tmp / "plain", plain_mtcnn)

        # facever's library path, the same aligner object reused so its model load is not timed.
        config = AlignConfig(device=str(device), batch_size=batch_size, workers=workers)
        aligner = make_aligner(config)
        warm_list = tmp / "warm.txt"
        warm_list.write_text("".join(f"{p}\n" for p in warm))
        align_dataset(warm_list, tmp / "warm-out", config=config, aligner=aligner)
        images = [read_image_rgb(p) for p in paths]  # for detection alone (decode not timed)
        detection_alone(images[: min(batch_size, count)], aligner.mtcnn, batch_size, device)

        def run_plain():
            shutil.rmtree(tmp / "plain")
            (tmp / "plain").mkdir()
            plain_loop(paths, tmp / "plain", plain_mtcnn)

        def run_facever():
            nonlocal summary
            shutil.rmtree(tmp / "facever", ignore_errors=True)
            summary = align_dataset(src, tmp / "facever", config=config, aligner=aligner)

        def run_detect():
            detection_alone(images, aligner.mtcnn, batch_size, device)

        summary = None
        methods = {"plain": run_plain, "facever": run_facever, "detect": run_detect}
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        # Alternate the order between repeats so a shared machine's load changes hit all methods alike;
        # the best time of each counts.
        for repeat in range(repeats):
            order = list(methods) if repeat % 2 == 0 else list(reversed(methods))
            for name in order:
                seconds[name].append(timed(methods[name]))
        plain_s, facever_s, detect_s = (min(seconds[n]) for n in ("plain", "facever", "detect"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    return {"plain": count / plain_s, "facever": count / facever_s, "detect": count / detect_s, "summary": summary}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="16 images: check that it runs")
    parser.add_argument("--images", type=int, default=None, help="number of images (default 256 CPU, 2048 GPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32 on CPU, 128 on a GPU")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default CPUs - 1, <= 8)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs of each method, the best counts (default 2; 1 with --quick)")
    args = parser.parse_args(argv)

    from facever.core.devices import resolve_device

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    count = 16 if args.quick else args.images or (2048 if gpu else 256)
    batch_size = args.batch_size or (128 if gpu else 32)
    args.repeats = args.repeats or (1 if args.quick else 2)
    workers = args.workers if args.workers is not None else max(1, min(8, (os.cpu_count() or 2) - 1))
    print(f"machine: {describe_machine()}")
    print(f"device: {device}, images: {count} LFW-like 250x250 JPEGs from {image_source()}, batch size {batch_size}, "
          f"decode workers {workers}, torch threads {torch.get_num_threads()}")
    m = measure(device=device, count=count, batch_size=batch_size, workers=workers, repeats=args.repeats)
    summary = m["summary"]
    plain_s, facever_s, detect_s = (count / m[k] for k in ("plain", "facever", "detect"))
    plain_rate, facever_rate, detect_rate = count / plain_s, count / facever_s, count / detect_s
    print(f"{'method':<44} {'images/s':>10} {'seconds':>9}")
    print(f"{'plain loop (1 mtcnn.detect per image + crop)':<44} {plain_rate:>10.1f} {plain_s:>9.2f}")
    print(f"{'facever align (library path, end to end)':<44} {facever_rate:>10.1f} {facever_s:>9.2f}")
    print(f"{'batched mtcnn.detect alone (decoded input)':<44} {detect_rate:>10.1f} {detect_s:>9.2f}")
    print(f"facever aligned {summary.aligned}, center-cropped {summary.center_cropped}, "
          f"skipped {summary.skipped}, failed {summary.failed}")
    speedup = facever_rate / plain_rate
    share = facever_rate / detect_rate
    print(f"facever / plain loop: {speedup:.2f}x; facever / detection alone: {share:.0%}")
    if gpu:
        print(f"goals (GPU): >= 5x plain loop: {'met' if speedup >= 5 else 'NOT met'}; "
              f">= 90% of detection alone: {'met' if share >= 0.9 else 'NOT met'}")
    else:
        print(f"goal (CPU): not slower than the plain loop: {'met' if speedup >= 1.0 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
