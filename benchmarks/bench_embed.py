"""Embedding throughput (images/s, JPEG files to embeddings): facever's pipeline against the plain loop.

The plain loop is what a user writes first: `model.eval()`, `torch.no_grad()`, batches of 32 images
decoded with PIL in the main loop, float32 NCHW (no channels_last), one batch at a time. facever's
`embed_images` decodes in worker processes while the model computes, ships uint8 pixels, normalises on
the device, runs channels_last, and on a GPU uses pinned memory and bf16 autocast. Both run in the same
process on the same files, interleaved, and the best of the repeats is kept (a shared machine slows
both alike). Models have random weights: speed does not depend on them.

    python benchmarks/bench_embed.py            # full sizes
    python benchmarks/bench_embed.py --quick    # tiny sizes, to check that it runs
    python benchmarks/bench_embed.py --only-onnx

Goal (issue 5): at least 1.5x the plain loop on CPU and 3x on GPU.

Second part (issue 13): the same model exported by `facever export` to ONNX and run by onnxruntime
(CPU provider) against PyTorch float32, same run, same inputs: the model alone on normalised batches,
and files to embeddings through `embed_images` (the same decoding workers for both).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from machine import describe_machine  # noqa: E402

from facever.embedding.extract import embed_images  # noqa: E402
from facever.embedding.loading import EmbeddingModel  # noqa: E402


def make_crops(folder: Path, n: int, size: tuple[int, int]) -> list[str]:
    """`n` JPEG face-sized crops: smooth random images (JPEG sizes like real crops, not like noise)."""
    rng = np.random.default_rng(0)
    h, w = size
    rels = []
    for i in range(n):
        small = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        rel = f"p{i // 50:03d}/{i:06d}.jpg"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(folder / rel, quality=90)
        rels.append(rel)
    return rels


def sphere20() -> EmbeddingModel:
    from facever.models import create_model

    return EmbeddingModel(module=create_model("sphere20").eval(), model_id="sphere20", input_size=(112, 96),
                          mean=(0.5,) * 3, std=(0.5,) * 3)


def inception_resnet_v1() -> EmbeddingModel:
    from facenet_pytorch import InceptionResnetV1

    return EmbeddingModel(module=InceptionResnetV1(pretrained=None).eval(), model_id="InceptionResnetV1",
                          input_size=(160, 160), mean=(127.5 / 255,) * 3, std=(128 / 255,) * 3)


def plain_loop(model: EmbeddingModel, root: Path, rels: list[str], device: torch.device) -> np.ndarray:
    """What a user writes first (see the module docstring)."""
    net = model.module.to(device).to(memory_format=torch.contiguous_format).eval()
    mean = torch.tensor(model.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.std).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for start in range(0, len(rels), 32):
            batch = [np.asarray(Image.open(root / r).convert("RGB")) for r in rels[start:start + 32]]
            x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255.0
            x = ((x - mean) / std).to(device)
            out.append(net(x).cpu().numpy())
    return np.concatenate(out)


def facever_pipeline(model, root, rels, device, **options) -> np.ndarray:
    # No flip, like the plain loop: both compute one forward per image.
    emb, _ = embed_images(model, root, rels, device=device, **{"flip": "none", **options})
    return emb.embeddings


def timed(fn) -> tuple[float, np.ndarray]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def compare(name, model_fn, *, n: int, device: torch.device, repeats: int, extra: dict) -> dict[str, float]:
    """Print and return images/s of the plain loop, facever's pipeline and each `extra` variant (best run)."""
    model = model_fn()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rels = make_crops(root, n, model.input_size)
        warm = rels[: min(len(rels), 8)]
        plain_loop(model, root, warm, device)
        facever_pipeline(model, root, warm, device, workers=0)
        runs = {"plain loop": [], "facever": [], **{k: [] for k in extra}}
        results = {}
        for _ in range(repeats):
            seconds, results["plain loop"] = timed(lambda: plain_loop(model, root, rels, device))
            runs["plain loop"].append(seconds)
            seconds, results["facever"] = timed(lambda: facever_pipeline(model, root, rels, device))
            runs["facever"].append(seconds)
            for label, options in extra.items():
                seconds, results[label] = timed(lambda: facever_pipeline(model, root, rels, device, **options))
                runs[label].append(seconds)
    base = min(runs["plain loop"])
    print(f"\n{name} ({model.input_size[0]}x{model.input_size[1]}), {n} JPEG crops, {device}, best of {repeats}:")
    for label, times in runs.items():
        best = min(times)
        agree = ""
        if label != "plain loop":
            a, b = results[label], results["plain loop"]
            cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            agree = f"  (cosine to plain loop >= {cos.min():.5f})"
        print(f"  {label:<28} {n / best:9.1f} img/s  {base / best:5.2f}x{agree}")
    return {label: n / min(times) for label, times in runs.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that the benchmark runs")
    parser.add_argument("--images", type=int, default=None,
                        help="sphere20 images per run (InceptionResnetV1 gets a quarter); overrides the defaults")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs of each variant (best kept)")
    parser.add_argument("--only-onnx", action="store_true", help="only the onnxruntime vs PyTorch comparison")
    args = parser.parse_args(argv)
    print("machine:", describe_machine())
    print(f"torch threads: {torch.get_num_threads()}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices if not args.only_onnx else []:
        gpu = device.type == "cuda"
        if args.quick:
            sizes, repeats = {"sphere20": 16, "InceptionResnetV1": 8}, 1
        else:
            sizes = {"sphere20": 8192 if gpu else 1024, "InceptionResnetV1": 4096 if gpu else 256}
            repeats = 3
        if args.images:
            sizes = {"sphere20": args.images, "InceptionResnetV1": max(8, args.images // 4)}
        if args.repeats:
            repeats = args.repeats
        # "facever" runs the defaults (`--amp auto`: bf16 on a GPU, float32 on a CPU); the other precision
        # is shown beside it (bf16 on a CPU is fast with AMX / AVX512-BF16, emulated elsewhere).
        from facever.core.devices import cpu_has_native_bf16, resolve_amp

        default = resolve_amp("auto", device)
        print(f"\n{device.type}: facever's default precision here is {default}"
              + (f" (native bf16: {cpu_has_native_bf16()})" if device.type == "cpu" else ""))
        other = "off" if default != "off" else "bf16"
        extra = {f"facever --amp {other}": {"amp": other}}
        compare("sphere20", sphere20, n=sizes["sphere20"], device=device, repeats=repeats, extra=extra)
        compare("InceptionResnetV1", inception_resnet_v1, n=sizes["InceptionResnetV1"], device=device,
                repeats=repeats, extra=extra)
    if not args.only_onnx:
        print("\ngoal: facever >= 1.5x the plain loop on CPU, >= 3x on GPU")
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        print("\nonnxruntime not installed (pip install 'facever[onnx]'): skipping onnxruntime vs PyTorch")
        return 0
    onnx_sizes = {"sphere20": 16, "iresnet50": 8} if args.quick else {"sphere20": 512, "iresnet50": 128}
    for arch, size in (("sphere20", (112, 96)), ("iresnet50", (112, 112))):
        compare_onnx(arch, size, n=onnx_sizes[arch], repeats=1 if args.quick else 3)
    return 0


def compare_onnx(arch: str, size: tuple[int, int], *, n: int, repeats: int) -> None:
    """onnxruntime (CPU) vs PyTorch float32 for one model: the model alone, then files to embeddings."""
    import onnxruntime

    from facever.embedding.export import export_model
    from facever.embedding.loading import load_embedding_model
    from facever.models import create_model
    from facever.models.bundle import save_model_bundle

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    backbone = create_model(arch, input_size=size).eval()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_model_bundle(root / "model.pt", backbone, arch=arch, arch_kwargs={"input_size": list(size)},
                          input_size=size, mean=(0.5,) * 3, std=(0.5,) * 3, embedding_dim=512)
        start = time.perf_counter()
        export_model(root / "model.pt", root / "model.onnx")
        export_s = time.perf_counter() - start
        models = {"PyTorch fp32": load_embedding_model(root / "model.pt"),
                  "onnxruntime": load_embedding_model(root / "model.onnx")}
        x = torch.randn(64, 3, *size)
        rels = make_crops(root / "crops", n, size)
        forward = {k: [] for k in models}
        files = {k: [] for k in models}
        out = {}
        for label, model in models.items():  # warm-up: oneDNN primitives, onnxruntime's arena
            with torch.inference_mode():
                model.module(x[:8])
        for _ in range(repeats):
            for label, model in models.items():
                with torch.inference_mode():
                    seconds, out[label] = timed(lambda: model.module(x).numpy())
                forward[label].append(seconds)
            for label, model in models.items():
                seconds, _ = timed(lambda: facever_pipeline(model, root / "crops", rels, cpu, amp="off"))
                files[label].append(seconds)
    a, b = out["onnxruntime"].astype(np.float64), out["PyTorch fp32"].astype(np.float64)
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"\n{arch} ({size[0]}x{size[1]}) onnxruntime {onnxruntime.__version__} (CPU provider) vs PyTorch float32, "
          f"cpu, best of {repeats} (export + check {export_s:.1f}s; cosine ORT vs PyTorch >= {cos.min():.6f}):")
    base_f, base_e = min(forward["PyTorch fp32"]), min(files["PyTorch fp32"])
    for label in models:
        bf, be = min(forward[label]), min(files[label])
        print(f"  {label:<14} model alone (batch 64) {64 / bf:8.1f} img/s {base_f / bf:5.2f}x   "
              f"{n} JPEG files to embeddings {n / be:8.1f} img/s {base_e / be:5.2f}x")


if __name__ == "__main__":
    sys.exit(main())
