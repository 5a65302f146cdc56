"""Output for people, logs and pipes: rates, timed plain progress lines when stderr is not a terminal
(align, train, embed), tables that keep names whole when piped, --help at 80 columns, --version,
and a README that starts with installing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facever.cli._console import PlainProgress, format_duration, format_rate

REPO = Path(__file__).resolve().parents[1]
INTERVAL = 0.3  # seconds between plain progress lines in these tests
PROGRESS = re.compile(r"^(?P<what>[\w :()-]+): (?P<done>\d+)/(?P<total>\d+|\?)")


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), FACEVER_PROGRESS_INTERVAL=str(INTERVAL), OMP_NUM_THREADS="1",
               COLUMNS="80")
    env.update(extra)
    return env


def run_timed(args: list[str], **env) -> tuple[int, list[tuple[float, str]], str]:
    """Run `python -m facever ARGS` with stderr and stdout piped; each stderr line with the time it arrived."""
    proc = subprocess.Popen([sys.executable, "-m", "facever", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(**env), cwd=REPO)
    lines = []
    for line in proc.stderr:
        lines.append((time.monotonic(), line.rstrip("\n")))
    out = proc.stdout.read()
    return proc.wait(), lines, out


def progress_lines(lines, what: str):
    return [(t, text) for t, text in lines if text.startswith(f"{what}: ") and PROGRESS.match(text)]


def assert_steady(lines, what: str, *, slack: float = 3.0):
    """Progress lines for `what` exist, end with a `done` line whose count is the total, and no two
    are further apart than the interval (plus slack for a loaded machine)."""
    found = progress_lines(lines, what)
    assert found, f"no plain progress lines for {what!r} in:\n" + "\n".join(t for _, t in lines)
    last = PROGRESS.match(found[-1][1])
    assert found[-1][1].endswith("done") or ", done" in found[-1][1], found[-1][1]
    assert last["done"] == last["total"], found[-1][1]
    gaps = [b - a for (a, _), (b, _) in zip(found, found[1:])]
    assert max(gaps, default=0.0) <= INTERVAL + slack, gaps
    return found


# ------------------------------------------------------------------------------ formatting


def test_rates_keep_three_significant_digits_and_never_print_zero():
    assert format_rate(0.3125) == "0.312 img/s"
    assert format_rate(3.14159) == "3.14 img/s"
    assert format_rate(31.4159, "step") == "31.4 step/s"
    assert format_rate(1234.5) == "1,234 img/s"  # well, 1,234 or 1,235: three digits are enough
    assert format_rate(0.0004) == "4.0e-04 img/s"
    assert format_rate(0) == format_rate(None) == "- img/s"
    assert format_duration(42) == "42s" and format_duration(185) == "3m05s" and format_duration(7620) == "2h07m"


def test_plain_progress_prints_at_the_interval_and_closes_with_the_final_count():
    lines: list[str] = []
    bar = PlainProgress("checking images", None, interval=0.05, write=lines.append)
    for _ in range(8):
        bar.advance(50)
        time.sleep(0.03)
    time.sleep(0.12)
    bar.close()
    bar.close()  # closing twice writes nothing more
    periodic, final = lines[:-1], lines[-1]
    assert len(periodic) >= 3, lines  # ~0.36 s at 0.05 s
    assert all(re.match(r"checking images: \d+/\?, ", line) for line in periodic), periodic
    assert final.startswith("checking images: 400/400 (100%), ") and final.endswith("done"), final


def test_a_finished_stage_keeps_its_rate_until_closed():
    now = [0.0]
    lines: list[str] = []
    bar = PlainProgress("checking images", None, interval=1000, write=lines.append, clock=lambda: now[0])
    now[0] = 2.0
    bar.advance(400)
    now[0] = 10.0  # the next stage is setting up; the scan is over
    bar.close()
    assert lines == ["checking images: 400/400 (100%), 200 img/s, elapsed 2s, done"]


def test_plain_progress_gives_eta_from_the_rate():
    now = [0.0]
    lines: list[str] = []
    bar = PlainProgress("align", 100, interval=1000, write=lines.append, clock=lambda: now[0])
    now[0] = 10.0
    bar.advance(25)
    assert bar.line() == "align: 25/100 (25%), 2.5 img/s, elapsed 10s, eta 30s"
    bar.close()
    assert lines == ["align: 25/100 (25%), 2.5 img/s, elapsed 10s, done"]


def test_work_done_before_a_resume_is_counted_but_not_timed():
    """A run resumed at step 100 of 120 that does 20 steps in 10 s runs at 2 step/s, not 12."""
    now = [0.0]
    lines: list[str] = []
    bar = PlainProgress("training", 120, unit="step", interval=1000, write=lines.append, clock=lambda: now[0],
                        done=100)
    now[0] = 5.0
    bar.advance(10)
    assert bar.line() == "training: 110/120 (92%), 2 step/s, elapsed 5s, eta 5s"
    now[0] = 10.0
    bar.advance(10)
    bar.close()
    assert lines == ["training: 120/120 (100%), 2 step/s, elapsed 10s, done"]


# ------------------------------------------------------------------------------ commands in logs and pipes


def _identity_folder(root: Path, people: int = 4, per_person: int = 6, size=(20, 16)) -> Path:
    rng = np.random.default_rng(0)
    for p in range(people):
        base = rng.integers(0, 256, 3)
        for i in range(per_person):
            img = np.clip(base + rng.normal(0, 40, size + (3,)), 0, 255).astype(np.uint8)
            (root / f"p{p}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / f"p{p}" / f"p{p}_{i:04d}.png")
    return root


TINY_TRAIN = ["--arch", "sphere20", "--input-size", "20x16", "--width", "4", "--embedding-dim", "8", "--device", "cpu",
              "--workers", "0"]


def test_train_in_a_log_prints_steady_progress_and_training_log_matches_the_console(tmp_path):
    data = _identity_folder(tmp_path / "data", people=4, per_person=10)
    run = tmp_path / "run"
    # 40 images, batch 2: 20 steps an epoch (no small-epoch warning), 6 epochs.
    code, lines, out = run_timed(["train", str(data), "--out", str(run), *TINY_TRAIN, "--epochs", "6", "-b", "2",
                                  "--lr", "0.01", "--checkpoint-every", "0"])
    assert code == 0, "\n".join(t for _, t in lines)
    assert_steady(lines, "training")
    scan = progress_lines(lines, "checking images")
    assert scan and scan[-1][1].startswith("checking images: 40/40 (100%)"), scan  # the scan bar closes
    assert not any("warning" in t for _, t in lines), lines
    # training.log: the same lines as the console, each after an ISO timestamp.
    logged = (run / "training.log").read_text().splitlines()
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d ")
    assert all(stamp.match(line) for line in logged), logged[:3]
    assert [stamp.sub("", line) for line in logged] == [t for _, t in lines]
    assert "trained 120 steps" in logged[-1]


def test_a_resumed_train_shows_one_rate_in_steps_and_images(tmp_path):
    """Resumed at step 100 of 120, the progress line's step rate times the batch is its image rate (the
    steps done before the resume are not this run's work), within the time checkpoints take."""
    from facever.training.config import TrainConfig
    from facever.training.loop import train

    data = _identity_folder(tmp_path / "data", people=4, per_person=10)
    run = tmp_path / "run"
    args = ["train", str(data), "--out", str(run), *TINY_TRAIN, "--epochs", "6", "-b", "2", "--lr", "0.01",
            "--checkpoint-every", "0", "--log-every", "20"]
    config = TrainConfig(data=str(data.resolve()), arch="sphere20", input_size=(20, 16), width=4, embedding_dim=8,
                         device="cpu", workers=0, epochs=6, batch_size=2, lr=0.01, checkpoint_every=0)
    stopped = train(config, run, stop_requested=lambda: True, progress=None, log_every=20)
    assert stopped.interrupted and stopped.steps == 1
    train(config, run, resume=True, stop_requested=(lambda seen=[]: seen.append(1) or len(seen) >= 99), log_every=20)
    code, lines, _ = run_timed(args)  # the identical command: continues at step 100
    assert code == 0, lines
    final = progress_lines(lines, "training")[-1][1]
    match = re.search(r"120/120 \(100%\), ([\d.,]+) step/s.* ([\d.,]+) img/s", final)
    assert match, final
    steps, images = (float(v.replace(",", "")) for v in match.groups())
    # Before the fix the step rate counted 120 steps in the time of 20: six times the image rate / 2.
    assert 0.5 < 2 * steps / images < 2.0, final


