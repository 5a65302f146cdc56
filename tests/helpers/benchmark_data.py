"""Small benchmark datasets built from the real face photos in ../shared/data/faces, in each exact layout.

Used by tests/test_fglfw.py, test_ytf.py and test_bin.py. ORL (40 people x 10 greyscale 92x112 photos)
stands in for every benchmark's people: the code under test reads the real formats, only the photos
are fewer.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def orl_people(faces_dir: Path, n_people: int, n_images: int = 10) -> dict[str, list[Path]]:
    """{person name: photo paths} for the first ORL subjects, with LFW-style names (`Orl_S1`)."""
    people = {}
    for s in range(1, n_people + 1):
        photos = sorted((faces_dir / "orl" / f"s{s}").glob("*.pgm"), key=lambda p: int(p.stem))[:n_images]
        assert photos, f"ORL subject s{s} missing under {faces_dir}"
        people[f"Orl_S{s}"] = photos
    return people


def save_rgb(src: Path, dst: Path, *, size: tuple[int, int] | None = None) -> None:
    """Re-encode a photo as RGB at `dst` (format from its extension), optionally resized to (w, h)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as img:
        img = img.convert("RGB")
        if size is not None:
            img = img.resize(size)
        img.save(dst)


def jpeg_bytes(src: Path, *, size: tuple[int, int]) -> bytes:
    with Image.open(src) as img:
        buf = io.BytesIO()
        img.convert("RGB").resize(size).save(buf, format="JPEG", quality=95)
        return buf.getvalue()


def build_lfw_tree(root: Path, people: dict[str, list[Path]], *, ext: str = ".jpg") -> dict[str, str]:
    """LFW layout `root/Name/Name_0001.jpg`; returns {relative path: person}."""
    out = {}
    for name, photos in people.items():
        for i, src in enumerate(photos, start=1):
            rel = f"{name}/{name}_{i:04d}{ext}"
            save_rgb(src, root / rel)
            out[rel] = name
    return out


def identity_embeddings(items: dict[str, str], *, dim: int = 64, noise: float = 0.05, seed: int = 0):
    """Embeddings that carry the identity (a random unit direction per person plus a little noise).

    With noise well below the distance between directions, every same pair scores above every
    different pair, so a correctly labelled protocol scores exactly 100%.
    """
    rng = np.random.default_rng(seed)
    people = sorted(set(items.values()))
    centre = {p: rng.standard_normal(dim) for p in people}
    paths = sorted(items)
    emb = np.stack([centre[items[p]] / np.linalg.norm(centre[items[p]]) + noise * rng.standard_normal(dim) for p in paths])
    return paths, emb.astype(np.float32)


def tiny_model(path: Path, *, input_size=(112, 96), seed: int = 0) -> Path:
    """A small randomly initialised sphere20 saved as a facever model.pt (fast on CPU)."""
    import torch

    from facever.models import create_model
    from facever.models.bundle import save_model_bundle

    torch.manual_seed(seed)
    kwargs = {"input_size": list(input_size), "width": 4, "embedding_dim": 16}
    net = create_model("sphere20", **kwargs).eval()
    return save_model_bundle(
        path, net, arch="sphere20", arch_kwargs=kwargs, input_size=input_size,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), embedding_dim=16,
    )
