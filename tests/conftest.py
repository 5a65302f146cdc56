"""Shared fixtures: the real data in ../shared/data (skipped with a reason when absent), small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACEVER_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# Keep the 2-core CI machine responsive and runs reproducible: one intra-op thread pool per test process.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def facever_home(tmp_path_factory, monkeypatch) -> Path:
    """Each test gets its own empty facever home (pulled models, their lock file): a test never reads
    nor writes the user's cache, and no test sees another's pins. Mirrors set outside are ignored."""
    home = tmp_path_factory.mktemp("facever-home")
    monkeypatch.setenv("FACEVER_HOME", str(home))
    monkeypatch.delenv("FACEVER_MODEL_MIRROR", raising=False)
    return home


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every test that uses the real data (through the fixtures below) `real_data`, so that CI can run
    them once more with the data hidden, as in a user's clone, where they must skip, not fail."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_data)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real test data (`../shared/data`); the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set FACEVER_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def lfw_pairs_file(shared_data: Path) -> Path:
    path = shared_data / "protocols" / "lfw_pairs.txt"
    if not path.is_file():
        pytest.skip(f"real LFW pairs.txt not found at {path}")
    return path


@pytest.fixture(scope="session")
def faces_dir(shared_data: Path) -> Path:
    path = shared_data / "faces"
    if not path.is_dir():
        pytest.skip(f"real face photos not found at {path}")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models: faster than two (and far faster on a loaded
    machine, where OpenMP threads spin waiting for each other). Use with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

