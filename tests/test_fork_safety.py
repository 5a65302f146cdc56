"""Align, then embed with worker processes, in ONE process: the workers must not deadlock.

Regression: alignment runs OpenCV (warps in writer threads); the DataLoader workers that `facever
embed` forks afterwards hung for good in OpenCV's inherited thread-pool state. Run in a child
process with a time limit so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from facever.data_prep.align_dataset import AlignConfig, align_dataset
    from facever.embedding.extract import embed_images
    from facever.embedding.loading import load_embedding_model
    from tests.helpers.benchmark_data import tiny_model

    src, tmp = Path(sys.argv[1]), Path(sys.argv[2])
    summary = align_dataset(src, tmp / "aligned", config=AlignConfig(workers=1))
    model = load_embedding_model(str(tiny_model(tmp / "model.pt")))
    rel = sorted(p.relative_to(tmp / "aligned").as_posix() for p in (tmp / "aligned").rglob("*.jpg"))
    emb, bad = embed_images(model, tmp / "aligned", rel, workers=2, batch_size=1)
    print("embedded", len(emb.paths), "aligned", summary.aligned)
    """
)


@pytest.mark.slow
def test_embed_workers_after_alignment_in_the_same_process(tmp_path, faces_dir):
    from PIL import Image

    # Real LFW photos, one of them blown up to 3000 x 3000: shrinking it for detection is what makes
    # OpenCV start its thread pool in this process.
    src = tmp_path / "photos" / "Anthony_Hopkins"
    src.mkdir(parents=True)
    photos = sorted((faces_dir / "lfw_sample" / "Anthony_Hopkins").glob("*.jpg"))
    Image.open(photos[0]).save(src / photos[0].name)
    Image.open(photos[1]).resize((3000, 3000), Image.BICUBIC).save(src / photos[1].name, quality=95)
    src = src.parent
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(src), str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=str(__import__("pathlib").Path(__file__).parents[1]),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "embedded 2 aligned 2" in proc.stdout
