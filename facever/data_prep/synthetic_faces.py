"""A small synthetic identity dataset: procedurally drawn cartoon faces, reproducible from a seed.

It exists so that `facever demo` can show the whole pipeline (train -> embed -> 10-fold verification
-> ensemble) offline, on any machine, without shipping or downloading photos. It is NOT face data:
numbers measured on it say that the pipeline works, nothing about real-world accuracy.

Each identity is a fixed set of shape and colour parameters (face outline, skin, hair style and
colour, eye spacing/size/colour, brows, nose, mouth, an optional mark such as a mole or glasses);
each image of it varies the things a face photo varies and that must NOT decide identity: head pose
(in-plane rotation, scale, shift, a yaw-like shift of the inner features), expression (mouth
curvature, eye openness), lighting (a directional gradient, brightness, contrast, colour cast),
background, blur and sensor noise. A network must learn to ignore the latter to verify unseen
identities, which is exactly the face-verification problem in miniature.

Everything is drawn from `numpy.random.default_rng([seed, identity, image])` streams, and PNG
encoding is deterministic, so the same seed gives byte-identical files on every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

# Bump when the drawing changes: it is part of the dataset's identity (manifest, model reuse).
GENERATOR_VERSION = 1

# Rendering happens on a canvas this many times larger than the output, then area-downsampled:
# cheap anti-aliasing that keeps thin features (brows, glasses) visible at 48x40.
_SUPERSAMPLE = 4

_SKIN = np.array([[236, 200, 170], [224, 172, 135], [198, 140, 100], [160, 110, 75], [120, 80, 55], [250, 220, 195]],
                 dtype=np.float64)
_HAIR = np.array([[20, 15, 10], [70, 45, 25], [130, 90, 50], [200, 160, 90], [150, 40, 20], [120, 120, 120],
                  [230, 225, 215]], dtype=np.float64)
_IRIS = np.array([[60, 40, 20], [40, 90, 150], [60, 120, 70], [110, 80, 40], [30, 30, 30]], dtype=np.float64)


@dataclass(frozen=True)
class FaceIdentity:
    """The parameters that make one synthetic person (all lengths relative to the face size)."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lips: tuple[float, float, float]
    face_width: float      # half-width of the face ellipse
    face_height: float     # half-height of the face ellipse
    hair_style: int        # 0 short cap, 1 long (sides), 2 bald with sides, 3 fringe
    hair_volume: float
    eye_spacing: float
    eye_height: float
    eye_size: float
    brow_tilt: float
    brow_thickness: float
    nose_length: float
    nose_width: float
    mouth_width: float
    mouth_height: float
    mark: int              # 0 none, 1 mole, 2 glasses, 3 beard
    mark_x: float
    mark_y: float