def test_train_warns_about_small_epochs_and_keeps_one_copy_of_identical_weights(tmp_path):
    data = _identity_folder(tmp_path / "data", people=4, per_person=6)
    run = tmp_path / "run"
    code, lines, _ = run_timed(["train", str(data), "--out", str(run), *TINY_TRAIN, "--epochs", "2", "-b", "8"])
    assert code == 0, lines
    warnings = [t for _, t in lines if t.startswith("warning: ")]
    assert warnings == ["warning: an epoch is only 3 optimiser step(s) (24 images, batch 8): the run will make "
                        "few updates for its cost; a batch size of 2 gives 10 or more steps per epoch"], warnings
    assert warnings[0] in (run / "training.log").read_text()
    # No validation: model_last.pt is the same weights, so it is a link to model.pt, not a second file.
    assert (run / "model_last.pt").is_symlink() and os.readlink(run / "model_last.pt") == "model.pt"
    assert (run / "model_last.pt").read_bytes() == (run / "model.pt").read_bytes()
    from facever.models.bundle import load_model_bundle

    load_model_bundle(run / "model_last.pt")  # still loads as a model


def test_validated_run_keeps_distinct_best_and_last_models(tmp_path):
    import torch

    from facever.training.config import TrainConfig
    from facever.training.loop import train

    data = _identity_folder(tmp_path / "data", people=6, per_person=6)
    torch.set_num_threads(1)
    config = TrainConfig(data=str(data), arch="sphere20", input_size=(20, 16), width=4, embedding_dim=8, epochs=4,
                         batch_size=4, lr=0.05, workers=0, device="cpu", checkpoint_every=0, holdout_identities=2)
    result = train(config, tmp_path / "run")
    model, last = tmp_path / "run" / "model.pt", tmp_path / "run" / "model_last.pt"
    if result.best_step == result.steps:
        assert last.is_symlink()
    else:  # the best was earlier: two different sets of weights, two files
        assert not last.is_symlink() and last.read_bytes() != model.read_bytes()


