#!/usr/bin/env python
"""`make gpu-check`: every CUDA path of facever run once and measured, in one command (<= 8 min on an H100/H200).

Sections (each with a time budget; one that fails is recorded and the rest still run):

1. environment: GPU name, torch, CUDA, cuDNN and the machine line every figure is tied to;
2. training throughput, sphere20 112x96 with Noisy Softmax: synthetic on-device batches (the ceiling)
   in fp32, bf16, bf16 + channels_last, + torch.compile; then the real data paths through the
   training loop (JPEG folder with workers, memmap cache, device cache), each as images/s and as a
   share of the ceiling (goal >= 90%); iresnet50 bf16 likewise;
3. it learns: a short training on synthetic identities (the demo's generator); the held-out
   verification accuracy must beat the untrained network's;
4. exact resume: stopped half way and resumed == uninterrupted (bit-exact, or within the documented
   tolerance where cuDNN picks nondeterministic kernels; with --deterministic bit-exact on the GPU too);
5. DDP: `torchrun` with 2 processes (NCCL, one GPU each; NCCL cannot place two ranks on one GPU, so a
   single-GPU machine runs this on the CPU with gloo and says so) equals one process with the
   combined batch, for the full and the sharded classifier;
6. sharded classifier on the device: equal to the full head in one process, and its step time at
   360k classes (full softmax vs sample rate 0.1);
7. `facever align` batched vs the per-image facenet-pytorch loop (goal >= 5x) and vs detection alone;
   `facever embed` vs a plain fp32 batch-32 loop (goal >= 3x).

Without a GPU it runs a dry version on the CPU (tiny sizes, the same code paths where they exist,
about a minute) and says plainly that no GPU was found: no figure of a dry run is a GPU figure.

    python benchmarks/gpu_check.py                       # full on a GPU, dry on a CPU
    python benchmarks/gpu_check.py --dry --out /tmp/gc   # force the dry version

Writes OUT/gpu_check.json (every figure, with the GPU, torch and CUDA versions) and OUT/gpu_check.txt
(the readable table, also printed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

from machine import describe_machine  # noqa: E402

# Seconds each section may take on an H100/H200 (8 minutes in all); the dry run is far below.
BUDGET_S = {"throughput": 170, "learns": 70, "resume": 50, "ddp": 60, "sharded": 40, "align_embed": 90}
NO_GPU = "NO GPU FOUND: this is the dry run on the CPU (tiny sizes); none of its figures is a GPU figure"


class Report:
    """Sections' records, pass/fail checks and the readable lines, collected as the run goes."""

    def __init__(self, gpu: bool):
        self.gpu = gpu
        self.sections: dict[str, dict] = {}
        self.checks: list[dict] = []
        self.lines: list[str] = []

    def say(self, text: str = "") -> None:
        self.lines.append(text)
        print(text, flush=True)

    def check(self, name: str, passed: bool, detail: str, *, goal: bool = False) -> None:
        """A check (must hold, fails the run) or a goal (a speed target: reported, never fails the run)."""
        self.checks.append({"name": name, "passed": bool(passed), "detail": detail, "kind": "goal" if goal else "check"})
        mark = ("met" if passed else "NOT met") if goal else ("PASS" if passed else "FAIL")
        self.say(f"  [{mark}] {name}: {detail}")

    @property
    def failed(self) -> list[str]:
        return [c["name"] for c in self.checks if c["kind"] == "check" and not c["passed"]]