def _colour(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> tuple[float, float, float]:
    base = palette[rng.integers(len(palette))]
    mixed = 0.6 * base + 0.4 * palette[rng.integers(len(palette))]
    return tuple(float(v) for v in np.clip(mixed + rng.normal(0, jitter, 3), 0, 255))


def draw_identity(rng: np.random.Generator) -> FaceIdentity:
    """Draw one person's parameters."""
    return FaceIdentity(
        skin=_colour(rng, _SKIN, 10),
        hair=_colour(rng, _HAIR, 12),
        iris=_colour(rng, _IRIS, 15),
        lips=tuple(float(v) for v in np.clip(np.array([170, 80, 80]) + rng.normal(0, 25, 3), 0, 255)),
        face_width=float(rng.uniform(0.30, 0.40)),
        face_height=float(rng.uniform(0.40, 0.48)),
        hair_style=int(rng.integers(4)),
        hair_volume=float(rng.uniform(0.03, 0.12)),
        eye_spacing=float(rng.uniform(0.11, 0.17)),
        eye_height=float(rng.uniform(-0.10, -0.01)),
        eye_size=float(rng.uniform(0.035, 0.06)),
        brow_tilt=float(rng.uniform(-0.35, 0.35)),
        brow_thickness=float(rng.uniform(0.012, 0.03)),
        nose_length=float(rng.uniform(0.08, 0.17)),
        nose_width=float(rng.uniform(0.03, 0.07)),
        mouth_width=float(rng.uniform(0.07, 0.15)),
        mouth_height=float(rng.uniform(0.19, 0.27)),
        mark=int(rng.choice(4, p=[0.55, 0.15, 0.15, 0.15])),
        mark_x=float(rng.uniform(-0.2, 0.2)),
        mark_y=float(rng.uniform(-0.05, 0.2)),
    )


def render_face(person: FaceIdentity, rng: np.random.Generator, size: Sequence[int]) -> np.ndarray:
    """One image of `person` under a random pose, expression, lighting and noise: `h x w x 3` uint8 RGB."""
    from facever.core.opencv_guard import opencv

    cv2 = opencv()

    h, w = int(size[0]), int(size[1])
    H, W = h * _SUPERSAMPLE, w * _SUPERSAMPLE
    unit = float(min(H, W)) * 1.05  # face-relative lengths -> canvas pixels
    background = np.clip(rng.uniform(40, 220, 3) + rng.normal(0, 10, 3), 0, 255)
    canvas = np.empty((H, W, 3), dtype=np.uint8)
    canvas[:] = background.astype(np.uint8)
    # A second background tone on one side: clutter that varies per image.
    if rng.random() < 0.5:
        x0 = int(rng.uniform(0, W))
        canvas[:, x0:] = np.clip(background * rng.uniform(0.6, 1.4), 0, 255).astype(np.uint8)

    cx, cy = W / 2.0, H * 0.52
    yaw = float(rng.normal(0, 0.03))  # inner features slide sideways: a head turned slightly
    smile = float(rng.normal(0, 0.5))
    openness = float(np.clip(rng.normal(1.0, 0.2), 0.3, 1.3))

    def pt(x: float, y: float) -> tuple[int, int]:
        # Fixed-point coordinates (shift=4) so that sub-pixel positions survive cv2's integer API.
        return int(round((cx + x * unit) * 16)), int(round((cy + y * unit) * 16))

    def ln(v: float) -> int:  # a length in fixed point (centres, axes, radii)
        return max(1, int(round(v * unit * 16)))

    def thick(v: float) -> int:  # line thickness: cv2 takes it in whole pixels, never shifted
        return max(1, int(round(v * unit)))

    def colour(c) -> tuple[int, int, int]:
        return tuple(int(round(v)) for v in c)

    aa, sh = cv2.LINE_AA, 4
    p = person
    hair, skin = colour(p.hair), colour(p.skin)
    # Hair behind the face (long and fringe styles reach below the ears).
    if p.hair_style in (1, 3):
        cv2.ellipse(canvas, pt(0, 0.02), (ln(p.face_width + p.hair_volume), ln(p.face_height + 0.04)), 0, 180, 360,
                    hair, -1, aa, sh)
        cv2.rectangle(canvas, pt(-p.face_width - p.hair_volume, 0.0), pt(p.face_width + p.hair_volume, 0.30), hair,
                      -1, aa, sh)
    # Neck and face.
    cv2.rectangle(canvas, pt(-0.12, 0.3), pt(0.12, 0.7), colour(np.array(p.skin) * 0.85), -1, aa, sh)
    cv2.ellipse(canvas, pt(0, 0), (ln(p.face_width), ln(p.face_height)), 0, 0, 360, skin, -1, aa, sh)
    # Hair on top.
    if p.hair_style != 2:
        top = (ln(p.face_width * 1.02), ln(p.face_height * 0.5 + p.hair_volume))
        cv2.ellipse(canvas, pt(0, -p.face_height * 0.55), top, 0, 180, 360, hair, -1, aa, sh)
    else:
        for side in (-1, 1):
            cv2.ellipse(canvas, pt(side * p.face_width * 0.92, -0.08), (ln(0.04 + p.hair_volume / 3), ln(0.12)), 0, 0,
                        360, hair, -1, aa, sh)
    if p.hair_style == 3:
        cv2.ellipse(canvas, pt(-0.05, -p.face_height * 0.55), (ln(p.face_width * 0.9), ln(0.12)), -8, 0, 180, hair, -1,
                    aa, sh)
    if p.mark == 3:  # beard
        cv2.ellipse(canvas, pt(0, 0.12), (ln(p.face_width * 0.95), ln(p.face_height * 0.72)), 0, 20, 160, hair, -1,
                    aa, sh)

    # Eyes, brows.
    for side in (-1, 1):
        ex, ey = side * p.eye_spacing + yaw, p.eye_height
        axes = (ln(p.eye_size * 1.3), ln(p.eye_size * 0.75 * openness))
        cv2.ellipse(canvas, pt(ex, ey), axes, 0, 0, 360, (245, 245, 240), -1, aa, sh)
        iris_radius = ln(p.eye_size * 0.6 * min(1.0, openness))
        cv2.circle(canvas, pt(ex + yaw * 0.5, ey), iris_radius, colour(p.iris), -1, aa, sh)
        cv2.circle(canvas, pt(ex + yaw * 0.5, ey), ln(p.eye_size * 0.25), (15, 15, 15), -1, aa, sh)
        by = ey - p.eye_size * 1.6
        dx = p.eye_size * 1.6
        tilt = p.brow_tilt * p.eye_size * 2 * side
        cv2.line(canvas, pt(ex - dx, by + tilt), pt(ex + dx, by - tilt), colour(np.array(p.hair) * 0.8),
                 thick(p.brow_thickness), aa, sh)
    if p.mark == 2:  # glasses
        for side in (-1, 1):
            cv2.circle(canvas, pt(side * p.eye_spacing + yaw, p.eye_height), ln(p.eye_size * 1.9), (25, 25, 25),
                       thick(0.012), aa, sh)
        cv2.line(canvas, pt(-p.eye_spacing + p.eye_size * 1.9 + yaw, p.eye_height),
                 pt(p.eye_spacing - p.eye_size * 1.9 + yaw, p.eye_height), (25, 25, 25), thick(0.012), aa, sh)

    # Nose: a shaded wedge.
    nose_tip = p.eye_height + p.nose_length + 0.04
    nose = np.array([pt(yaw * 1.5, p.eye_height + 0.02), pt(-p.nose_width + yaw * 1.5, nose_tip),
                     pt(p.nose_width + yaw * 1.5, nose_tip)], dtype=np.int32)
    cv2.fillConvexPoly(canvas, nose, colour(np.array(p.skin) * 0.78), aa, sh)

    # Mouth: an arc whose curvature is the expression.
    my = max(p.mouth_height, nose_tip + 0.05)
    curve = p.mouth_width * 0.35 * smile
    pts = [pt(yaw + p.mouth_width * t, my + curve * (1 - t * t)) for t in np.linspace(-1, 1, 9)]
    cv2.polylines(canvas, [np.array(pts, dtype=np.int32)], False, colour(p.lips), thick(0.025), aa, sh)
    if p.mark == 1:  # mole
        cv2.circle(canvas, pt(p.mark_x + yaw, p.mark_y), ln(0.018), (60, 35, 25), -1, aa, sh)

    # Pose: in-plane rotation, scale and shift of the whole head.
    angle = float(rng.normal(0, 6.0))
    scale = float(np.exp(rng.normal(0, 0.05)))
    shift = rng.normal(0, 0.03, 2) * np.array([W, H])
    m = cv2.getRotationMatrix2D((W / 2.0, H / 2.0), angle, scale)
    m[:, 2] += shift
    canvas = cv2.warpAffine(canvas, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    image = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float64)

    # Lighting: a directional gradient, global gain/offset and a colour cast.
    theta = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = ((xx / w - 0.5) * math.cos(theta) + (yy / h - 0.5) * math.sin(theta))
    light = 1.0 + rng.uniform(0.0, 0.8) * ramp
    gain = rng.uniform(0.75, 1.25) * (1 + rng.normal(0, 0.05, 3))
    image = image * light[..., None] * gain + rng.normal(0, 12)
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.4, 0.9)))
    image = image + rng.normal(0, rng.uniform(2, 8), image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SyntheticSpec:
    """How big a synthetic dataset to generate; with the seed it determines every byte."""

    identities: int = 200
    images_per_identity: int = 10
    size: tuple[int, int] = (48, 40)  # (h, w)

    def to_dict(self) -> dict:
        return {"identities": self.identities, "images_per_identity": self.images_per_identity,
                "size": list(self.size), "generator_version": GENERATOR_VERSION}


def identity_name(index: int) -> str:
    """Folder name of synthetic person `index` (LFW-like: letters and underscores only, sortable)."""
    return f"synthetic_{index:04d}"


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB image (deterministic: fixed compression, no timestamps)."""
    from facever.core.opencv_guard import opencv

    cv2 = opencv()

    ok, data = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - cv2 always encodes uint8 images
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


def generate_identity_images(spec: SyntheticSpec, index: int, *, seed: int) -> list[np.ndarray]:
    """All images of synthetic person `index` (depends only on seed, index and spec)."""
    person = draw_identity(np.random.default_rng([seed, index, 0]))
    return [render_face(person, np.random.default_rng([seed, index, 1 + k]), spec.size)
            for k in range(spec.images_per_identity)]


def write_synthetic_dataset(
    root: str | Path,
    spec: SyntheticSpec,
    *,
    seed: int,
    identities: Sequence[int] | None = None,
    image_name: Callable[[str, int], str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Write `root/<identity>/<image>.png` for the given identity indices (default all); return the names.

    `image_name(identity, k)` names image k (1-based) of an identity; default `<identity>_<k:04d>.png`,
    LFW's naming, so an LFW-format pairs.txt can refer to the images. Files are written atomically.
    """
    from facever.core.atomic import write_bytes_atomic

    root = Path(root)
    name_of = image_name or (lambda ident, k: f"{ident}_{k:04d}.png")
    indices = list(range(spec.identities)) if identities is None else list(identities)
    names = []
    for index in indices:
        ident = identity_name(index)
        for k, image in enumerate(generate_identity_images(spec, index, seed=seed), start=1):
            write_bytes_atomic(root / ident / name_of(ident, k), encode_png(image))
        names.append(ident)
        if progress is not None:
            progress(spec.images_per_identity)
    return names