def test_default_loader_workers_never_exceed_the_cpus():
    from facever.core.devices import available_cpus
    from facever.training.config import TrainConfig

    assert TrainConfig(data="x").workers == min(4, available_cpus())


def test_embed_in_a_log_prints_steady_progress(tmp_path):
    from tests.helpers.tiny_models import train_tiny_model

    model = train_tiny_model(tmp_path / "model.pt")
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for i in range(600):
        (images / f"p{i % 20}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (112, 96, 3), dtype=np.uint8)).save(images / f"p{i % 20}" / f"{i}.png")
    code, lines, _ = run_timed(["embed", str(model), str(images), "--out", str(tmp_path / "e.npz"), "--device", "cpu",
                                "--workers", "0", "--batch-size", "8", "--flip", "concat"])
    assert code == 0, lines
    found = assert_steady(lines, "embedding")
    assert PROGRESS.match(found[-1][1])["total"] == "600"


def test_align_in_a_log_prints_steady_progress(tmp_path, faces_dir):
    src = tmp_path / "photos"
    photos = sorted((faces_dir / "orl").glob("s1*/[1-3].pgm"))[:12]
    for p in photos:
        (src / p.parent.name).mkdir(parents=True, exist_ok=True)
        (src / p.parent.name / p.name).write_bytes(p.read_bytes())
    code, lines, _ = run_timed(["align", str(src), str(tmp_path / "aligned"), "--device", "cpu", "--workers", "0"])
    assert code == 0, lines
    found = assert_steady(lines, "align")
    assert PROGRESS.match(found[-1][1])["total"] == str(len(photos))
    # The detector's seconds of start-up are a stage of their own, said before the first progress line.
    texts = [t for _, t in lines]
    assert texts.index("loading the face detector (MTCNN) ...") < texts.index(found[0][1])


# ------------------------------------------------------------------------------ tables, help, version


def test_recipes_piped_into_grep_keep_names_whole():
    piped = subprocess.run(f"{sys.executable} -m facever recipes | grep paper-casia-sphere20-softmax", shell=True,
                           capture_output=True, text=True, env=_env())
    assert piped.returncode == 0, piped.stderr
    row = piped.stdout.splitlines()
    assert len(row) == 1 and row[0].split("\t")[0] == "paper-casia-sphere20-softmax", row
    full = subprocess.run([sys.executable, "-m", "facever", "recipes"], capture_output=True, text=True, env=_env())
    header, *rows = full.stdout.splitlines()
    assert header.split("\t") == ["recipe", "what", "expected (%)", "training time"]
    assert {r.split("\t")[0] for r in rows} >= {"cpu-small", "paper-casia-sphere20", "iresnet50-bf16"}


@pytest.mark.parametrize("command", ["train", "embed", "ensemble", "eval-lfw", "align"])
def test_help_is_readable_at_80_columns(command):
    done = subprocess.run([sys.executable, "-m", "facever", command, "--help"], capture_output=True, text=True,
                          env=_env(COLUMNS="80"))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text  # no option name or help cut short
    for python_type in ("<bool>", "<str>", "<int>", "<float>", "<list[", "<Path>"):
        assert python_type not in text.split("Arguments:")[-1].split("Options:")[-1], python_type
    options = re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", text, flags=re.M)
    assert "--help" in options and len(options) >= 3


def test_version_long_and_short():
    from facever import __version__

    for flag in ("--version", "-V"):
        done = subprocess.run([sys.executable, "-m", "facever", flag], capture_output=True, text=True, env=_env())
        assert done.returncode == 0 and done.stdout.strip() == f"facever {__version__}"


def test_shell_completion_is_offered():
    done = subprocess.run([sys.executable, "-m", "facever", "--help"], capture_output=True, text=True, env=_env())
    assert "--install-completion" in done.stdout


# ------------------------------------------------------------------------------ the README


def test_readme_starts_with_installing_and_holds_nothing_for_insiders():
    text = (REPO / "README.md").read_text()
    commands = [line.strip() for line in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
                for line in line.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands, "no command in the README"
    assert commands[0].startswith("pip install"), commands[:3]
    assert "../shared" not in text and "shared/data" not in text
    lowered = text.lower()
    for insider in ("session", "lent", "this project's development machine", "| met |", "goal |", "helper"):
        assert insider not in lowered, insider
    assert len(text.splitlines()) <= 260
    for link in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (REPO / link).is_file(), f"README links to missing {link}"
