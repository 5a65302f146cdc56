"""A tiny trained face model and synthetic crops in LFW's layout, for the embedding and evaluation tests."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TINY_SIZE = (28, 24)  # (h, w): a 112x96-shaped crop, small enough for CPU tests
TINY_ARCH = {"input_size": list(TINY_SIZE), "width": 4, "embedding_dim": 16}
PEOPLE = [f"Person_{k}" for k in range(6)]


def train_tiny_model(path: Path, *, seed: int = 0, steps: int = 3) -> Path:
    """A sphere20 (4 channels wide, 28x24 input) trained a few SGD steps on noise, saved as model.pt."""
    from facever.models import create_model
    from facever.models.bundle import save_model_bundle

    torch.manual_seed(seed)
    backbone = create_model("sphere20", **TINY_ARCH)
    classifier = torch.nn.Linear(16, 3)
    opt = torch.optim.SGD([*backbone.parameters(), *classifier.parameters()], lr=0.05)
    for _ in range(steps):
        x = torch.randn(8, 3, *TINY_SIZE)
        loss = torch.nn.functional.cross_entropy(classifier(backbone(x)), torch.randint(0, 3, (8,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save_model_bundle(
        path, backbone.eval(), arch="sphere20", arch_kwargs=TINY_ARCH, input_size=TINY_SIZE,
        mean=(0.5, 0.4, 0.3), std=(0.25, 0.5, 0.2), embedding_dim=16, extra={"step": steps},
    )


def make_lfw_tree(root: Path, *, size=TINY_SIZE, noise: float = 60.0, seed: int = 0) -> list[str]:
    """6 people x 4 PNG crops in LFW's layout (`Name/Name_000n.png`); returns the relative paths."""
    rng = np.random.default_rng(seed)
    rels = []
    for person in PEOPLE:
        base = rng.integers(0, 256, (*size, 3))
        (root / person).mkdir(parents=True, exist_ok=True)
        for n in range(1, 5):  # Person_5's image 4 is in no pair: embedding only what the pairs need leaves it out
            img = np.clip(base + rng.normal(0, noise, (*size, 3)), 0, 255).astype(np.uint8)
            rel = f"{person}/{person}_{n:04d}.png"
            Image.fromarray(img).save(root / rel)
            rels.append(rel)
    return rels


def make_pairs_file(path: Path) -> Path:
    """LFW pairs.txt with header `10\t2`: per fold 2 same and 2 different pairs over `PEOPLE`, no pair
    listed twice (a repeated pair is refused). Person_5's image 4 is in no pair."""
    same = [(p, a, b) for p in PEOPLE for a, b in itertools.combinations((1, 2, 3), 2)]
    same += [(PEOPLE[0], 1, 4), (PEOPLE[1], 2, 4)]
    # Every different-person couple of images 1..3, visited with a stride coprime to their number (135):
    # 20 distinct pairs spread over the people.
    different = [(p, a, q, b) for i, p in enumerate(PEOPLE) for q in PEOPLE[i + 1:] for a in (1, 2, 3) for b in (1, 2, 3)]
    different = [different[(7 * j) % len(different)] for j in range(20)]
    lines = ["10\t2"]
    for f in range(10):
        lines += [f"{p}\t{a}\t{b}" for p, a, b in (same[f], same[f + 10])]
        lines += [f"{p}\t{a}\t{q}\t{b}" for p, a, q, b in (different[f], different[f + 10])]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def direct_forward(module, crops: list[np.ndarray], mean, std) -> np.ndarray:
    """The model's output computed by hand: (x/255 - mean) / std, NCHW, float32, plain layout."""
    x = np.stack(crops).astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    with torch.no_grad():
        return module(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()


# -- a model trained on the other channel order (for `facever check`) ----------------------------------

CHANNEL_SIZE = (20, 16)
CHANNEL_ARCH = {"input_size": list(CHANNEL_SIZE), "width": 4, "embedding_dim": 16}


def blue_identity_images(rng: np.random.Generator, people: int, per_person: int) -> list[list[np.ndarray]]:
    """RGB uint8 images whose identity is a fixed pattern in the BLUE channel; red is fresh noise in every
    image and green a nuisance. A model reading the first channel it is fed only learns these people
    when fed BGR."""
    out = []
    for _ in range(people):
        pattern = rng.uniform(0, 255, CHANNEL_SIZE)
        images = []
        for _ in range(per_person):
            img = np.stack([rng.uniform(0, 255, CHANNEL_SIZE), 128 + rng.normal(0, 30, CHANNEL_SIZE),
                            pattern + rng.normal(0, 20, CHANNEL_SIZE)], axis=-1)
            images.append(np.clip(img, 0, 255).astype(np.uint8))
        out.append(images)
    return out


def train_bgr_model(path: Path, *, steps: int = 120, seed: int = 0) -> Path:
    """A tiny sphere20 trained (softmax, Adam) on `blue_identity_images` fed in BGR order, saved as a facever
    model.pt, which declares RGB: the wrong channel order, as a model trained in OpenCV's order and
    exported as if RGB."""
    from facever.models import create_model
    from facever.models.bundle import save_model_bundle

    torch.manual_seed(seed)
    people = blue_identity_images(np.random.default_rng(seed), 16, 8)
    pixels = torch.from_numpy(np.stack([im for p in people for im in p])).float()
    labels = torch.tensor([i for i, p in enumerate(people) for _ in p])
    x = ((pixels.flip(-1) / 255.0 - 0.5) / 0.5).permute(0, 3, 1, 2).contiguous()  # BGR
    net = create_model("sphere20", **CHANNEL_ARCH)
    head = torch.nn.Linear(16, len(people))
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=3e-3)
    for _ in range(steps):
        idx = torch.randint(0, len(labels), (64,))
        loss = torch.nn.functional.cross_entropy(head(net(x[idx])), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save_model_bundle(path, net.eval(), arch="sphere20", arch_kwargs=CHANNEL_ARCH, input_size=CHANNEL_SIZE,
                             mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), embedding_dim=16)
