#!/usr/bin/env python
"""Run every benchmark (`benchmarks/bench_*.py`) in its own process and keep their reports.

    python benchmarks/run_all.py            # full sizes
    python benchmarks/run_all.py --quick    # tiny sizes, to check that they run

Each benchmark prints what it measured, on which machine, against a baseline measured in the same
run. Reports are also collected in `benchmarks/results/<name>.txt` (ignored by git).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")]
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if any(n in s.stem for n in names)]
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    failed = []
    for script in scripts:
        print(f"\n=== {script.name} {'(quick)' if quick else ''}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script)] + (["--quick"] if quick else []),
                              capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr[-4000:] if proc.returncode else "")
        (results / f"{script.stem}.txt").write_text(proc.stdout)
        print(f"--- {script.name}: exit {proc.returncode} in {time.perf_counter() - start:.1f}s", flush=True)
        if proc.returncode:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
