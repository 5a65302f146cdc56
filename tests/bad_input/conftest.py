"""The bad-input suite: every case runs a command on a bad input (or under a fault) and checks three things.

1. The exit code: 2 for bad input (130 for an interrupt).
2. The message: one line on stderr, `error: ...`, naming the file or what is wrong.
3. Nothing written, nothing lost: the folder tree the command could touch is hashed before and after
   and must be identical (no new file, no changed file, no deleted file).

`refused(...)` does all three for in-process CLI runs (typer's CliRunner); the subprocess cases
(locks, concurrency, signals) check the same by hand.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facever.cli import app

runner = CliRunner()

# Every case the suite tries is counted here by kind (a refusal or an accepted-as-documented input),
# so the closing report can give the numbers: `pytest tests/bad_input -q -rA`.
NAMES = ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay", "Gus", "Hal", "Ida", "Jon", "Kim", "Lou"]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under `root` (hidden ones too) with a digest of each file's bytes."""
    state = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            state[rel] = "link"
        elif p.is_dir():
            state[rel] = "dir"
        elif p.is_file():
            state[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            state[rel] = "special"
    return state


def refused(args: list[str], match: str, root: Path, *, code: int = 2, resume_files: tuple[str, ...] = ()):
    """Run `facever ARGS` in process; assert exit `code`, one `error:` line matching `match`, `root` untouched.

    `resume_files`: hidden progress files a command keeps on purpose so that the rerun continues
    (embed's `.OUT.partial/` cache folder); they, and files inside them, may appear, nothing else may.
    """
    before = snapshot(root)
    result = runner.invoke(app, [str(a) for a in args])
    after = {k: v for k, v in snapshot(root).items()
             if not any(k == r or k.startswith(r + "/") for r in resume_files)}
    assert result.exit_code == code, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert errors[-1] == lines[-1], f"the error must be the last line: {result.stderr}"
    assert re.search(match, errors[0]), f"{match!r} not in {errors[0]!r}"
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))}"
    return result


def accepted(args: list[str]):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}\n{result.exception!r}"
    return result


# -- small shared inputs ------------------------------------------------------------------------------

def lfw_lines(per_fold: int = 1) -> list[str]:
    """A valid 10-fold LFW pairs body: per fold `per_fold` same + `per_fold` different pairs."""
    lines = []
    for k in range(10):
        a, b = NAMES[k], NAMES[k + 1]
        lines += [f"{a}\t1\t2"] * per_fold + [f"{a}\t1\t{b}\t1"] * per_fold
    return lines


def lfw_items() -> list[str]:
    return sorted({f"{n}/{n}_{i:04d}.jpg" for n in NAMES for i in (1, 2)})


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder holding a valid pairs.txt and emb.npz (every image of it) for the cases to spoil."""
    from facever.core.embeddings_file import save_embeddings

    (tmp_path / "pairs.txt").write_text("10\t1\n" + "\n".join(lfw_lines()) + "\n")
    items = lfw_items()
    rng = np.random.default_rng(0)
    save_embeddings(tmp_path / "emb.npz", items, rng.normal(size=(len(items), 8)).astype(np.float32), {"model": "t"})
    return tmp_path


TINY_KWARGS = dict(input_size=(32, 24), width=4, embedding_dim=8)


def save_tiny_model(path: Path, **changes):
    """A real sphere20 model.pt (tiny), then `changes` applied to the saved dict (hand-edited metadata)."""
    import torch

    from facever.models import create_model
    from facever.models.bundle import save_model_bundle

    torch.manual_seed(0)
    model = create_model("sphere20", **TINY_KWARGS)
    save_model_bundle(path, model, arch="sphere20", arch_kwargs=TINY_KWARGS, input_size=model.input_size,
                      mean=model.mean, std=model.std, embedding_dim=model.embedding_dim)
    if changes:
        bundle = torch.load(path, weights_only=True)
        for key, value in changes.items():
            if callable(value):
                value = value(bundle)
            bundle[key] = value
        torch.save(bundle, path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model.pt")


def write_images(root: Path, names=NAMES, numbers=(1, 2), size=(40, 32)) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(1)
    rels = []
    for n in names:
        for i in numbers:
            rel = f"{n}/{n}_{i:04d}.jpg"
            (root / n).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / rel)
            rels.append(rel)
    return rels
