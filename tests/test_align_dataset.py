"""The dataset runner on real photos: odd and broken files, misses and the report, resume after an
interruption, --overwrite and --all. Photos are shrunk copies (tmp_path) so MTCNN stays quick on CPU."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from facever.data_prep.align_dataset import (
    REPORT_NAME,
    AlignConfig,
    align_dataset,
    plan_alignment,
    read_report,
)
from facever.core.images import read_image_rgb
from facever.core.errors import FaceverError

PORTRAITS = [
    "facenet_pytorch/test_images/angelina_jolie/1.jpg",
    "facenet_pytorch/test_images/kate_siegel/1.jpg",
    "facenet_pytorch/test_images/paul_rudd/1.jpg",
    "facenet_pytorch/test_images/shea_whigham/1.jpg",
    "lfw_sample/Anthony_Hopkins/Anthony_Hopkins_0001.jpg",
]


def shrink(rgb: np.ndarray, side: int = 256) -> np.ndarray:
    import cv2

    scale = side / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def save(path: Path, rgb: np.ndarray, **kw) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, **kw)
    return path


def scenery(h: int = 200, w: int = 240) -> np.ndarray:
    """A picture with no face in it."""
    import cv2

    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx % 256, yy % 256, ((xx + yy) // 2) % 256], -1).astype(np.uint8)
    cv2.rectangle(img, (50, 50), (120, 150), (200, 30, 30), -1)
    return img


@pytest.fixture(scope="module")
def small_portraits(faces_dir) -> list[np.ndarray]:
    return [shrink(read_image_rgb(faces_dir / name)) for name in PORTRAITS]


def config(**kw) -> AlignConfig:
    # min_face 40: these photos are small portraits, and a shorter MTCNN pyramid keeps CPU tests quick.
    base = dict(device="cpu", workers=0, batch_size=8, max_detect_side=480, min_face=40)
    base.update(kw)
    return AlignConfig(**base)


def report_by_path(dst: Path) -> dict[str, dict]:
    return {row["path"]: row for row in read_report(dst / REPORT_NAME)}


def assert_crop(path: Path, size=(112, 96)) -> None:
    from PIL import Image

    with Image.open(path) as img:
        assert img.mode == "RGB" and img.size == (size[1], size[0]), path


def test_odd_and_broken_inputs_are_never_fatal(tmp_path, faces_dir, small_portraits):
    from PIL import Image

    src, dst = tmp_path / "src", tmp_path / "dst"
    face = small_portraits[0]
    save(src / "ok" / "rgb.jpg", face, quality=92)
    (src / "ok").mkdir(exist_ok=True)
    (src / "ok" / "webp_named.jpg").write_bytes((faces_dir / "deepface/g03/img47.jpg").read_bytes())
    (src / "ok" / "orl.pgm").write_bytes((faces_dir / "orl/s1/1.pgm").read_bytes())
    rgba = np.dstack([small_portraits[1], np.full(small_portraits[1].shape[:2], 255, np.uint8)])
    rgba[:10, :10, 3] = 0  # some transparency
    save(src / "ok" / "rgba.png", rgba)
    Image.fromarray(small_portraits[2]).convert("CMYK").save(src / "ok" / "cmyk.jpg", quality=92)
    with Image.open(src / "ok" / "cmyk.jpg") as check:
        assert check.mode == "CMYK"
    grey16 = (small_portraits[3].mean(axis=2) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(src / "ok" / "grey16.png")
    with Image.open(src / "ok" / "grey16.png") as check:
        assert check.mode.startswith("I")  # really 16-bit on disk
    import cv2

    huge = cv2.resize(small_portraits[4], (3000, 3000), interpolation=cv2.INTER_CUBIC)
    save(src / "ok" / "huge.jpg", huge, quality=80)
    save(src / "miss" / "tiny.png", np.full((9, 11, 3), 90, np.uint8))
    save(src / "miss" / "scenery.jpg", scenery())
    (src / "bad").mkdir()
    (src / "bad" / "corrupt.jpg").write_bytes(os.urandom(2000))
    whole = (src / "ok" / "rgb.jpg").read_bytes()
    (src / "bad" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (src / "bad" / "text.png").write_text("this is not an image\n", encoding="utf-8")
    (src / "bad" / "empty.jpg").write_bytes(b"")

    calls = []
    summary = align_dataset(src, dst, config=config(on_miss="center-crop", workers=2), progress=calls.append)

    ok = ["rgb", "webp_named", "orl", "rgba", "cmyk", "grey16", "huge"]
    assert summary.total == 13 and sum(calls) == 13
    assert (summary.aligned, summary.center_cropped, summary.skipped, summary.failed) == (7, 2, 0, 4)
    for name in ok:
        assert_crop(dst / "ok" / f"{name}.jpg")
    rows = report_by_path(dst)
    assert set(rows) == {
        "miss/tiny.png",
        "miss/scenery.jpg",
        "bad/corrupt.jpg",
        "bad/truncated.jpg",
        "bad/text.png",
        "bad/empty.jpg",
    }
    assert rows["miss/tiny.png"]["status"] == "center-cropped"
    assert "smaller than `min_face`" in rows["miss/tiny.png"]["reason"]
    assert rows["miss/scenery.jpg"] == {
        "path": "miss/scenery.jpg",
        "status": "center-cropped",
        "reason": "no face found",
        "output": "miss/scenery.jpg",
    }
    assert_crop(dst / "miss" / "scenery.jpg")
    assert_crop(dst / "miss" / "tiny.jpg")
    for name in ("corrupt.jpg", "truncated.jpg", "text.png", "empty.jpg"):
        assert rows[f"bad/{name}"]["status"] == "failed" and rows[f"bad/{name}"]["reason"], name
        assert not (dst / "bad" / name.replace(".png", ".jpg")).exists()
    assert "not an image" in rows["bad/text.png"]["reason"]
    # No temporary files are left behind.
    assert not [p for p in dst.rglob(".*")]


def test_misses_are_skipped_and_listed(tmp_path, small_portraits):
    src, dst = tmp_path / "src", tmp_path / "dst"
    save(src / "a" / "face.png", small_portraits[0])
    save(src / "a" / "scenery.png", scenery())
    summary = align_dataset(src, dst, config=config(format="png"))
    assert (summary.aligned, summary.skipped) == (1, 1)
    assert_crop(dst / "a" / "face.png")
    assert not (dst / "a" / "scenery.png").exists()
    rows = report_by_path(dst)
    assert rows["a/scenery.png"]["status"] == "skipped" and rows["a/scenery.png"]["output"] == ""


def test_person_folders_given_as_links_are_aligned(tmp_path, small_portraits):
    # photos/train/<person> as links to the real folders, as a train/test split is often made;
    # a link back up the tree does not make the walk loop.
    people = tmp_path / "people"
    save(people / "a" / "face.png", small_portraits[0])
    save(people / "b" / "face.png", small_portraits[1])
    src, dst = tmp_path / "photos", tmp_path / "dst"
    (src / "train").mkdir(parents=True)
    (src / "train" / "a").symlink_to(people / "a", target_is_directory=True)
    (src / "test").mkdir()
    (src / "test" / "b").symlink_to(people / "b", target_is_directory=True)
    (people / "a" / "loop").symlink_to(src, target_is_directory=True)
    summary = align_dataset(src, dst, config=config(format="png"))
    assert (summary.total, summary.aligned) == (2, 2)
    assert_crop(dst / "train" / "a" / "face.png")
    assert_crop(dst / "test" / "b" / "face.png")


class Interrupt(Exception):
    pass


def _snapshot(dst: Path) -> dict[str, tuple[int, int, int]]:
    """The visible crops: a kill mid-write leaves a hidden `.<stem>.partial-*.jpg`, which every reader
    of image folders skips and the next run removes (checked apart)."""
    return {
        p.relative_to(dst).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
        for p in dst.rglob("*.jpg") if not p.name.startswith(".")
    }


def test_interrupted_run_resumes_with_only_the_missing_files(tmp_path, small_portraits):
    import cv2

    src, dst = tmp_path / "src", tmp_path / "dst"
    # One size for all, so batches of two fill up while the run goes: the interruption comes after the
    # second detector call, before the third (total 6: at most 4 crops written).
    save(src / "000_scenery.jpg", scenery(160, 136))  # first in order: centre-cropped in the first run
    for i, rgb in enumerate(small_portraits):
        save(src / f"person{i}" / "photo.jpg", cv2.resize(rgb, (136, 160), interpolation=cv2.INTER_AREA))
    total = 1 + len(small_portraits)
    cfg = config(batch_size=2, write_threads=1, on_miss="center-crop")

    def stop_after_two(n, seen=[]):  # noqa: B006 - the list counts calls
        seen.append(n)
        if len(seen) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        align_dataset(src, dst, config=cfg, progress=stop_after_two)
    first = _snapshot(dst)
    assert 2 <= len(first) < total, first
    assert "000_scenery.jpg" in first
    assert report_by_path(dst)["000_scenery.jpg"]["status"] == "center-cropped"
    assert not [p for p in dst.rglob(".*")]  # no half-written files

    # What a `kill -9` mid-write leaves: a hidden temporary file, never taken for a crop.
    stale = dst / "person4" / ".photo.partial-x1y2z3.jpg"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"half a jpeg")
    plan = plan_alignment(src, dst, config=cfg)
    assert plan.already_done == len(first)
    assert {item.output for item in plan.todo} == {f"person{i}/photo.jpg" for i in range(5)} - set(first)
    calls = []
    summary = align_dataset(src, dst, config=cfg, progress=calls.append)
    assert summary.processed == sum(calls) == total - len(first)
    assert summary.already_done == len(first)
    second = _snapshot(dst)
    assert len(second) == total
    for name, stamp in first.items():
        assert second[name] == stamp, f"{name} was rewritten"
    assert not stale.exists()
    # The first run's miss is still reported although the second run did not touch it.
    assert report_by_path(dst)["000_scenery.jpg"]["status"] == "center-cropped"

    # Nothing left to do; --overwrite redoes everything.
    assert align_dataset(src, dst, config=cfg).processed == 0
    redo = align_dataset(src, dst, config=config(batch_size=8, on_miss="skip", overwrite=True))
    assert redo.processed == total and redo.skipped == 1
    assert not (dst / "000_scenery.jpg").exists()  # a skip under --overwrite removes the old crop
    assert report_by_path(dst)["000_scenery.jpg"]["status"] == "skipped"


def test_all_faces_writes_numbered_crops(tmp_path, small_portraits):
    import cv2

    src, dst = tmp_path / "src", tmp_path / "dst"
    a = cv2.resize(small_portraits[0], (200, 200 * small_portraits[0].shape[0] // small_portraits[0].shape[1]))
    b = cv2.resize(small_portraits[2], (160, 160 * small_portraits[2].shape[0] // small_portraits[2].shape[1]))
    canvas = np.full((max(a.shape[0], b.shape[0]), a.shape[1] + b.shape[1], 3), 127, np.uint8)
    canvas[: a.shape[0], : a.shape[1]] = a
    canvas[: b.shape[0], a.shape[1] :] = b
    save(src / "pair.jpg", canvas, quality=95)
    save(src / "single.jpg", small_portraits[1], quality=95)
    save(src / "scenery.jpg", scenery())
    summary = align_dataset(src, dst, config=config(all_faces=True, on_miss="center-crop"))
    assert summary.aligned == 2 and summary.faces_written == 3 and summary.multi_face == 1
    assert summary.center_cropped == 1
    names = sorted(p.name for p in dst.glob("*.jpg"))
    assert names == ["pair_0.jpg", "pair_1.jpg", "scenery_0.jpg", "single_0.jpg"]
    assert report_by_path(dst)["scenery.jpg"]["output"] == "scenery_0.jpg"
    for name in names:
        assert_crop(dst / name)
    # `_0` marks an image as done: a rerun has nothing to do.
    assert plan_alignment(src, dst, config=config(all_faces=True, on_miss="center-crop")).todo == ()


def test_list_file_source_mirrors_paths(tmp_path, small_portraits):
    src, dst = tmp_path / "data", tmp_path / "out"
    save(src / "p1" / "x.jpg", small_portraits[0])
    save(src / "p2" / "y.jpg", small_portraits[1])
    listing = src / "list.txt"
    listing.write_text("p2/y.jpg\t1\np1/x.jpg\t0\np3/missing.jpg\t2\n", encoding="utf-8")
    summary = align_dataset(listing, dst, config=config(size=(112, 112)))
    assert (summary.aligned, summary.failed) == (2, 1)
    assert_crop(dst / "p1" / "x.jpg", (112, 112))
    assert_crop(dst / "p2" / "y.jpg", (112, 112))
    assert "no such file" in report_by_path(dst)["p3/missing.jpg"]["reason"]


def test_bad_src_and_dst_fail_before_any_work(tmp_path):
    with pytest.raises(FaceverError, match="nope: no such file or folder"):
        plan_alignment(tmp_path / "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "src").mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FaceverError, match="file: exists and is not a folder"):
        plan_alignment(tmp_path / "src", blocker)
    with pytest.raises(FaceverError, match="cannot write there"):
        plan_alignment(tmp_path / "src", blocker / "sub")


def test_report_is_valid_csv_with_header(tmp_path, small_portraits):
    src, dst = tmp_path / "src", tmp_path / "dst"
    save(src / "a,b.jpg", scenery())  # a comma in a name must survive the CSV
    align_dataset(src, dst, config=config())
    with open(dst / REPORT_NAME, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "status", "reason", "output"]
    assert rows[1] == ["a,b.jpg", "skipped", "no face found", ""]


@pytest.mark.slow
def test_killed_process_resumes(tmp_path, small_portraits):
    """A real `kill -9` of `facever align` mid-run: only complete crops remain visible, and a rerun
    processes exactly the images without a crop, leaving the others untouched."""
    import signal
    import subprocess
    import sys
    import time

    import cv2

    src, dst = tmp_path / "src", tmp_path / "dst"
    total = 12
    for i in range(total):
        rgb = cv2.resize(small_portraits[i % len(small_portraits)], (136, 160), interpolation=cv2.INTER_AREA)
        save(src / f"p{i:02d}" / "photo.jpg", rgb)
    cmd = [sys.executable, "-m", "facever", "align", str(src), str(dst), "--device", "cpu", "--workers", "0",
           "--batch-size", "2", "--min-face", "40", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(list(dst.rglob("photo.jpg"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = _snapshot(dst)
    if len(first) == total:
        pytest.fail("the run finished before it could be killed; use more images")
    assert len(first) >= 3
    from PIL import Image

    for name in first:  # every visible crop is complete
        with Image.open(dst / name) as img:
            img.load()
            assert img.size == (96, 112)

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    import json

    summary = json.loads(result.stdout)
    assert summary["already_done"] == len(first)
    assert summary["processed"] == total - len(first)
    second = _snapshot(dst)
    assert len(second) == total
    for name, stamp in first.items():
        assert second[name] == stamp
    assert not list(dst.rglob(".*partial*"))  # whatever the kill left half-written is gone


def test_write_failure_stops_with_the_file_named(tmp_path, small_portraits):
    src, dst = tmp_path / "src", tmp_path / "dst"
    save(src / "a" / "face.jpg", small_portraits[0])
    dst.mkdir()
    (dst / "a").write_text("a file where the output folder should be")
    with pytest.raises(FaceverError, match=r"a/face\.jpg: cannot write"):
        align_dataset(src, dst, config=config())
    assert (dst / REPORT_NAME).is_file()  # the report is written even when the run stops
