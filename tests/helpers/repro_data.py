"""Small datasets in the real layouts of CASIA-WebFace, LFW (+ pairs.txt), FGLFW and YouTube Faces,
built from the real faces in ../shared/data/faces for the recipe, reproduce and compare tests.

- CASIA: identity folders `casia/<id>/<n>.jpg` from ORL (s1..s16, 6 photos each), 112x96 crops (an aligned size,
  so `reproduce` uses them in place, as it would pre-aligned CASIA crops).
- LFW: `lfw/<Name>/<Name>_000k.jpg` from 4 people of the Big Bang Theory face crops (150x150, not an aligned size:
  `reproduce` really aligns them with MTCNN), `pairs.txt` with header `10\t1` (10 folds of 1 + 1 pairs),
  and an FGLFW list (`pair_FGLFW.txt`, one path per line) over the same images.
- YTF: `ytf/frame_images_DB/<Name>/<video>/<frame>.jpg` from ORL s31..s40 (2 videos of 3 frames per
  person, 112x96 crops) and `splits.txt` (header, 10 splits of 1 same + 1 different pair).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

ALIGNED_WH = (96, 112)  # PIL size (w, h) of a 112x96 crop


def _save(src: Path, dst: Path, size: tuple[int, int] | None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        im = im.convert("RGB")
        if size is not None:
            im = im.resize(size, Image.BILINEAR)
        im.save(dst, quality=92)


def build_casia(faces: Path, root: Path, *, people: range = range(1, 17), per_person: int = 6) -> Path:
    for p in people:
        for k in range(1, per_person + 1):
            _save(faces / "orl" / f"s{p}" / f"{k}.pgm", root / f"{p:04d}" / f"{k:03d}.jpg", ALIGNED_WH)
    return root


BBT = ("amy", "howard", "penny", "sheldon")


def build_lfw(faces: Path, root: Path, *, aligned: bool = False) -> tuple[Path, Path, Path]:
    """LFW layout + pairs.txt + pair_FGLFW.txt over 4 people x 3 photos (pairs reuse photos across folds);
    raw 150x150 crops unless `aligned` (then 112x96)."""
    names = [n.capitalize() + "_Bbt" for n in BBT]
    for src_name, name in zip(BBT, names):
        for k in range(1, 4):
            _save(faces / "bbt" / src_name / f"{src_name}{k}.png", root / name / f"{name}_{k:04d}.jpg",
                  ALIGNED_WH if aligned else None)
    lines = ["10\t1"]
    fg = []
    for fold in range(10):
        a, b = names[fold % 4], names[(fold + 1) % 4]
        n1, n2 = 1 + fold % 3, 1 + (fold + 1) % 3
        lines.append(f"{a}\t{n1}\t{n2}")
        lines.append(f"{a}\t{n1}\t{b}\t{n2}")
        # FGLFW: the same positives, a different negative per fold; one image path per line.
        fg += [f"{a}/{a}_{n1:04d}.jpg", f"{a}/{a}_{n2:04d}.jpg",
               f"{a}/{a}_{n2:04d}.jpg", f"{b}/{b}_{n1:04d}.jpg"]
    pairs = root / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    fglfw = root.parent / "pair_FGLFW.txt"
    fglfw.write_text("\n".join(fg) + "\n")
    return root, pairs, fglfw


def build_ytf(faces: Path, root: Path, *, people: range = range(31, 41), frames: int = 3) -> tuple[Path, Path]:
    names = [f"Orl_S{p}" for p in people]
    for p, name in zip(people, names):
        for video in (1, 2):
            for f in range(1, frames + 1):
                k = (video - 1) * frames + f
                _save(faces / "orl" / f"s{p}" / f"{k}.pgm", root / "frame_images_DB" / name / str(video) / f"{f}.jpg",
                      ALIGNED_WH)
    rows = ["split number, pair number, first name, second name, is same:"]
    for split in range(10):
        a, b = names[split], names[(split + 1) % 10]
        rows.append(f"{split + 1}, 1, {a}/1, {a}/2, 1")
        rows.append(f"{split + 1}, 2, {a}/1, {b}/2, 0")
    splits = root / "splits.txt"
    splits.write_text("\n".join(rows) + "\n")
    return root, splits


# Options that make every recipe tiny enough for a CPU test: a few-thousand-parameter network on
# 28x24 inputs, one epoch, no cache, no worker processes.
TINY_OPTIONS = {
    "input_size": [28, 24], "width": 8, "embedding_dim": 32, "batch_size": 16, "epochs": 1, "milestones": [],
    "warmup_epochs": 0.0, "cache": "none", "workers": 0, "device": "cpu", "channels_last": False,
    "holdout_identities": 4, "amp": "off",
}


def tiny_config_text(**changes) -> str:
    from facever.training.config_files import toml_value

    options = {**TINY_OPTIONS, **changes}
    return "".join(f"{k} = {toml_value(v)}\n" for k, v in options.items())
