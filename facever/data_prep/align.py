"""Face alignment: MTCNN boxes and five landmarks, a least-squares similarity to a template, one warp.

facenet-pytorch's MTCNN finds faces and landmarks but only crops the box (no rotation, no template),
which costs whole points of verification accuracy. Here the five landmarks are mapped onto the
template of `facever.data_prep.templates` with the Umeyama similarity of
`facever.data_prep.similarity`, so every crop has its eyes level and at the same pixels.

`FaceAligner.align(rgb)` aligns one decoded image; `FaceAligner.align_batch(images)` runs the detector
once per group of equally sized images, which is what keeps a GPU busy (see `align_dataset` for the
dataset-scale runner). Images larger than `max_detect_side` are detected on a shrunken copy (MTCNN's
pyramid on a 4000-pixel photo takes seconds and gigabytes) but warped from the full-resolution pixels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from facever.data_prep.similarity import similarity_transform
from facever.data_prep.templates import template_for_size
from facever.core.errors import FaceverError

log = logging.getLogger(__name__)

from facever.core.settings import DEFAULT_CROP_SIZE, DEFAULT_MIN_FACE, DEFAULT_SELECT, SELECT_METHODS
DEFAULT_THRESHOLDS = (0.6, 0.7, 0.7)
# Weight of the squared centre distance against the box area in `select="center"` (the value
# facenet-pytorch uses for its "center_weighted_size" heuristic): on LFW's 250x250 photos the
# subject's face sits in the middle, and a larger face at the edge must not win.
CENTER_WEIGHT = 2.0
# Upper bound on pixels per detector call, so a batch of large photos does not exhaust memory.
MAX_BATCH_PIXELS = 16_000_000


@dataclass(frozen=True)
class Detections:
    """Every face the detector found in one image, in detector order, in original-image pixels."""

    boxes: np.ndarray  # (k, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (k,) float32 detection probabilities
    landmarks: np.ndarray  # (k, 5, 2) float32 (x, y): left eye, right eye, nose, mouth left, mouth right
    error: str | None = None  # set when the detector could not process this image

    @classmethod
    def empty(cls, error: str | None = None) -> "Detections":
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32), error
        )

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class AlignedFaces:
    """The aligned faces of one image, the chosen face first (all faces when `all_faces=True`).

    `crops[i]` is an `h x w x 3` uint8 RGB array; `landmarks[i]`, `boxes[i]`, `scores[i]` describe the
    same face in the source image's pixels. Empty when no face was found; `error` says why when the
    detector failed on the image rather than finding nothing.
    """

    crops: list = field(default_factory=list)
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 5, 2), np.float32))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    error: str | None = None

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def found(self) -> bool:
        return len(self.crops) > 0


def face_order(boxes: np.ndarray, image_shape: tuple[int, ...], *, select: str = DEFAULT_SELECT) -> np.ndarray:
    """Indices of `boxes` (k x 4, x1 y1 x2 y2) from the preferred face to the least preferred.

    `largest`: by box area. `center`: by area minus `CENTER_WEIGHT` x the squared distance from the box
    centre to the image centre, i.e. the face nearest the centre unless another is much larger.
    Ties keep detector order.
    """
    if select not in SELECT_METHODS:
        raise FaceverError(f"unknown face selection {select!r}; choose one of {', '.join(SELECT_METHODS)}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if select == "largest":
        key = area
    else:
        h, w = image_shape[0], image_shape[1]
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 - w / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 - h / 2
        key = area - CENTER_WEIGHT * (cx**2 + cy**2)
    return np.argsort(-key, kind="stable")


def warp_face(rgb: np.ndarray, landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp the face with five `landmarks` (5 x 2, source pixels) onto the template of `size = (h, w)`.

    When the crop is much smaller than the face (a 600-pixel face into 112x96), the region around the
    face is first shrunk with area averaging: a bilinear warp alone would alias (skip pixels).
    """
    from facever.core.opencv_guard import opencv

    cv2 = opencv()

    h, w = size
    matrix = similarity_transform(landmarks, template_for_size(size))
    scale = math.hypot(matrix[0, 0], matrix[1, 0])
    if scale < 0.5:
        rgb, matrix = _shrink_around_crop(rgb, matrix, size, factor=2.0 * scale)
    crop = cv2.warpAffine(
        np.ascontiguousarray(rgb),
        matrix,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return np.ascontiguousarray(crop, dtype=np.uint8)


def _shrink_around_crop(rgb: np.ndarray, matrix: np.ndarray, size: tuple[int, int], *, factor: float):
    """Cut the source region the crop will sample, shrink it by `factor` (INTER_AREA), and return it
    with the matrix adjusted so that warping it gives the same geometry."""
    from facever.core.opencv_guard import opencv

    cv2 = opencv()

    h, w = size
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=np.float64)
    src_corners = corners @ inverse[:2].T
    margin = 2.0 / factor
    img_h, img_w = rgb.shape[:2]
    x0 = int(max(0, math.floor(src_corners[:, 0].min() - margin)))
    y0 = int(max(0, math.floor(src_corners[:, 1].min() - margin)))
    x1 = int(min(img_w, math.ceil(src_corners[:, 0].max() + margin) + 1))
    y1 = int(min(img_h, math.ceil(src_corners[:, 1].max() + margin) + 1))
    if x1 - x0 < 2 or y1 - y0 < 2:  # the crop lies (almost) entirely outside the image
        return rgb, matrix
    region = rgb[y0:y1, x0:x1]
    new_w = max(1, round((x1 - x0) * factor))
    new_h = max(1, round((y1 - y0) * factor))
    small = cv2.resize(np.ascontiguousarray(region), (new_w, new_h), interpolation=cv2.INTER_AREA)
    rx, ry = new_w / (x1 - x0), new_h / (y1 - y0)
    # Pixel centres: source u = (u' + 0.5) / rx - 0.5 + x0.
    to_source = np.array(
        [[1 / rx, 0.0, 0.5 / rx - 0.5 + x0], [0.0, 1 / ry, 0.5 / ry - 0.5 + y0], [0.0, 0.0, 1.0]]
    )
    return small, (full @ to_source)[:2]


