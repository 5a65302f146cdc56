"""Two synthetic "models" over an LFW-format pairs file: every image's embedding is its person's centre
plus Gaussian noise, so same-person pairs score higher, and a report, table or picture has real
numbers to show."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facever.core.embeddings_file import save_embeddings
from facever.protocols.lfw import read_lfw_pairs
from facever.protocols.pair_lists import make_pair_list


def two_models_on_pairs(root: Path, *, name: str, people: int, per_person: int, per_fold: int, seed: int,
                        dim: int, noise: float, model: str) -> tuple[Path, list[Path]]:
    """`root/pairs.txt` over `people` people named `{name}_00`..., and `root/m0.npz`, `root/m1.npz` with
    metadata model `{model}0` / `{model}1`. Returns (pairs file, [embeddings files])."""
    pairs = root / "pairs.txt"
    names = {f"{name}_{k:02d}": per_person for k in range(people)}
    pairs.write_text(make_pair_list(names, per_fold=per_fold, seed=seed).to_text())
    items = read_lfw_pairs(pairs).items()
    rng = np.random.default_rng(seed)
    centres = {n: rng.normal(size=dim) for n in sorted({i.split("/")[0] for i in items})}
    files = []
    for k in range(2):
        emb = np.stack([centres[i.split("/")[0]] + noise * rng.normal(size=dim) for i in items]).astype(np.float32)
        files.append(root / f"m{k}.npz")
        save_embeddings(files[-1], items, emb, {"model": f"{model}{k}"})
    return pairs, files
