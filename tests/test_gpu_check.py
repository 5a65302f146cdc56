"""`make gpu-check`'s dry version (what a machine without a GPU runs): every section runs and passes,
with the real photos (../shared/data) or, as in a user's clone, without them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEVER_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.mark.slow  # ~25 s of CPU time; longer on a loaded machine (two torchrun processes)
@pytest.mark.real_data  # CI runs it again with the data hidden: it must pass on synthetic faces then
@pytest.mark.timeout(600)
def test_dry_gpu_check_runs_every_section_and_says_no_gpu(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=580, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["dry_run"] is True and report["failed"] == []
    assert set(report["sections"]) == {"throughput", "learns", "resume", "ddp", "sharded", "align_embed"}
    assert all(s["status"] == "ok" for s in report["sections"].values())
    names = {c["name"] for c in report["checks"] if c["kind"] == "check" and c["passed"]}
    assert "resume is exact" in names
    assert any(n.startswith("DDP (gloo, 2 processes, sharded classifier)") for n in names)
    assert report["sections"]["resume"]["max_abs_difference"] == 0.0
    assert report["sections"]["learns"]["accuracy_trained"] > report["sections"]["learns"]["accuracy_untrained"]
    env_rec = report["environment"]
    assert env_rec["torch"] == torch.__version__ and env_rec["gpu"] is None
    # Which images it used, said in the report: the real ones where present, synthetic faces otherwise.
    real_orl, real_faces = (SHARED_DATA / "faces" / "orl").is_dir(), (SHARED_DATA / "faces").is_dir()
    assert (env_rec["images"]["training"] == "ORL faces") == real_orl
    assert env_rec["images"]["align"].startswith("real photos" if real_faces else "synthetic faces")
    text = (tmp_path / "gpu_check.txt").read_text()
    if not torch.cuda.is_available():
        assert "NO GPU FOUND" in proc.stdout and "NO GPU FOUND" in text and "none of its figures is a GPU figure" in text
