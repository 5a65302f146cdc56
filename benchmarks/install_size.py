#!/usr/bin/env python
"""What `pip install .` brings: a new virtual environment, the install, its size on disk, the largest
distributions in it, which torch build came, and whether facever and torchvision's compiled operators work.

    python benchmarks/install_size.py                                   # plain `pip install .`
    python benchmarks/install_size.py --first 'torch==2.13.0'           # a torch installed first (CPU build here)
    python benchmarks/install_size.py --first torch torchvision --first-index https://download.pytorch.org/whl/cpu
    python benchmarks/install_size.py --make-setup                      # what `make setup` installs

`--first` installs those requirements before facever (the README's CPU-only path); `--first-index`
takes them from that index (PyTorch's CPU wheels). `--make-setup` installs as `make setup` does
(the Makefile's `-c constraints.txt -e '.[...]'`). Sizes are the files each distribution's RECORD lists, in
MB (10^6 bytes); the venv's total is `du`. `--keep DIR` keeps the venv there.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = r"""
import json, subprocess, sys
out = {}
import torch
out["torch"] = torch.__version__
out["torch_cuda"] = torch.version.cuda
try:
    import torchvision
    from torchvision.ops import nms
    nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
    out["torchvision"] = torchvision.__version__ + " (nms runs)"
except Exception as exc:  # the point of the check: report, do not fail
    out["torchvision"] = f"FAILS: {type(exc).__name__}: {exc}"[:300]
done = subprocess.run([sys.executable, "-m", "facever", "--version"], capture_output=True, text=True)
out["facever"] = (done.stdout or done.stderr).strip()[:300]
print(json.dumps(out))
"""


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done


def distribution_sizes(site: Path) -> dict[str, int]:
    """Bytes per installed distribution, from each `*.dist-info/RECORD` (files that exist)."""
    sizes = {}
    for record in site.glob("*.dist-info/RECORD"):
        name = record.parent.name[: -len(".dist-info")]  # name-version
        total = 0
        with record.open(newline="") as f:
            for row in csv.reader(f):
                if row and (site / row[0]).is_file():
                    total += (site / row[0]).stat().st_size
        sizes[name] = total
    return sizes


def du_bytes(path: Path) -> int:
    return int(run(["du", "-sb", str(path)]).stdout.split()[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--first", nargs="+", default=[], help="requirements installed before facever")
    ap.add_argument("--first-index", default=None, help="index URL for --first (e.g. PyTorch's CPU wheels)")
    ap.add_argument("--make-setup", action="store_true", help="install as `make setup` does")
    ap.add_argument("--keep", type=Path, default=None, help="create the venv here and keep it")
    ap.add_argument("--top", type=int, default=12, help="largest distributions to list")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    venv = args.keep or Path(tempfile.mkdtemp(prefix="facever-install-")) / "venv"
    start = time.perf_counter()
    run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    steps = []
    if args.first:
        cmd = [py, "-m", "pip", "install", "--quiet", *args.first]
        if args.first_index:
            cmd += ["--index-url", args.first_index]
        run(cmd)
        steps.append(" ".join(["pip install", *args.first] + (["--index-url", args.first_index] if args.first_index else [])))
    if args.make_setup:
        # The Makefile's own line, so the measurement follows it: `-c constraints.txt -e '.[extras]'`.
        import re

        target = re.search(r"-e '(\.\[[^\]]*\])'", (ROOT / "Makefile").read_text()).group(1)
        cmd = [py, "-m", "pip", "install", "--quiet", "-c", "constraints.txt", "-e", target]
        steps.append(f"pip install -c constraints.txt -e '{target}' (make setup)")
    else:
        cmd = [py, "-m", "pip", "install", "--quiet", "."]
        steps.append("pip install .")
    # A copy of the working tree: pip must not write build/ or *.egg-info into the repository.
    with tempfile.TemporaryDirectory(prefix="facever-src-") as src:
        tree = Path(src) / "facever"
        shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                                                  "results"))
        done = run(cmd, cwd=tree if not args.make_setup else tree)
        seconds = time.perf_counter() - start
        checks = json.loads(run([py, "-c", CHECK]).stdout)
    site = next((venv / "lib").glob("python3*/site-packages"))
    sizes = distribution_sizes(site)
    total = du_bytes(venv)
    nvidia = sum(v for k, v in sizes.items() if k.startswith("nvidia"))
    print(f"steps: {'; '.join(steps)}  ({seconds:.0f} s)")
    print(f"venv on disk: {total / 1e6:,.0f} MB; {len(sizes)} distributions; nvidia-* together {nvidia / 1e6:,.0f} MB "
          f"({sum(k.startswith('nvidia') for k in sizes)} packages)")
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {size / 1e6:9,.0f} MB  {name}")
    for key, value in checks.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps({"steps": steps, "seconds": seconds, "venv_bytes": total,
                                         "distributions": sizes, "checks": checks, "pip_log": done.stdout[-2000:]},
                                        indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(venv.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
