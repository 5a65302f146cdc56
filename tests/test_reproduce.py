"""`facever reproduce` end to end on small data in the real layouts (CASIA identity folders, LFW +
pairs.txt, an FGLFW list, a YTF frame tree + splits.txt), including a crash between stages and the
rerun that skips the finished ones."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from facever.cli import app
from facever.core.errors import FaceverError
from facever.workflows.reproduce import (
    PAPER_RESULTS,
    STAGES,
    epoch_overrides,
    Reproduction,
    ReproduceSettings,
    looks_aligned,
    read_stage,
    stage_marker,
)

from tests.helpers.references import hand_verification
from tests.helpers.repro_data import build_casia, build_lfw, build_ytf, tiny_config_text

runner = CliRunner()


def test_looks_aligned_accepts_one_aligned_size_only(tmp_path):
    def image(rel, w, h):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), (90, 90, 90)).save(path)
        return rel

    crops = [image(f"a/{i}.jpg", 96, 112) for i in range(3)]
    squares = [image(f"b/{i}.jpg", 112, 112) for i in range(2)]
    photos = [image(f"c/{i}.jpg", 250, 250) for i in range(2)]
    small = [image(f"d/{i}.jpg", 24, 28) for i in range(2)]
    assert looks_aligned(tmp_path, crops, (112, 96))
    assert looks_aligned(tmp_path, squares, (112, 96))  # ArcFace crops: the model input cuts them exactly
    assert looks_aligned(tmp_path, small, (28, 24))  # the model's own input size
    assert not looks_aligned(tmp_path, photos, (112, 96))  # raw LFW-size photos
    assert not looks_aligned(tmp_path, crops + squares, (112, 96))  # mixed sizes
    assert not looks_aligned(tmp_path, small, (112, 96))


def test_bad_inputs_fail_before_any_work_naming_the_file(tmp_path):
    (tmp_path / "lfw").mkdir()
    (tmp_path / "ytf").mkdir()
    (tmp_path / "casia").mkdir()
    (tmp_path / "lfw" / "pairs.txt").write_text("10\t300\nAaron\t1\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["reproduce", "--casia", str(tmp_path / "casia"), "--lfw", str(tmp_path / "lfw"),
                                 "--ytf", str(tmp_path / "ytf"), "--out", str(out)])
    assert result.exit_code == 2
    assert "pairs.txt:2:" in result.output and not out.exists()
    result = runner.invoke(app, ["reproduce", "--casia", str(tmp_path / "nothing"), "--lfw", str(tmp_path / "lfw"),
                                 "--ytf", str(tmp_path / "ytf"), "--out", str(out)])
    assert result.exit_code == 2 and "nothing: not found (--casia)" in result.output


def test_lfw_or_ytf_given_a_file_is_named_before_any_work(tmp_path):
    (tmp_path / "casia").mkdir()
    (tmp_path / "ytf").mkdir()
    (tmp_path / "lfw.tgz").write_bytes(b"an archive, not the folder")
    result = runner.invoke(app, ["reproduce", "--casia", str(tmp_path / "casia"), "--lfw", str(tmp_path / "lfw.tgz"),
                                 "--ytf", str(tmp_path / "ytf"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and not (tmp_path / "out").exists()
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'lfw.tgz'}: not a folder (--lfw is the folder holding the LFW images, Name/Name_0001.jpg)"]
    result = runner.invoke(app, ["reproduce", "--casia", str(tmp_path / "casia"), "--lfw", str(tmp_path / "ytf"),
                                 "--ytf", str(tmp_path / "lfw.tgz"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "lfw.tgz: not a folder (--ytf is the folder holding frame_images_DB/" in result.output


@pytest.mark.slow  # loads the detector three times (~20 s)
def test_the_alignment_stage_runs_in_a_child_process_as_facever_align_does(faces_dir, tmp_path, monkeypatch):
    """The stage's child (spawned: no detector or OpenCV state left in this process) gives the crops
    `facever align` gives, reports its progress here, stops when asked and resumes; a folder named
    `facever` in the working directory does not stand in for the package (it did for `python -m facever`)."""
    import contextlib

    from facever.data_prep.align_dataset import AlignConfig
    from facever.workflows.align import align, align_in_child

    src = tmp_path / "photos" / "Anthony_Hopkins"
    src.mkdir(parents=True)
    for photo in sorted((faces_dir / "lfw_sample" / "Anthony_Hopkins").glob("*.jpg"))[:2]:
        (src / photo.name).write_bytes(photo.read_bytes())
    (tmp_path / "facever").mkdir()
    monkeypatch.chdir(tmp_path)
    config = AlignConfig(size=(28, 24), select="center", device="cpu", workers=0, max_detect_side=480)
    counted: list = []

    @contextlib.contextmanager
    def progress(description, total, unit="img", done=0):
        counted.append((description, total))
        yield lambda n=1, **kw: counted.append(n)

    with pytest.raises(KeyboardInterrupt):  # asked to stop at once: nothing is lost, a rerun resumes
        align_in_child(src.parent, tmp_path / "child", config, stop_requested=lambda: True)
    said: list[str] = []
    summary = align_in_child(src.parent, tmp_path / "child", config, say=said.append, progress=progress,
                             description="align LFW")
    here = align(src.parent, tmp_path / "here", config)
    assert summary == {**here.to_dict(), "elapsed_s": summary["elapsed_s"], "images_per_s": summary["images_per_s"],
                       "already_done": summary["already_done"], "report": summary["report"], "dst": summary["dst"]}
    assert summary["aligned"] + summary["already_done"] == 2 and summary["dst"] == str(tmp_path / "child")
    assert counted[0] == ("align LFW", 2 - summary["already_done"]) and sum(counted[1:]) == counted[0][1]
    assert said[-2].startswith(f"aligning {counted[0][1]} images to 28x24 on cpu")
    assert said[-1] == "loading the face detector (MTCNN) ..."  # its start-up said before the images' progress
    crops = sorted(p.relative_to(tmp_path / "here") for p in (tmp_path / "here").rglob("*.jpg"))
    assert len(crops) == 2
    assert [(tmp_path / "child" / c).read_bytes() for c in crops] == [(tmp_path / "here" / c).read_bytes() for c in crops]


@pytest.fixture(scope="module")
def datasets(faces_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("repro")
    casia = build_casia(faces_dir, root / "casia")  # 112x96 crops: used in place
    lfw, pairs, fglfw = build_lfw(faces_dir, root / "lfw")  # raw 150x150 photos: aligned by the pipeline
    ytf, splits = build_ytf(faces_dir, root / "ytf")  # 112x96 frames: used in place
    tiny = root / "tiny.toml"
    tiny.write_text(tiny_config_text())
    return {"casia": casia, "lfw": lfw, "pairs": pairs, "fglfw": fglfw, "ytf": ytf, "splits": splits, "tiny": tiny}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class SimulatedCrash(RuntimeError):
    pass


@pytest.mark.slow
def test_reproduce_end_to_end_with_a_crash_between_stages(datasets, tmp_path):
    d = datasets
    out = tmp_path / "out"
    settings = ReproduceSettings(
        casia=str(d["casia"]), lfw=str(d["lfw"]), ytf=str(d["ytf"]), fglfw=str(d["fglfw"]),
        config_file=str(d["tiny"]), device="cpu", workers=0,
    )

    # 1. A crash as the 5th stage starts (after alignment and the first model's training).
    def crash(event):
        if event.name == "train-noisy-b" and event.event == "start":
            raise SimulatedCrash("power cut")

    with pytest.raises(SimulatedCrash):
        Reproduction(settings, out, on_stage=crash).run()
    finished = ["align-casia", "align-lfw", "align-ytf", "train-noisy-a"]
    assert [s for s in STAGES if stage_marker(out, s).is_file()] == finished
    before = {s: stage_marker(out, s).stat().st_mtime_ns for s in finished}
    model_a = out / "runs" / "noisy-a" / "model.pt"
    model_a_digest = _digest(model_a)

    # 2. The same command line again: finished stages are skipped, the rest runs.
    args = ["reproduce", "--casia", str(d["casia"]), "--lfw", str(d["lfw"]), "--ytf", str(d["ytf"]),
            "--fglfw", str(d["fglfw"]), "--config", str(d["tiny"]), "--device", "cpu", "--workers", "0",
            "--out", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for stage in finished:
        assert f"{stage}: done earlier, skipped" in result.stderr
        assert stage_marker(out, stage).stat().st_mtime_ns == before[stage]
    assert "train-noisy-b: done in" in result.stderr
    assert _digest(model_a) == model_a_digest  # noisy-a was not trained again
    assert all(stage_marker(out, s).is_file() for s in STAGES)

    # Alignment: CASIA and YTF crops used in place, LFW's raw photos aligned to the model's input size.
    assert read_stage(out, "align-casia")["outputs"]["aligned_here"] is False
    assert read_stage(out, "align-ytf")["outputs"]["aligned_here"] is False
    lfw_stage = read_stage(out, "align-lfw")["outputs"]
    assert lfw_stage["aligned_here"] is True and lfw_stage["path"] == str(out / "aligned" / "lfw")
    crops = sorted((out / "aligned" / "lfw").rglob("*.jpg"))
    assert len(crops) == 12 and {Image.open(c).size for c in crops} == {(24, 28)}

    # Three models: two noisy (seeds 0 and 1), one softmax paired with noisy-a (seed 0).
    import tomllib

    configs = {m: tomllib.loads((out / "runs" / m / "config.toml").read_text()) for m in ("noisy-a", "noisy-b", "softmax")}
    assert [configs[m]["head"] for m in configs] == ["noisy-softmax", "noisy-softmax", "softmax"]
    assert [configs[m]["seed"] for m in configs] == [0, 1, 0]
    assert {configs[m]["width"] for m in configs} == {8}  # from the config file over the recipe's default

    # The report: ours (read back from each model's own report.json) beside the paper's numbers.
    report = json.loads(result.stdout)
    assert report == json.loads((out / "report.json").read_text())
    assert report["benchmarks"] == ["lfw", "fglfw", "ytf"]
    rows = {r["model"]: r for r in report["rows"]}
    from facever.core.embeddings_file import load_embeddings
    from facever.protocols.lfw import read_lfw_pairs
    from facever.protocols.ytf import read_ytf_splits

    protocols = {"lfw": read_lfw_pairs(d["pairs"]), "fglfw": Reproduction(settings, out).fglfw_protocol(),
                 "ytf": read_ytf_splits(d["splits"])}
    for model in ("noisy-a", "noisy-b", "softmax"):
        for bench in ("lfw", "fglfw", "ytf"):
            own = json.loads((out / "runs" / model / "eval" / bench / "report.json").read_text())
            assert rows[model]["ours"][bench]["accuracy"] == own["accuracy"]["mean"]
            assert own["pairs"]["total"] == 20
            # Each model's number is a brute-force k-fold over numpy cosines of its saved embeddings.
            saved = "ytf_video_embeddings.npz" if bench == "ytf" else "lfw_embeddings.npz"
            accuracy, auc = hand_verification(load_embeddings(out / "runs" / model / "eval" / saved), protocols[bench])
            assert own["accuracy"]["mean"] == pytest.approx(accuracy, abs=1e-12), (model, bench)
            assert own["auc"] == pytest.approx(auc, abs=1e-9), (model, bench)
    assert rows["noisy-a"]["paper"] == PAPER_RESULTS["noisy-softmax"] == {"lfw": 99.18, "ytf": 94.88}
    assert rows["softmax"]["paper"] == {"ytf": 94.22}
    ensemble = rows["ensemble (noisy-a + noisy-b)"]
    assert ensemble["paper"] == {"lfw": 99.31, "fglfw": 94.43, "ytf": 95.37}
    for bench in ("lfw", "fglfw", "ytf"):
        fused = json.loads((out / "ensemble" / bench / "report.json").read_text())
        # The ensemble saw the same embeddings as the single-model evaluations.
        for model in ("noisy-a", "noisy-b"):
            assert fused["models"][model]["accuracy"]["mean"] == rows[model]["ours"][bench]["accuracy"]
        assert ensemble["ours"][bench]["accuracy"] == fused["ensemble"]["accuracy"]["mean"]
    training = rows["softmax"]["training"]
    assert training["steps"] > 0 and training["best_validation_accuracy"] is not None

    markdown = (out / "report.md").read_text()
    assert "| model | LFW ours | LFW paper | FGLFW ours | FGLFW paper | YTF ours | YTF paper |" in markdown
    ensemble_line = next(line for line in markdown.splitlines() if line.startswith("| ensemble"))
    assert "| 99.31 |" in ensemble_line and "| 94.43 |" in ensemble_line and "| 95.37 |" in ensemble_line
    for png in ("roc_lfw.png", "roc_fglfw.png", "roc_ytf.png", "training_curves.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 300

    # 3. Other settings into the same OUT are refused (the stages would not match them).
    result = runner.invoke(app, args[:-1] + ["--flip", "sum"])
    assert result.exit_code == 2 and "other settings (flip: 'concat' -> 'sum')" in result.output


def test_epochs_option_keeps_the_schedule_inside_the_shorter_run(datasets, tmp_path):
    d = datasets
    overrides = epoch_overrides(2, recipe="paper-casia-sphere20")
    assert overrides == {"epochs": 2, "milestones": []}  # 16.5 and 24.5 are past the end
    assert epoch_overrides(20, recipe="paper-casia-sphere20") == {"epochs": 20, "milestones": [16.5]}
    assert epoch_overrides(1, recipe="iresnet50-bf16") == {"epochs": 1, "warmup_epochs": 0.0}
    settings = ReproduceSettings(casia=str(d["casia"]), lfw=str(d["lfw"]), ytf=str(d["ytf"]),
                                 overrides=epoch_overrides(20, recipe="paper-casia-sphere20"), device="cpu")
    options = Reproduction(settings, tmp_path / "o").base_options()
    assert options["epochs"] == 20 and options["milestones"] == (16.5,) and options["arch"] == "sphere20"
    with pytest.raises(FaceverError, match="reproduce options: unknown key 'epoch'"):
        Reproduction(ReproduceSettings(casia="c", lfw="l", ytf="y", overrides={"epoch": 2}), tmp_path).base_options()