def center_crop(rgb: np.ndarray, size: tuple[int, int], *, fraction: float = 0.5) -> np.ndarray:
    """The fallback crop for an image with no detected face: the centre region, resized to `size`.

    The region is `fraction` of the shorter side high with the crop's aspect ratio; 0.5 matches how
    the face fills LFW's 250x250 photos (about 125 pixels from brow to chin around the centre), so a
    miss there still gives a roughly framed face.
    """
    from facever.core.opencv_guard import opencv

    cv2 = opencv()

    h, w = size
    img_h, img_w = rgb.shape[:2]
    region_h = max(1.0, fraction * min(img_h, img_w))
    region_w = region_h * w / h
    if region_w > img_w:  # very narrow images: fit the width instead
        region_w = float(img_w)
        region_h = region_w * h / w
    x0 = int(round((img_w - region_w) / 2))
    y0 = int(round((img_h - region_h) / 2))
    x1 = max(x0 + 1, int(round(x0 + region_w)))
    y1 = max(y0 + 1, int(round(y0 + region_h)))
    region = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    shrinking = region.shape[0] > h or region.shape[1] > w
    crop = cv2.resize(region, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return np.ascontiguousarray(crop, dtype=np.uint8)


class FaceAligner:
    """Detect faces with MTCNN and warp each chosen face onto the five-point template.

    Args:
        size: crop `(h, w)`; `(112, 96)` (default) or `(112, 112)` use the published templates.
        select: `largest` or `center` (see `face_order`): which face comes first / is kept.
        all_faces: keep every face (in `select` order) instead of only the first.
        min_face: smallest face, in pixels, the detector looks for (MTCNN's `min_face_size`).
        device: `cpu`, `cuda`, `cuda:N` or `auto`.
        thresholds: MTCNN's three stage thresholds (P-Net, R-Net, O-Net).
        max_detect_side: images whose longer side exceeds this are detected on a copy shrunk to it
            (landmarks are mapped back; the warp uses the original pixels). On such a copy the
            smallest face found is `max(min_face, 12 / shrink factor)` original pixels. None disables.
        batch_size: most images per detector call in `align_batch` / `detect_batch`.
    """

    def __init__(
        self,
        size: tuple[int, int] = DEFAULT_CROP_SIZE,
        *,
        select: str = DEFAULT_SELECT,
        all_faces: bool = False,
        min_face: int = DEFAULT_MIN_FACE,
        device: str = "cpu",
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        max_detect_side: int | None = 1280,
        batch_size: int = 32,
    ):
        if select not in SELECT_METHODS:
            raise FaceverError(f"unknown face selection {select!r}; choose one of {', '.join(SELECT_METHODS)}")
        if len(size) != 2 or min(size) < 8:
            raise FaceverError(f"invalid crop size {size!r}: expected (h, w) with both at least 8")
        if int(min_face) < 12:
            # Below 12 pixels MTCNN up-samples every image (its smallest window is 12x12): slow and useless.
            raise FaceverError(f"`min_face` {min_face}: must be at least 12 pixels", options=('min_face',))
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise FaceverError(f"invalid MTCNN thresholds {thresholds!r}: expected three numbers in [0, 1]")
        if max_detect_side is not None and max_detect_side < 64:
            raise FaceverError(f"max_detect_side {max_detect_side}: must be at least 64 (or None)")
        if batch_size < 1:
            raise FaceverError(f"`batch_size` {batch_size}: must be at least 1", options=('batch_size',))
        self.size = (int(size[0]), int(size[1]))
        self.select = select
        self.all_faces = bool(all_faces)
        self.min_face = int(min_face)
        self.thresholds = thresholds
        self.max_detect_side = None if max_detect_side is None else int(max_detect_side)
        self.batch_size = int(batch_size)
        self._device_name = device
        self._mtcnn = None
        self._device = None

    # -- detector ---------------------------------------------------------------------------------
    @property
    def device(self):
        if self._device is None:
            from facever.core.devices import resolve_device

            self._device = resolve_device(self._device_name)
        return self._device

    @property
    def mtcnn(self):
        """The facenet-pytorch MTCNN, built on first use (its weights ship inside the wheel)."""
        if self._mtcnn is None:
            from facenet_pytorch import MTCNN

            self._mtcnn = MTCNN(
                keep_all=True,
                min_face_size=self.min_face,
                thresholds=list(self.thresholds),
                post_process=False,
                select_largest=False,
                device=self.device,
            )
            self._mtcnn.eval()
        return self._mtcnn

    def warm_up(self) -> None:
        """Build the detector and run it once on a small blank image. Its first call pays seconds of one-off
        start-up (10-15 s on a loaded 2-core CPU): a caller that shows progress does this first, as a stage
        of its own, so that the first images' progress is not that wait."""
        self.detect_batch([np.zeros((64, 64, 3), dtype=np.uint8)])

    def detection_scale(self, shape: tuple[int, ...]) -> float:
        """Factor (<= 1) by which an image of `shape` is shrunk before detection."""
        longer = max(shape[0], shape[1])
        if self.max_detect_side is None or longer <= self.max_detect_side:
            return 1.0
        return self.max_detect_side / longer

    def detection_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """`(h, w)` of the detector's input for an image of `shape`: images sharing it batch together."""
        scale = self.detection_scale(shape)
        if scale == 1.0:
            return int(shape[0]), int(shape[1])
        return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))

    def _detector_input(self, rgb: np.ndarray) -> np.ndarray:
        from facever.core.opencv_guard import opencv

        cv2 = opencv()

        target = self.detection_shape(rgb.shape)
        if target == rgb.shape[:2]:
            return rgb
        return cv2.resize(rgb, (target[1], target[0]), interpolation=cv2.INTER_AREA)

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """All faces in each image (`H x W x 3` uint8 RGB), one detector call per group of equal sizes."""
        results: list[Detections | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, rgb in enumerate(images):
            _check_rgb(rgb)
            if min(rgb.shape[0], rgb.shape[1]) < self.min_face:
                results[i] = Detections.empty()  # smaller than the smallest face looked for
                continue
            groups.setdefault(self.detection_shape(rgb.shape), []).append(i)
        for (h, w), indices in groups.items():
            per_call = max(1, min(self.batch_size, MAX_BATCH_PIXELS // max(1, h * w)))
            for start in range(0, len(indices), per_call):
                chunk = indices[start : start + per_call]
                for i, det in zip(chunk, self._detect_group([images[i] for i in chunk])):
                    results[i] = det
        return results  # type: ignore[return-value]

    def _detect_group(self, images: list[np.ndarray]) -> list[Detections]:
        scales = [self.detection_scale(rgb.shape) for rgb in images]
        inputs = [self._detector_input(rgb) for rgb in images]
        try:
            raw = self._run_mtcnn(inputs)
        except (RuntimeError, ValueError, IndexError) as exc:
            if len(images) == 1:
                log.warning("face detector failed on one image: %s", exc)
                return [Detections.empty(error=f"face detector failed ({exc})")]
            # One odd image must not cost the whole batch: retry one by one.
            return [self._detect_group([rgb])[0] for rgb in images]
        out = []
        for (boxes, scores, points), scale, shown, rgb in zip(raw, scales, inputs, images):
            if scale != 1.0:
                # Map back with the exact per-axis ratio of the rounded detector size.
                sx = rgb.shape[1] / shown.shape[1]
                sy = rgb.shape[0] / shown.shape[0]
                boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
                points = points * np.array([sx, sy], np.float32)
            out.append(Detections(boxes, scores, points))
        return out

    def _run_mtcnn(self, inputs: list[np.ndarray]):
        import torch

        mtcnn = self.mtcnn
        scale = self.detection_scale(inputs[0].shape) if inputs else 1.0
        # In a shrunken image a face of `min_face` original pixels is smaller; MTCNN cannot go below 12.
        mtcnn.min_face_size = max(12, int(round(self.min_face * min(1.0, scale))))
        batch = torch.from_numpy(np.stack(inputs))
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        # Always float32, whatever autocast the caller runs its model under: MTCNN turns its outputs
        # into numpy arrays, and numpy has no bfloat16.
        with torch.autocast(device_type=self.device.type, enabled=False):
            boxes, probs, points = mtcnn.detect(batch, landmarks=True)
        raw = []
        for b, p, pt in zip(boxes, probs, points):
            if b is None:
                raw.append((np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32)))
                continue
            # facenet-pytorch returns object arrays in batch mode; make them plain float32.
            raw.append(
                (
                    np.asarray(b, dtype=np.float32).reshape(-1, 4),
                    np.asarray(p, dtype=np.float32).reshape(-1),
                    np.asarray(pt, dtype=np.float32).reshape(-1, 5, 2),
                )
            )
        return raw

    # -- alignment --------------------------------------------------------------------------------
    def align_detected(self, rgb: np.ndarray, detections: Detections) -> AlignedFaces:
        """Choose faces among `detections` of `rgb` and warp them onto the template."""
        if len(detections) == 0:
            return AlignedFaces(error=detections.error)
        order = face_order(detections.boxes, rgb.shape, select=self.select)
        kept, crops, error = [], [], None
        for i in order:
            try:
                crops.append(warp_face(rgb, detections.landmarks[i], self.size))
            except ValueError as exc:  # degenerate landmarks (all on one point): not a usable face
                error = f"cannot align a detected face ({exc})"
                continue
            kept.append(i)
            if not self.all_faces:
                break
        kept = np.asarray(kept, dtype=np.int64)
        return AlignedFaces(
            crops=crops,
            landmarks=detections.landmarks[kept],
            boxes=detections.boxes[kept],
            scores=detections.scores[kept],
            error=None if crops else error,
        )

    def align(self, rgb: np.ndarray) -> AlignedFaces:
        """Align one decoded image (`H x W x 3` uint8 RGB)."""
        return self.align_batch([rgb])[0]

    def align_batch(self, images: Sequence[np.ndarray]) -> list[AlignedFaces]:
        """Align many decoded images; equal-sized images share one detector call."""
        detections = self.detect_batch(images)
        return [self.align_detected(rgb, det) for rgb, det in zip(images, detections)]


def _check_rgb(rgb) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise FaceverError(f"expected an H x W x 3 uint8 RGB image, got shape {shape} dtype {dtype}")
