"""How well `--recipe cpu-small` learns real faces: train on ORL people s1..s30, verify pairs among
the never-seen s31..s40, through the commands a user runs (`facever pairs`, `facever train`,
`facever embed`, `facever eval-lfw`). Several training seeds, Noisy Softmax and plain softmax side by side.

    python benchmarks/orl_cpu_small.py ORL_DIR [--seeds 0 1 2] [--heads noisy-softmax softmax] [-- TRAIN OPTIONS]

ORL_DIR holds s1..s40 (AT&T "ORL" faces, 40 people x 10 greyscale 92x112 photos). Prints one line
per run and the mean, spread (min..max) and standard deviation per head; --json FILE keeps them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import describe_machine  # noqa: E402


def facever(*args: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    done = subprocess.run([sys.executable, "-m", "facever", *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"facever {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def build(orl: Path, work: Path, pair_seed: int) -> tuple[Path, Path, Path]:
    from PIL import Image

    train_dir, test_dir = work / "train", work / "test"
    train_dir.mkdir(parents=True, exist_ok=True)
    for i in range(1, 31):
        link = train_dir / f"s{i}"
        if not link.exists():
            link.symlink_to((orl / f"s{i}").resolve(), target_is_directory=True)
    counts = {}
    for i in range(31, 41):
        name = f"Orl_S{i}"
        photos = sorted((orl / f"s{i}").glob("*.pgm"), key=lambda p: int(p.stem))
        for k, src in enumerate(photos, start=1):
            dst = test_dir / name / f"{name}_{k:04d}.png"
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                Image.open(src).convert("RGB").save(dst)
        counts[name] = len(photos)
    # 10 folds of 45 same + 45 different pairs: every same-person pair of the 10 people once.
    pairs = work / f"pairs-{pair_seed}.txt"
    facever("pairs", str(test_dir), "--out", str(pairs), "--per-fold", "45", "--seed", str(pair_seed))
    return train_dir, test_dir, pairs


def main() -> None:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("orl", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--heads", nargs="+", default=["noisy-softmax", "softmax"])
    ap.add_argument("--recipe", default="cpu-small")
    ap.add_argument("--pair-seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    print(describe_machine(), flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="orl-cpu-small-"))
    train_dir, test_dir, pairs = build(args.orl, work, args.pair_seed)
    results: dict[str, list[float]] = {h: [] for h in args.heads}
    runs = []
    for head in args.heads:
        for seed in args.seeds:
            run = work / f"{head}-{seed}"
            start = time.perf_counter()
            if not (run / "model.pt").exists():
                facever("train", str(train_dir), "--recipe", args.recipe, "--head", head, "--seed", str(seed),
                        "--device", "cpu", "--workers", "0", "--out", str(run), *extra)
            train_s = time.perf_counter() - start
            emb = run / "orl-test.npz"
            facever("embed", str(run / "model.pt"), str(test_dir), "--out", str(emb), "--flip", "concat",
                    "--device", "cpu", "--amp", "off")
            report = json.loads(facever("eval-lfw", "--embeddings", str(emb), "--pairs", str(pairs), "--ext", ".png",
                                        "--json"))
            acc = float(report["accuracy"]["mean"])
            results[head].append(acc)
            runs.append({"head": head, "seed": seed, "accuracy": acc, "auc": report.get("auc"), "train_s": train_s})
            print(f"{head:14s} seed {seed}: accuracy {acc:.4f}  AUC {report.get('auc', float('nan')):.4f}  "
                  f"train {train_s:.0f} s", flush=True)
    summary = {}
    for head, accs in results.items():
        if not accs:
            continue
        mean = statistics.fmean(accs)
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        summary[head] = {"mean": mean, "std": sd, "min": min(accs), "max": max(accs), "n": len(accs)}
        print(f"{head:14s} mean {mean:.4f}  std {sd:.4f}  range {min(accs):.4f}..{max(accs):.4f}  ({len(accs)} seeds)")
    if args.json:
        args.json.write_text(json.dumps({"machine": describe_machine(), "recipe": args.recipe, "extra": extra,
                                         "pair_seed": args.pair_seed, "runs": runs, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
