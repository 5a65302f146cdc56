#!/usr/bin/env python
"""The README's quick start on real faces (AT&T "ORL", 40 people x 10 photos), timed and repeated over
seeds: exactly the commands the README gives, run as a user runs them.

    photos/train/<person> and photos/test/<person>  (links to ORL's s1..s40 folders)
    facever align photos/ aligned/
    facever pairs aligned/test --out pairs.txt --per-fold N --seed PAIR_SEED
    facever train aligned/train --recipe cpu-small --head HEAD --seed SEED [OPTIONS] --out runs/...
    facever embed runs/... aligned/test --out test.npz --flip concat
    facever eval-lfw -e test.npz --pairs pairs.txt --json

Usage:

    python benchmarks/orl_cpu_small.py ORL_DIR                      # the README's figure: s1-s30 -> s31-s40
    python benchmarks/orl_cpu_small.py ORL_DIR --train 1-20 --test 21-30 \\
        --grid cosine-scale=8,16,32 --grid alpha2=0.1,0.3,0.5       # choosing hyper-parameters on training people
    python benchmarks/orl_cpu_small.py ORL_DIR --heads softmax --seeds 0 1 2 3 4 -- --epochs 40

ORL_DIR holds s1..s40 (92x112 greyscale .pgm files). `--train` and `--test` are ranges or lists of
person numbers (`1-30`, `31-40`, `1-5,9`). Every combination of `--heads` x `--grid` (a `facever train`
option without its dashes, comma-separated values; repeat for a product) x `--seeds` is trained with
`--recipe`; options after `--` go to every `facever train`. A variant's runs, its mean, standard
deviation (n-1) and range are printed; `--json FILE` keeps everything (each run's accuracy, AUC, the
seconds of each command, the align report's misses, the machine and the command lines).

Runs are kept in `--work` (default: a temporary folder) under a name that encodes the full training
command, so running again with the same work folder reuses finished runs and aligned photos.
The machine's load is printed with each run's times: times from a loaded machine are not the README's.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe_machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def facever(*args: str) -> tuple[str, float]:
    """Run `facever ARGS` as a user does (a new process); stdout and wall seconds. Exits on failure."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "facever", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"facever {shlex.join(args)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout, seconds


def people(spec: str) -> list[int]:
    """`1-30`, `31-40`, `1-5,9` -> person numbers."""
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    if len(set(out)) != len(out):
        raise SystemExit(f"person list {spec!r} repeats a person")
    return out


def link_photos(orl: Path, photos: Path, train: list[int], test: list[int]) -> None:
    """The quick start's layout, photos/train/<person>, photos/test/<person>, as links to ORL's folders."""
    for part, numbers in (("train", train), ("test", test)):
        for i in numbers:
            src = (orl / f"s{i}").resolve()
            if not src.is_dir():
                raise SystemExit(f"{src}: not found (ORL_DIR must hold s1..s40)")
            link = photos / part / f"s{i}"
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(src, target_is_directory=True)


def align_misses(aligned: Path) -> list[str]:
    report = aligned / "align_report.csv"
    if not report.is_file():
        return []
    with report.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [f"{r['path']} ({r['status']})" for r in rows if r["status"] != "aligned"]


def max_per_fold(test_dir: Path, folds: int) -> int:
    sys.path.insert(0, str(ROOT))
    from facever.protocols.pair_lists import identity_images, max_pairs_per_fold

    counts = {name: len(images) for name, images in identity_images(test_dir).items()}
    return max_pairs_per_fold(counts, folds=folds)


def parse_grid(items: list[str]) -> list[list[str]]:
    """`["cosine-scale=8,16", "alpha2=0.1,0.5"]` -> one list of train options per combination."""
    axes = []
    for item in items:
        key, eq, values = item.partition("=")
        if not eq or not key or not values:
            raise SystemExit(f"--grid {item!r}: expected OPTION=V1,V2,... (e.g. cosine-scale=8,16,32)")
        axes.append([(key.lstrip("-"), v) for v in values.split(",")])
    combos = []
    for combo in itertools.product(*axes) if axes else [()]:
        combos.append([arg for key, value in combo for arg in (f"--{key}", value)])
    return combos


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def summarise(accs: list[float]) -> dict:
    return {"mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "min": min(accs), "max": max(accs), "n": len(accs)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("orl", type=Path, help="folder with ORL's s1..s40")
    ap.add_argument("--train", default="1-30", help="people to train on (default 1-30)")
    ap.add_argument("--test", default="31-40", help="people to verify, never trained on (default 31-40)")
    ap.add_argument("--recipe", default="cpu-small")
    ap.add_argument("--heads", nargs="+", default=["noisy-softmax", "softmax"])
    ap.add_argument("--grid", action="append", default=[], metavar="OPTION=V1,V2",
                    help="a facever train option and its values (repeat for a product)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--per-fold", type=int, default=None,
                    help="same pairs per fold (default: every same-person pair of the test people, e.g. 45 for 10 "
                         "people with 10 photos each)")
    ap.add_argument("--pair-seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="keep photos, crops and runs here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, default=None, help="write every result here")
    args = ap.parse_args(argv)
    train, test = people(args.train), people(args.test)
    if set(train) & set(test):
        raise SystemExit(f"--train and --test share people: {sorted(set(train) & set(test))}")

    machine = describe_machine()
    print(machine, flush=True)
    work = (args.work or Path(tempfile.mkdtemp(prefix="orl-quick-start-"))).resolve()
    split = f"train{args.train}_test{args.test}".replace(",", "+")
    photos, aligned = work / split / "photos", work / split / "aligned"
    link_photos(args.orl, photos, train, test)
    timings: dict[str, float] = {}
    _, timings["align"] = facever("align", str(photos), str(aligned))
    misses = align_misses(aligned)
    print(f"align: {len(train) + len(test)} people in {timings['align']:.0f} s; "
          f"no face found in {len(misses)} photo(s){': ' + ', '.join(misses) if misses else ''}", flush=True)

    per_fold = args.per_fold or max_per_fold(aligned / "test", args.folds)
    pairs = work / split / f"pairs-{per_fold}-{args.pair_seed}.txt"
    _, timings["pairs"] = facever("pairs", str(aligned / "test"), "--out", str(pairs), "--per-fold", str(per_fold),
                                  "--folds", str(args.folds), "--seed", str(args.pair_seed))
    print(f"pairs: {args.folds} folds x ({per_fold} same + {per_fold} different) among people {args.test}", flush=True)

    variants = [(head, grid) for head in args.heads for grid in parse_grid(args.grid)]
    runs = []
    summary = {}
    for head, grid in variants:
        name = " ".join([head, *grid])
        accs = []
        for seed in args.seeds:
            train_args = ["--recipe", args.recipe, "--head", head, "--seed", str(seed), *grid, *extra]
            key = hashlib.sha256("\0".join([str(aligned / "train"), *train_args]).encode()).hexdigest()[:10]
            run = work / split / "runs" / f"{head}-{seed}-{key}"
            seconds = {}
            if not (run / "model.pt").is_file():
                shutil.rmtree(run, ignore_errors=True)  # an interrupted run of this script's own: start it again
                _, seconds["train"] = facever("train", str(aligned / "train"), *train_args, "--out", str(run))
            emb = run / "test.npz"
            _, seconds["embed"] = facever("embed", str(run), str(aligned / "test"), "--out", str(emb), "--flip", "concat")
            out, seconds["eval"] = facever("eval-lfw", "-e", str(emb), "--pairs", str(pairs), "--json")
            report = json.loads(out)
            acc = 100 * float(report["accuracy"]["mean"])
            accs.append(acc)
            runs.append({"variant": name, "head": head, "options": grid + extra, "seed": seed, "accuracy": acc,
                         "auc": report.get("auc"), "seconds": seconds, "load_average": load_average(),
                         "train_command": shlex.join(["facever", "train", "aligned/train", *train_args])})
            times = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
            print(f"{name:40s} seed {seed}: {acc:.2f}%  AUC {report.get('auc', float('nan')):.4f}  ({times}; "
                  f"load {load_average()})", flush=True)
        summary[name] = summarise(accs)
    print(f"\npeople {args.train} -> {args.test}, {2 * args.folds * per_fold} pairs, recipe {args.recipe}"
          + (f", train options {shlex.join(extra)}" if extra else ""))
    width = max(len(n) for n in summary)
    for name, s in summary.items():
        print(f"{name:{width}s}  mean {s['mean']:.2f}%  sd {s['std']:.2f}  range {s['min']:.2f}-{s['max']:.2f}  "
              f"({s['n']} seeds)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": machine, "date": time.strftime("%Y-%m-%d"), "orl": str(args.orl), "train_people": args.train,
            "test_people": args.test, "recipe": args.recipe, "extra": extra, "pairs": 2 * args.folds * per_fold,
            "pair_seed": args.pair_seed, "align_misses": misses, "timings": timings, "runs": runs,
            "summary": summary, "command": shlex.join([sys.executable, *sys.argv]),
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