def environment(device: torch.device) -> dict:
    env = {"machine": describe_machine(), "python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "gpu": None, "gpu_count": 0, "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=torch.cuda.get_device_name(device), gpu_count=torch.cuda.device_count(),
                   gpu_memory_gib=round(props.total_memory / 2**30, 1), capability=f"{props.major}.{props.minor}",
                   driver=_driver_version())
        try:
            version = torch.cuda.nccl.version()
            env["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
        except Exception:  # a build without NCCL: the DDP section says what it used
            env["nccl"] = None
    return env


def _driver_version() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------------------------------
# 2. throughput


def _bench_args(device, dry: bool, **kw) -> SimpleNamespace:
    gpu = device.type == "cuda"
    args = dict(arch="sphere20", input_size="112x96", width=None, batch_size=256, amp="bf16", channels_last=True,
                compile=False, deterministic=False, workers=min(16, os.cpu_count() or 1), epochs=2, device=str(device),
                warmup_steps=10, synthetic_steps=30, log_every=10)
    if dry:
        args.update(input_size="28x24", width=4, batch_size=8, workers=1, warmup_steps=1, synthetic_steps=2,
                    log_every=2, amp="bf16")
    if not gpu:
        args["channels_last"] = kw.get("channels_last", False)
    args.update(kw)
    return SimpleNamespace(**args)


def section_throughput(report: Report, device, dry: bool, tmp: Path) -> dict:
    import bench_train

    gpu = device.type == "cuda"
    out: dict = {"sphere20": {}, "iresnet50": {}}
    n_classes = 500 if gpu else 8
    variants = [("fp32", dict(amp="off", channels_last=False)), ("bf16", dict(channels_last=False)),
                ("bf16 + channels_last", dict(channels_last=True)),
                ("bf16 + channels_last + compile", dict(channels_last=True, compile=True))]
    for label, kw in variants:
        if kw.get("compile") and not gpu:
            out["sphere20"][f"synthetic {label}"] = {"skipped": "compile is measured on a GPU only (CPU inductor needs minutes)"}
            report.say(f"  sphere20 synthetic {label:34s} skipped on the CPU")
            continue
        args = _bench_args(device, dry, **kw)
        rate = bench_train.synthetic_rate(args, device, n_classes, "noisy-softmax")
        out["sphere20"][f"synthetic {label}"] = {"images_per_second": rate}
        report.say(f"  sphere20 synthetic {label:34s} {rate:10,.0f} img/s")
    ceiling_label = "synthetic bf16 + channels_last" if gpu else "synthetic bf16"
    ceiling = out["sphere20"][ceiling_label]["images_per_second"]
    out["sphere20"]["ceiling"] = ceiling_label

    images, identities = (8192, 256) if gpu else (48, 8)
    for arch, input_size, width in (("sphere20", "112x96", None), ("iresnet50", "112x112", None)):
        args = _bench_args(device, dry, arch=arch, input_size=input_size, width=width, channels_last=gpu)
        if dry:
            args.input_size, args.width = ("28x24", 4) if arch == "sphere20" else ("32x32", 4)
        if arch == "iresnet50":
            rate = bench_train.synthetic_rate(args, device, n_classes, "noisy-softmax")
            out[arch]["synthetic bf16" + (" + channels_last" if gpu else "")] = {"images_per_second": rate}
            report.say(f"  iresnet50 synthetic bf16{' + channels_last' if gpu else '':24s} {rate:10,.0f} img/s")
            arch_ceiling = rate
        else:
            arch_ceiling = ceiling
        if dry and arch == "iresnet50":
            report.say("  iresnet50 data paths: measured on a GPU only (sphere20's above run the same code)")
            continue
        size = tuple(int(v) for v in args.input_size.split("x"))
        folder = bench_train.make_jpeg_folder(tmp / f"jpeg-{arch}", images=images if arch == "sphere20" else images // 2,
                                              identities=identities, input_size=size)
        for cache in ("none", "memmap", "device"):
            med, best = bench_train.loop_rate(args, folder, tmp / f"run-{arch}-{cache}", cache)
            label = {"none": "JPEG folder + workers", "memmap": "memmap cache", "device": "device cache"}[cache]
            share = med / arch_ceiling
            out[arch][label] = {"images_per_second": med, "best_window": best, "share_of_ceiling": share}
            report.say(f"  {arch} {label:42s} {med:10,.0f} img/s  {share:5.0%} of synthetic")
            if gpu:
                report.check(f"{arch} {label} >= 90% of synthetic", share >= 0.9, f"{share:.0%}", goal=True)
    return out


# ---------------------------------------------------------------------------------------------
# 3. it learns


def section_learns(report: Report, device, dry: bool, tmp: Path) -> dict:
    from facever.data_prep.synthetic_faces import SyntheticSpec, write_synthetic_dataset
    from facever.models import create_model
    from facever.training.config import TrainConfig
    from facever.training.data import open_training_set
    from facever.training.loop import train
    from facever.training.validation import build_validator

    gpu = device.type == "cuda"
    ids, per, size, holdout = (400, 12, (56, 48), 60) if gpu else (40, 5, (28, 24), 12)
    spec = SyntheticSpec(identities=ids, images_per_identity=per, size=size)
    data = tmp / "synthetic"
    write_synthetic_dataset(data, spec, seed=0)
    # Fixed steps, not epochs: a few thousand on a GPU.
    batch = 128 if gpu else 16
    train_images = (ids - holdout) * per
    epochs = max(1, round((2400 if gpu else 60) * batch / train_images))
    config = TrainConfig(
        data=str(data), arch="sphere20", input_size=size, width=32 if gpu else 8, embedding_dim=128 if gpu else 32,
        head="noisy-softmax", epochs=epochs, batch_size=batch, lr=0.05, schedule="cosine",
        warmup_epochs=min(1.0, epochs / 4), amp="bf16" if gpu else "off", device=str(device), workers=0, cache="device" if gpu else "memmap",
        holdout_identities=holdout, checkpoint_every=0, seed=0,
    )
    tset = open_training_set(config.data, min_images=config.min_images, holdout_identities=holdout, seed=config.seed)
    torch.manual_seed(config.seed)
    untrained = create_model(config.arch, **config.arch_kwargs).to(device)
    validator = build_validator(config, tset, size)
    before = float(validator.run(untrained, mean=untrained.mean, std=untrained.std, device=device).accuracy_mean)
    start = time.perf_counter()
    result = train(config, tmp / "learns", log_every=50 if gpu else 4)
    seconds = time.perf_counter() - start
    after = float(result.best_accuracy)
    report.say(f"  {result.steps} steps on {result.num_images} images of {result.num_classes} synthetic identities "
               f"in {seconds:.0f}s; held-out pairs of {holdout} other identities")
    report.check("training learns (held-out accuracy beats the untrained network)", after > before,
                 f"{after:.3f} after vs {before:.3f} untrained")
    return {"steps": result.steps, "seconds": seconds, "accuracy_untrained": before, "accuracy_trained": after,
            "identities": ids, "holdout_identities": holdout, "last_loss": result.last_loss}


# ---------------------------------------------------------------------------------------------
# 4. exact resume


RESUME_TOLERANCE = 1e-3  # max |difference| of any weight, allowed only where cuDNN was nondeterministic


def section_resume(report: Report, device, dry: bool, tmp: Path) -> dict:
    import bench_train

    from facever.training.config import TrainConfig
    from facever.training.loop import train

    gpu = device.type == "cuda"
    size = (56, 48) if gpu else (28, 24)
    data = bench_train.make_jpeg_folder(tmp / "jpeg-resume", images=256 if gpu else 32, identities=16 if gpu else 4,
                                        input_size=size)
    config = TrainConfig(data=str(data), arch="sphere20", input_size=size, width=16 if gpu else 4, embedding_dim=64,
                         epochs=2, batch_size=32 if gpu else 8, lr=0.05, amp="bf16", device=str(device), workers=0,
                         cache="device" if gpu else "memmap", checkpoint_every=0, seed=0)
    whole = train(config, tmp / "resume-whole")
    calls = []
    half = whole.steps // 2
    train(config, tmp / "resume-split", stop_requested=lambda: calls.append(1) or len(calls) >= half)
    again = train(config, tmp / "resume-split", resume=True)
    a = torch.load(whole.model_path, weights_only=True)["state_dict"]
    b = torch.load(again.model_path, weights_only=True)["state_dict"]
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    exact = diff == 0.0
    report.check("resume is exact" + (" (or within tolerance on cuDNN)" if gpu else ""),
                 exact or (gpu and diff <= RESUME_TOLERANCE),
                 f"stopped at step {half} of {whole.steps}, resumed: max |weight difference| {diff:.3g}")
    result = {"steps": whole.steps, "stopped_at": half, "max_abs_difference": diff, "exact": exact,
              "tolerance": RESUME_TOLERANCE if gpu else 0.0}
    if gpu:  # --deterministic promises bitwise equality on the GPU too (docs/training.md)
        det = config.replace(deterministic=True)
        whole = train(det, tmp / "resume-det-whole")
        calls.clear()
        train(det, tmp / "resume-det-split", stop_requested=lambda: calls.append(1) or len(calls) >= half)
        again = train(det, tmp / "resume-det-split", resume=True)
        a = torch.load(whole.model_path, weights_only=True)["state_dict"]
        b = torch.load(again.model_path, weights_only=True)["state_dict"]
        det_diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
        report.check("resume with --deterministic is bit-exact", det_diff == 0.0,
                     f"max |weight difference| {det_diff:.3g}")
        result["deterministic_max_abs_difference"] = det_diff
    return result


# ---------------------------------------------------------------------------------------------
# 5. DDP through torchrun


def _torchrun(args: list[str], nproc: int, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "facever",
           "train", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=cwd)


def section_ddp(report: Report, device, dry: bool, tmp: Path) -> dict:
    import bench_train

    from facever.training.config import TrainConfig
    from facever.training.loop import train

    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    ddp_device = "cuda" if gpus >= 2 else "cpu"
    backend = "nccl" if gpus >= 2 else "gloo"
    if device.type == "cuda" and gpus < 2:
        report.say("  one GPU: NCCL cannot place two ranks on one GPU, so DDP runs on the CPU with gloo here "
                   "(NCCL is still to be proven on a 2-GPU machine)")
    size = (28, 24)
    # 5 identities: the sharded classifier splits them 2 + 3.
    data = bench_train.make_jpeg_folder(tmp / "jpeg-ddp", images=20, identities=5, input_size=size)
    common = ["--arch", "sphere20", "--input-size", "28x24", "--width", "4", "--embedding-dim", "8", "--epochs", "2",
              "--lr", "0.05", "--workers", "0", "--device", ddp_device, "--amp", "off", "--log-every", "1"]
    ref = train(TrainConfig(data=str(data), arch="sphere20", input_size=size, width=4, embedding_dim=8, epochs=2,
                            batch_size=8, lr=0.05, workers=0, device=ddp_device, amp="off"), tmp / "ddp-single")
    ref_w = torch.load(ref.model_path, weights_only=True)["state_dict"]
    out: dict = {"backend": backend, "device": ddp_device, "processes": 2}
    # Dry: the sharded classifier only (each torchrun start costs ~15 s on a small CPU; the full
    # classifier's DDP has its own test, tests/test_train_ddp.py).
    for classifier in ("full", "sharded") if not dry else ("sharded",):
        start = time.perf_counter()
        run_dir = tmp / f"ddp-{classifier}"
        proc = _torchrun([str(data), "--out", str(run_dir), *common, "-b", "4", "--classifier", classifier], 2, tmp)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            report.check(f"DDP ({backend}, {classifier} classifier) equals one process", False,
                         f"torchrun failed: {proc.stderr.strip().splitlines()[-1:]}")
            out[classifier] = {"error": proc.stderr[-2000:]}
            continue
        w = torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]
        diff = max(float((w[k] - ref_w[k]).abs().max()) for k in w)
        report.check(f"DDP ({backend}, 2 processes, {classifier} classifier) == 1 process with the combined batch",
                     diff <= 1e-5, f"max |weight difference| {diff:.2g} (tolerance 1e-5), {seconds:.0f}s with start-up")
        out[classifier] = {"max_abs_difference": diff, "seconds": seconds}
    return out


