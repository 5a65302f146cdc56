"""YouTube Faces: the splits file, video folders, frame sampling, video embeddings, the frame cache, `eval-ytf`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facever.protocols.ytf import (
    find_video_tree,
    frames_from_embeddings,
    list_video_frames,
    natural_key,
    read_ytf_splits,
    sample_frames,
    video_embeddings,
)
from facever.core.embeddings_file import Embeddings, save_embeddings
from facever.core.errors import FaceverError, InputFileError

from tests.helpers.benchmark_data import orl_people, save_rgb

HEADER = "split number, pair number, first name, second name, is same:\n"


def test_real_splits_file(shared_data):
    proto = read_ytf_splits(shared_data / "protocols" / "ytf_splits.txt")
    assert proto.name == "ytf" and len(proto) == 5000
    assert np.bincount(proto.folds).tolist() == [500] * 10
    assert int(proto.labels.sum()) == 2500
    assert [int(proto.labels[proto.folds == k].sum()) for k in range(10)] == [250] * 10
    assert (proto.first[0], proto.second[0], bool(proto.labels[0])) == ("Sadie_Frost/1", "Sadie_Frost/5", True)
    assert proto.line_numbers[0] == 1 and proto.line_numbers[-1] == 5000
    assert all(v.count("/") == 1 for v in proto.items())


def test_splits_with_header_and_spacing_variants(tmp_path):
    path = tmp_path / "splits.txt"
    path.write_text(HEADER + "1, 1, A/0, A/1, 1\r\n1,2,A/2,B/0,0\n\n2, 1, B/1, B/2, 1\n")
    proto = read_ytf_splits(path)
    assert proto.first == ["A/0", "A/2", "B/1"] and proto.second == ["A/1", "B/0", "B/2"]
    assert proto.labels.tolist() == [True, False, True] and proto.folds.tolist() == [0, 0, 1]
    assert proto.line_numbers == [2, 3, 5]


@pytest.mark.parametrize("row, message", [
    ("1, 1, A/0, A/1", "expected 5 comma-separated fields"),
    ("x, 1, A/0, A/1, 1", "split 'x' is not a split number 1..10"),
    ("11, 1, A/0, A/1, 1", "split '11' is not a split number 1..10"),
    ("0, 1, A/0, A/1, 1", "split '0' is not a split number 1..10"),
    ("1, 1, A/0, A/1, yes", "is_same must be 0 or 1"),
    ("1, 1, A, A/1, 1", "video 'A' is not of the form Name/video"),
    ("1, 1, A/0, B/1, 1", "is_same=1 but the names show different people"),
    ("1, 1, A/0, A/1, 0", "is_same=0 but the names show the same person"),
    ("1, 1, A/0, A/0, 1", "a video paired with itself"),
])
def test_malformed_split_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "splits.txt"
    path.write_text(HEADER + "1, 9, C/0, C/1, 1\n" + row + "\n")
    with pytest.raises(InputFileError, match=message) as info:
        read_ytf_splits(path)
    assert info.value.line == 3 and str(info.value).startswith(f"{path}:3:")


def test_repeated_pair_number_is_an_error(tmp_path):
    path = tmp_path / "splits.txt"
    path.write_text("1, 1, A/0, A/1, 1\n1, 1, B/0, B/1, 1\n")
    with pytest.raises(InputFileError, match="split 1 pair 1 repeats line 1"):
        read_ytf_splits(path)


def test_frame_sampling_rule():
    # floor((k + 1/2) * n / N): the middle of N equal segments
    assert sample_frames(10, 3).tolist() == [1, 5, 8]
    assert sample_frames(7, 1).tolist() == [3]
    assert sample_frames(4, 4).tolist() == [0, 1, 2, 3]
    assert sample_frames(3, 10).tolist() == [0, 1, 2]  # fewer frames than asked: all of them
    assert sample_frames(5, None).tolist() == [0, 1, 2, 3, 4]
    for n in range(1, 60):
        for k in range(1, n + 1):
            idx = sample_frames(n, k)
            assert len(np.unique(idx)) == k and idx.min() >= 0 and idx.max() < n


def test_natural_frame_order():
    names = ["aligned_detect_0.100.jpg", "aligned_detect_0.9.jpg", "aligned_detect_0.10.jpg"]
    assert sorted(names, key=natural_key) == ["aligned_detect_0.9.jpg", "aligned_detect_0.10.jpg", "aligned_detect_0.100.jpg"]


def test_video_embedding_is_mean_of_normalised_frames_then_normalised():
    frames = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0], [10.0, 0.0, 0.0], [0.0, 5.0, 0.0], [1.0, 1.0, 1.0]])
    paths = ["A/0/1.jpg", "A/0/2.jpg", "A/0/3.jpg", "B/1/1.jpg", "B/1/2.jpg"]
    emb = Embeddings(paths, frames)
    lists = {"A/0": paths[:3], "B/1": paths[3:]}
    videos = video_embeddings(emb, ["B/1", "A/0"], lists)
    assert videos.paths == ["B/1", "A/0"]
    # by hand: A/0 -> mean([.6,.8,0], [0,0,1], [1,0,0]) = [1.6, .8, 1]/3 -> normalised
    a = np.array([1.6, 0.8, 1.0]) / np.linalg.norm([1.6, 0.8, 1.0])
    s = 1 / np.sqrt(3)
    b = np.array([s, 1 + s, s]) / np.linalg.norm([s, 1 + s, s])
    np.testing.assert_allclose(videos.embeddings[1], a, rtol=1e-6)
    np.testing.assert_allclose(videos.embeddings[0], b, rtol=1e-6)
    # frames=1 takes the middle frame of each video: frame 2 of A/0 ([0, 0, 2]) and frame 2 of B/1
    one = video_embeddings(emb, ["A/0", "B/1"], lists, frames=1)
    np.testing.assert_allclose(one.embeddings, [[0, 0, 1], [s, s, s]], rtol=1e-6)
    assert one.metadata["frames"] == 1 and videos.metadata["frames"] == "all"
    # a skipped (undecodable) frame is left out of the mean
    skip = video_embeddings(emb, ["A/0"], lists, skip=["A/0/2.jpg"])
    np.testing.assert_allclose(skip.embeddings[0], np.array([1.6, 0.8, 0]) / np.linalg.norm([1.6, 0.8, 0]), rtol=1e-6)


def test_video_embedding_errors_name_what_is_missing():
    emb = Embeddings(["A/0/1.jpg"], np.ones((1, 2)))
    with pytest.raises(FaceverError, match="no frames listed for 1 video.*B/1"):
        video_embeddings(emb, ["A/0", "B/1"], {"A/0": ["A/0/1.jpg"]})
    with pytest.raises(FaceverError, match="1 frame.*no embedding: A/0/2.jpg"):
        video_embeddings(emb, ["A/0"], {"A/0": ["A/0/1.jpg", "A/0/2.jpg"]})
    with pytest.raises(FaceverError, match="no usable frame: A/0"):
        video_embeddings(emb, ["A/0"], {"A/0": ["A/0/1.jpg"]}, skip=["A/0/1.jpg"])


def build_ytf_tree(root: Path, faces_dir: Path, *, layout: str, n_people: int = 4, videos_per_person: int = 2,
                   frames_per_video: int = 3) -> dict[str, list[str]]:
    """The YTF layouts: frame_images_DB/Name/video/<n>.jpg or aligned_images_DB/Name/video/aligned_detect_<video>.<n>.jpg.

    Frame numbers start at 9 so that lexical order (10 < 9) differs from the natural order.
    Returns {video id: frame paths relative to the *_DB folder, in natural order}.
    """
    people = orl_people(faces_dir, n_people, videos_per_person * frames_per_video)
    db = root / ("frame_images_DB" if layout == "frames" else "aligned_images_DB")
    out = {}
    for name, photos in people.items():
        for v in range(videos_per_person):
            video = f"{name}/{v}"
            out[video] = []
            for f in range(frames_per_video):
                n = 9 + f
                fname = f"{v}.{n}.jpg" if layout == "frames" else f"aligned_detect_{v}.{n}.jpg"
                save_rgb(photos[v * frames_per_video + f], db / video / fname, size=(96, 112))
                out[video].append(f"{video}/{fname}")
    return out


@pytest.mark.parametrize("layout", ["frames", "aligned"])
def test_video_tree_discovery_and_natural_frame_order(tmp_path, faces_dir, layout):
    expected = build_ytf_tree(tmp_path / "YTF", faces_dir, layout=layout, n_people=2)
    tree = find_video_tree(tmp_path / "YTF")
    assert tree.layout == layout
    frames = list_video_frames(tree, list(expected))
    assert frames == expected
    assert frames["Orl_S1/0"][1].endswith(".10.jpg")  # 9, 10, 11 and not 10, 11, 9
    # pointing at the *_DB folder itself works too
    assert find_video_tree(tree.base) == tree


def test_both_layouts_present_prefers_aligned_unless_asked(tmp_path, faces_dir):
    build_ytf_tree(tmp_path, faces_dir, layout="frames", n_people=1, videos_per_person=1, frames_per_video=1)
    build_ytf_tree(tmp_path, faces_dir, layout="aligned", n_people=1, videos_per_person=1, frames_per_video=1)
    assert find_video_tree(tmp_path).layout == "aligned"
    assert find_video_tree(tmp_path, layout="frames").layout == "frames"
    with pytest.raises(FaceverError, match="no aligned_images_DB/ or frame_images_DB/ folder"):
        find_video_tree(tmp_path / "frame_images_DB" / "Orl_S1")


def test_missing_videos_are_named(tmp_path, faces_dir):
    build_ytf_tree(tmp_path, faces_dir, layout="aligned", n_people=1, videos_per_person=1, frames_per_video=1)
    (tmp_path / "aligned_images_DB" / "Orl_S1" / "7").mkdir()
    tree = find_video_tree(tmp_path)
    with pytest.raises(FaceverError, match=r"1 video folder\(s\) missing: Ghost/3; 1 video folder\(s\) without frames: Orl_S1/7"):
        list_video_frames(tree, ["Orl_S1/0", "Ghost/3", "Orl_S1/7"])


def test_frames_from_an_embeddings_file():
    paths = ["aligned_images_DB/A/0/aligned_detect_0.10.jpg", "aligned_images_DB/A/0/aligned_detect_0.9.jpg", "B/1/x.1.jpg"]
    emb = Embeddings(paths, np.eye(3))
    lists = frames_from_embeddings(emb, ["A/0", "B/1"])
    assert lists == {"A/0": [paths[1], paths[0]], "B/1": ["B/1/x.1.jpg"]}
    with pytest.raises(FaceverError, match="no frame embeddings for 1 video.*C/2"):
        frames_from_embeddings(emb, ["A/0", "C/2"])


# ---------------------------------------------------------------------------------------------------
# `facever eval-ytf` end to end on a YTF tree built from real photos, with a splits file WITH header.

REPORT_KEYS = {"protocol", "accuracy", "folds", "auc", "eer", "tar_at_far", "val_at_far", "pairs", "settings",
               "facever_version"}


def _splits_file(path: Path) -> Path:
    p = [f"Orl_S{i}" for i in range(1, 5)]
    rows = [
        (1, 1, f"{p[0]}/0", f"{p[0]}/1", 1), (1, 2, f"{p[0]}/0", f"{p[1]}/0", 0),
        (1, 3, f"{p[1]}/0", f"{p[1]}/1", 1), (1, 4, f"{p[2]}/1", f"{p[3]}/1", 0),
        (2, 1, f"{p[2]}/0", f"{p[2]}/1", 1), (2, 2, f"{p[0]}/1", f"{p[2]}/0", 0),
        (2, 3, f"{p[3]}/0", f"{p[3]}/1", 1), (2, 4, f"{p[1]}/1", f"{p[3]}/0", 0),
    ]
    path.write_text(HEADER + "".join(f"{s}, {n}, {a}, {b}, {same}\n" for s, n, a, b, same in rows))
    return path


def _run(args):
    from typer.testing import CliRunner

    from facever.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_eval_ytf_with_frame_embeddings(tmp_path, faces_dir):
    from tests.helpers.benchmark_data import identity_embeddings

    frames = build_ytf_tree(tmp_path / "YTF", faces_dir, layout="aligned")
    splits = _splits_file(tmp_path / "splits.txt")
    items = {f: f.split("/")[0] for fl in frames.values() for f in fl}
    paths, emb = identity_embeddings(items)
    save_embeddings(tmp_path / "frames.npz", paths, emb)
    for extra, frames_setting in (([], "all"), (["--frames", "2"], 2)):
        out = tmp_path / f"out{frames_setting}"
        result = _run(["eval-ytf", "--splits", splits, "--videos", tmp_path / "YTF", "--embeddings",
                       tmp_path / "frames.npz", "--out", out, *extra])
        assert result.exit_code == 0, result.output
        report = json.loads((out / "report.json").read_text())
        assert REPORT_KEYS <= set(report) and report["protocol"] == "ytf"
        assert report["settings"]["frames"] == frames_setting
        assert report["pairs"] == {"total": 8, "same": 4, "different": 4, "dropped": 0}
        assert report["accuracy"]["mean"] == 1.0 and len(report["folds"]) == 2
        assert (out / "roc.png").is_file()
        # the saved video embeddings are the documented aggregate of the chosen frames
        videos = np.load(out / "video_embeddings.npz")
        row = list(videos["paths"]).index("Orl_S2/1")
        chosen = frames["Orl_S2/1"] if frames_setting == "all" else [frames["Orl_S2/1"][i] for i in (0, 2)]  # floor((k+1/2)*3/2)
        unit = emb[[paths.index(f) for f in chosen]]
        unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
        want = unit.mean(0) / np.linalg.norm(unit.mean(0))
        np.testing.assert_allclose(videos["embeddings"][row], want, rtol=1e-5, atol=1e-6)
    # without --videos the frames are grouped from the file's own paths; same result
    result = _run(["eval-ytf", "--splits", splits, "--embeddings", tmp_path / "frames.npz", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"]["mean"] == 1.0


def test_eval_ytf_names_missing_videos(tmp_path, faces_dir):
    build_ytf_tree(tmp_path / "YTF", faces_dir, layout="frames")
    splits = _splits_file(tmp_path / "splits.txt")
    with open(splits, "a") as f:
        f.write("2, 5, Nobody_Here/3, Nobody_Here/4, 1\n")
    result = _run(["eval-ytf", "--splits", splits, "--videos", tmp_path / "YTF", "--model", tmp_path / "never-loaded.pt"])
    assert result.exit_code == 2
    assert "2 video folder(s) missing: Nobody_Here/3, Nobody_Here/4" in result.output


def test_eval_ytf_with_model_caches_frames(tmp_path, faces_dir):
    from tests.helpers.benchmark_data import tiny_model

    build_ytf_tree(tmp_path / "YTF", faces_dir, layout="aligned")
    splits = _splits_file(tmp_path / "splits.txt")
    model = tiny_model(tmp_path / "model.pt")
    out = tmp_path / "out"
    base = ["eval-ytf", "--splits", splits, "--videos", tmp_path / "YTF", "--model", model, "--device", "cpu",
            "--out", out]
    # --frames 2 first: only the sampled frames are embedded (2 of 3 per video)
    result = _run(base + ["--frames", "2"])
    assert result.exit_code == 0, result.output
    first = json.loads((out / "report.json").read_text())["settings"]
    assert first["frames"] == 2 and first["frames_embedded_now"] == 16 and first["frames_from_cache"] == 0
    # all frames: only the 8 never seen are embedded
    result = _run(base)
    assert result.exit_code == 0, result.output
    second = json.loads((out / "report.json").read_text())
    assert second["settings"]["frames"] == "all"
    assert second["settings"]["frames_embedded_now"] == 8 and second["settings"]["frames_from_cache"] == 16
    all_frames_videos = np.load(out / "video_embeddings.npz")["embeddings"].copy()
    # another setting again: nothing re-embedded, and the scores match a run without any cache
    result = _run(base + ["--frames", "1", "--metric", "l2"])
    assert result.exit_code == 0, result.output
    third = json.loads((out / "report.json").read_text())["settings"]
    assert third["frames_embedded_now"] == 0 and third["frames_from_cache"] == 8
    fresh = tmp_path / "fresh"
    result = _run(base[:-1] + [fresh, "--cache", tmp_path / "other_cache"])
    assert result.exit_code == 0, result.output
    assert json.loads((fresh / "report.json").read_text())["settings"]["frames_embedded_now"] == 24
    # cached frames give the same video embeddings as frames embedded in one go
    np.testing.assert_allclose(np.load(fresh / "video_embeddings.npz")["embeddings"], all_frames_videos, rtol=1e-4, atol=1e-5)


def test_the_workflow_turns_frame_embeddings_into_video_embeddings(tmp_path, faces_dir):
    from facever.workflows.evaluate import Source, benchmark_embeddings, open_benchmark
    from tests.helpers.benchmark_data import identity_embeddings

    frames = build_ytf_tree(tmp_path / "YTF", faces_dir, layout="aligned", n_people=4)
    bench = open_benchmark("ytf", _splits_file(tmp_path / "splits.txt"), frames=1)
    proto = bench.protocol
    items = {f: f.split("/")[0] for fl in frames.values() for f in fl}
    paths, emb = identity_embeddings(items)
    save_embeddings(tmp_path / "frames.npz", paths, emb)
    videos = benchmark_embeddings(bench, Source.parse(tmp_path / "frames.npz")).embeddings
    assert sorted(videos.paths) == sorted(proto.items()) and videos.metadata["frames"] == 1
    middle = emb[paths.index(frames["Orl_S3/0"][1])]
    np.testing.assert_allclose(videos.embeddings[videos.paths.index("Orl_S3/0")], middle / np.linalg.norm(middle), rtol=1e-5)


def test_ensemble_on_ytf_from_frame_embeddings_and_a_model(tmp_path, faces_dir):
    from tests.helpers.benchmark_data import identity_embeddings, tiny_model

    frames = build_ytf_tree(tmp_path / "YTF", faces_dir, layout="aligned")
    splits = _splits_file(tmp_path / "splits.txt")
    items = {f: f.split("/")[0] for fl in frames.values() for f in fl}
    paths, emb = identity_embeddings(items, seed=1)
    save_embeddings(tmp_path / "a.npz", paths, emb)
    model = tiny_model(tmp_path / "model.pt")
    out = tmp_path / "ens"
    result = _run(["ensemble", tmp_path / "a.npz", model, "--protocol", "ytf", "--pairs", splits, "--images",
                   tmp_path / "YTF", "--names", "file,tiny", "--device", "cpu", "--out", out])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "ytf" and set(report["models"]) == {"file", "tiny"}
    assert report["models"]["file"]["accuracy"]["mean"] == 1.0
    assert report["ensemble"]["pairs"]["total"] == 8
    assert any((out / "frame_cache").rglob("shard-*.npz"))  # the model's frames were cached


@pytest.mark.slow  # loads MTCNN and detects faces on CPU
def test_eval_ytf_aligns_raw_frames(tmp_path, faces_dir):
    """--align on frame_images_DB: faces are detected and aligned per frame; a frame without a face is
    left out of its video's mean and counted."""
    from PIL import Image

    from tests.helpers.benchmark_data import tiny_model

    people = {"Joe_Biden": ["biden.jpg", "biden2.jpg"], "Barack_Obama": ["obama.jpg", "obama2.jpg"],
              "Kit_Harington": ["john1.jpeg", "john2.jpeg"], "Rose_Leslie": ["img1.jpg", "img2.jpg"]}
    src_dir = {"Joe_Biden": "biden", "Barack_Obama": "obama", "Kit_Harington": "kit_harington", "Rose_Leslie": "rose_leslie"}
    db = tmp_path / "YTF" / "frame_images_DB"
    for name, photos in people.items():
        for v, photo in enumerate(photos):
            src = faces_dir / "knn" / "train" / src_dir[name] / photo
            with Image.open(src) as img:  # YTF frames are small (about 320 x 240): keep MTCNN quick
                w, h = img.size
            scale = 240 / max(w, h)
            save_rgb(src, db / name / str(v) / f"{v}.1.jpg", size=(round(w * scale), round(h * scale)))
    Image.new("RGB", (160, 120), (128, 128, 128)).save(db / "Joe_Biden" / "0" / "0.2.jpg")  # no face in it
    n = list(people)
    splits = tmp_path / "splits.txt"
    splits.write_text(HEADER + "".join(f"{s}, {k}, {a}, {b}, {same}\n" for s, k, a, b, same in [
        (1, 1, f"{n[0]}/0", f"{n[0]}/1", 1), (1, 2, f"{n[0]}/0", f"{n[1]}/0", 0),
        (1, 3, f"{n[1]}/0", f"{n[1]}/1", 1), (1, 4, f"{n[2]}/1", f"{n[3]}/1", 0),
        (2, 1, f"{n[2]}/0", f"{n[2]}/1", 1), (2, 2, f"{n[0]}/1", f"{n[2]}/0", 0),
        (2, 3, f"{n[3]}/0", f"{n[3]}/1", 1), (2, 4, f"{n[1]}/1", f"{n[3]}/0", 0),
    ]))
    model = tiny_model(tmp_path / "model.pt")
    out = tmp_path / "out"
    result = _run(["eval-ytf", "--splits", splits, "--videos", tmp_path / "YTF", "--model", model, "--align",
                   "--device", "cpu", "--out", out])
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "report.json").read_text())["settings"]
    assert settings["align"] is True and settings["layout"] == "frames"
    assert settings["frames_needed"] == 9 and settings["bad_frames"] == 1
    assert list(settings["bad_frame_examples"]) == ["Joe_Biden/0/0.2.jpg"]
    assert settings["embeddings_metadata"]["aligner"]["size"] == [112, 96]