# ---------------------------------------------------------------------------------------------
# 6. the sharded classifier on the device


def section_sharded(report: Report, device, dry: bool, tmp: Path) -> dict:
    import torch.nn.functional as F

    from facever.training.heads import create_head
    from facever.training.sharded_head import ShardedClassifier

    out: dict = {}
    # Equal to the full head on this device (one shard: the same arithmetic as each of W shards).
    torch.manual_seed(0)
    full = create_head("noisy-softmax", 64, 1000).to(device)
    torch.manual_seed(0)
    shard = ShardedClassifier("noisy-softmax", 64, 1000).to(device)
    x = torch.randn(32, 64, device=device, requires_grad=True)
    y = torch.randint(0, 1000, (32,), device=device)
    torch.manual_seed(1)
    ref = F.cross_entropy(full(x, y), y)
    (gx_ref,) = torch.autograd.grad(ref, x)
    torch.manual_seed(1)
    got = shard(x, y)
    (gx,) = torch.autograd.grad(got, x)
    diff = max(abs(float(got.detach() - ref.detach())), float((gx - gx_ref).abs().max()))
    report.check(f"sharded classifier == full head on {device.type}", diff <= 1e-5, f"max difference {diff:.2g}")
    out["max_abs_difference"] = diff

    classes, dim, batch = (360_000, 512, 256) if device.type == "cuda" else (2_000, 64, 16)
    emb = torch.randn(batch, dim, device=device, requires_grad=True)
    labels = torch.randint(0, classes, (batch,), device=device)
    for rate in (1.0, 0.1):
        head = ShardedClassifier("noisy-softmax", dim, classes, sample_rate=rate).to(device)
        opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)

        def step():
            loss = head(emb, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(2):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        n = 20 if device.type == "cuda" else 3
        start = time.perf_counter()
        for _ in range(n):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        ms = (time.perf_counter() - start) / n * 1000
        out[f"step_ms_rate_{rate}"] = ms
        report.say(f"  head step, {classes:,} classes x {dim}, batch {batch}, sample rate {rate}: {ms:.1f} ms")
    out.update(classes=classes, dim=dim, batch=batch)
    return out


# ---------------------------------------------------------------------------------------------
# 7. align and embed


def section_align_embed(report: Report, device, dry: bool, tmp: Path) -> dict:
    import bench_align
    import bench_embed

    gpu = device.type == "cuda"
    # 512 images: the per-image loop runs ~30-50 images/s on a GPU, and the budget is 90 s.
    count, batch = (512, 128) if gpu else (4, 4)
    workers = max(1, min(8, (os.cpu_count() or 2) - 1)) if gpu else 1
    a = bench_align.measure(device=device, count=count, batch_size=batch, workers=workers, repeats=1)
    speed, share = a["facever"] / a["plain"], a["facever"] / a["detect"]
    report.say(f"  align: plain loop {a['plain']:.1f} img/s, facever {a['facever']:.1f}, detection alone {a['detect']:.1f}")
    if gpu:
        report.check("align >= 5x the per-image facenet-pytorch loop", speed >= 5, f"{speed:.1f}x", goal=True)
        report.check("align >= 90% of detection alone", share >= 0.9, f"{share:.0%}", goal=True)
    n = 8192 if gpu else 8
    e = bench_embed.compare("sphere20", bench_embed.sphere20, n=n, device=device, repeats=1 if dry else 2, extra={})
    e_speed = e["facever"] / e["plain loop"]
    report.say(f"  embed: plain fp32 batch-32 loop {e['plain loop']:.0f} img/s, facever {e['facever']:.0f} ({e_speed:.1f}x)")
    if gpu:
        report.check("embed >= 3x the plain fp32 batch-32 loop", e_speed >= 3, f"{e_speed:.1f}x", goal=True)
    return {"align": {k: v for k, v in a.items() if k != "summary"} | {"images": count, "speedup": speed,
                                                                         "share_of_detection": share},
            "embed": {"images": n, **e, "speedup": e_speed}}


SECTIONS = [("throughput", section_throughput), ("learns", section_learns), ("resume", section_resume),
            ("ddp", section_ddp), ("sharded", section_sharded), ("align_embed", section_align_embed)]


def table(report: Report, env: dict) -> None:
    report.say("")
    report.say(f"{'section':14s} {'status':8s} {'seconds':>8s} {'budget':>7s}")
    for name, rec in report.sections.items():
        report.say(f"{name:14s} {rec['status']:8s} {rec['seconds']:8.1f} {rec['budget_s']:7d}")
    for c in report.checks:
        mark = ("met" if c["passed"] else "NOT met") if c["kind"] == "goal" else ("PASS" if c["passed"] else "FAIL")
        report.say(f"  {mark:7s} {c['name']}: {c['detail']}")
    where = (f"{env['gpu']} | torch {env['torch']} | CUDA {env['cuda']} | cuDNN {env['cudnn']}" if env["gpu"]
             else f"{NO_GPU} | torch {env['torch']}")
    report.say(f"every figure above: {where}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for gpu_check.json/.txt")
    parser.add_argument("--dry", action="store_true", help="the CPU dry version even where a GPU is present")
    parser.add_argument("--only", default=None, help="comma-separated sections to run (default all)")
    args = parser.parse_args(argv)

    gpu = torch.cuda.is_available() and not args.dry
    device = torch.device("cuda", 0) if gpu else torch.device("cpu")
    dry = not gpu
    if dry:
        torch.set_num_threads(1)  # tiny models: one thread is faster, and kinder to a shared machine
    report = Report(gpu)
    if dry:
        report.say(NO_GPU if not torch.cuda.is_available() else "dry run forced (--dry): CPU, tiny sizes")
    env = environment(device)
    import bench_align
    import bench_train

    # A user's clone has no real photos: training paths run on synthetic faces, align on synthetic ones.
    env["images"] = {"training": bench_train.crop_source(), "align": bench_align.image_source()}
    report.say(f"machine: {env['machine']}")
    report.say(f"images: training paths from {env['images']['training']}; align from {env['images']['align']}")
    report.say(f"GPU: {env['gpu'] or 'none'} | torch {env['torch']} | CUDA {env['cuda']} | cuDNN {env['cudnn']}")
    wanted = set(args.only.split(",")) if args.only else None
    total_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="facever-gpu-check-") as tmp:
        for name, fn in SECTIONS:
            if wanted and name not in wanted:
                continue
            report.say(f"\n== {name}")
            start = time.perf_counter()
            work = Path(tmp) / name
            work.mkdir()
            try:
                record = fn(report, device, dry, work)
                status = "ok"
            except Exception as exc:  # one broken path must not hide the others' figures
                record = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
                status = "error"
                report.check(f"section {name} runs", False, record["error"][:300])
            seconds = time.perf_counter() - start
            over = gpu and seconds > BUDGET_S[name]
            report.sections[name] = {"status": status, "seconds": seconds, "budget_s": BUDGET_S[name],
                                     "over_budget": over, **record}
            if over:
                report.say(f"  note: {name} took {seconds:.0f}s, over its {BUDGET_S[name]}s budget")
    total = time.perf_counter() - total_start
    table(report, env)
    report.say(f"total {total:.0f}s ({'GPU run' if gpu else 'dry run, no GPU figures'}); "
               f"{len(report.failed)} failed check(s){': ' + ', '.join(report.failed) if report.failed else ''}")
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"gpu_found": torch.cuda.is_available(), "dry_run": dry, "environment": env, "total_seconds": total,
               "sections": report.sections, "checks": report.checks, "failed": report.failed}
    if dry:
        payload["note"] = NO_GPU
    (args.out / "gpu_check.json").write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    (args.out / "gpu_check.txt").write_text("\n".join(report.lines) + "\n", encoding="utf-8")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
