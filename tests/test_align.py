"""Face alignment on the real photos in ../shared/data/faces: crops land on the template, face choice,
rotated and EXIF-rotated inputs come out upright, batched equals single.

MTCNN on a shared 2-core CPU is slow, so photos are shrunk to at most 320 pixels before detection and
the detector runs once per photo set (module fixtures)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from facever.data_prep.align import AlignedFaces, FaceAligner
from facever.core.images import read_image_rgb
from facever.data_prep.similarity import decompose_similarity, similarity_transform
from facever.data_prep.templates import template_for_size

PAD = 32  # re-detection needs a margin: an aligned crop is all face, up to its borders


def shrink(rgb: np.ndarray, side: int = 320) -> np.ndarray:
    import cv2

    scale = side / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def rotate(rgb: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate counter-clockwise on screen by `angle_deg` about the centre, keeping the whole image."""
    import cv2

    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    new_w, new_h = int(h * sin + w * cos), int(h * cos + w * sin)
    m[0, 2] += new_w / 2 - w / 2
    m[1, 2] += new_h / 2 - h / 2
    return cv2.warpAffine(rgb, m, (new_w, new_h), borderMode=cv2.BORDER_REFLECT)


def eye_tilt_deg(landmarks: np.ndarray) -> float:
    """Angle of the line from the left to the right eye; 0 when the eyes are level."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def redetect(aligner: FaceAligner, crops: list[np.ndarray]) -> list[np.ndarray | None]:
    """Landmarks of the most confident face in each (padded) crop, in crop pixels; None if none found."""
    padded = [np.pad(c, ((PAD, PAD), (PAD, PAD), (0, 0))) for c in crops]
    found = []
    for det in aligner.detect_batch(padded):
        found.append(None if len(det) == 0 else det.landmarks[int(np.argmax(det.scores))] - PAD)
    return found


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    # min_face 40: every face in these shrunk photos is larger, and a shorter pyramid is faster on CPU.
    return FaceAligner(device="cpu", max_detect_side=480, min_face=40)


@pytest.fixture(scope="module")
def portraits(faces_dir: Path) -> dict[str, np.ndarray]:
    """One-face real photos of varied sources: LFW, web photos, greyscale ORL, the WebP under .jpg."""
    names = [
        "lfw_sample/Anthony_Hopkins/Anthony_Hopkins_0001.jpg",
        "lfw_sample/Anthony_Hopkins/Anthony_Hopkins_0002.jpg",
        "facenet_pytorch/test_images/angelina_jolie/1.jpg",
        "facenet_pytorch/test_images/paul_rudd/1.jpg",
        "facenet_pytorch/test_images/shea_whigham/1.jpg",
        "deepface/g01/img1.jpg",
        "deepface/g02/img26.jpg",
        "deepface/g03/img47.jpg",  # WebP data under a .jpg name
        "orl/s1/1.pgm",
        "orl/s11/1.pgm",
    ]
    return {name: shrink(read_image_rgb(faces_dir / name)) for name in names}


@pytest.fixture(scope="module")
def aligned_portraits(aligner, portraits) -> dict[str, AlignedFaces]:
    return dict(zip(portraits, aligner.align_batch(list(portraits.values()))))


def test_every_portrait_aligns_to_one_face(portraits, aligned_portraits):
    for name, faces in aligned_portraits.items():
        assert faces.found, f"no face in {name}"
        assert len(faces) == 1 and faces.landmarks.shape == (1, 5, 2) and faces.boxes.shape == (1, 4)
        crop = faces.crops[0]
        assert crop.shape == (112, 96, 3) and crop.dtype == np.uint8, name
        assert 0.9 <= faces.scores[0] <= 1.0
        # Landmarks lie inside their box, in the source image's pixels.
        (x1, y1, x2, y2), lm = faces.boxes[0], faces.landmarks[0]
        assert (lm[:, 0] > x1 - 5).all() and (lm[:, 0] < x2 + 5).all(), name
        assert (lm[:, 1] > y1 - 5).all() and (lm[:, 1] < y2 + 5).all(), name


def test_aligned_crops_redetect_on_the_template(aligner, aligned_portraits):
    """The crop's own landmarks, found again by the detector, sit on the template (the detector's
    landmark noise is a pixel or two; a missing rotation or a wrong template costs far more)."""
    template = template_for_size((112, 96))
    names = list(aligned_portraits)
    found = redetect(aligner, [aligned_portraits[n].crops[0] for n in names])
    mean_errors = []
    for name, lm in zip(names, found):
        assert lm is not None, f"no face found again in the aligned crop of {name}"
        errors = np.linalg.norm(lm - template, axis=1)
        mean_errors.append(errors.mean())
        assert errors[:2].max() < 5.0, f"{name}: eyes {errors[:2]} pixels off the template"
        assert errors.mean() < 6.0, f"{name}: landmarks {errors} pixels off the template"
        assert abs(eye_tilt_deg(lm)) < 4.0, f"{name}: eyes tilted {eye_tilt_deg(lm):.1f} degrees"
    assert np.median(mean_errors) < 3.0, mean_errors


def test_arcface_size_crops_land_on_the_arcface_template(faces_dir):
    aligner = FaceAligner((112, 112), device="cpu", max_detect_side=480, min_face=40)
    photo = shrink(read_image_rgb(faces_dir / "facenet_pytorch/test_images/kate_siegel/1.jpg"))
    crop = aligner.align(photo).crops[0]
    assert crop.shape == (112, 112, 3)
    (lm,) = redetect(aligner, [crop])
    assert lm is not None
    assert np.linalg.norm(lm - template_for_size((112, 112)), axis=1).mean() < 4.0


def test_batched_alignment_equals_one_by_one(aligner, portraits, aligned_portraits):
    # Two LFW photos share a size (one detector call) and the others do not.
    for name in ("lfw_sample/Anthony_Hopkins/Anthony_Hopkins_0002.jpg", "orl/s1/1.pgm"):
        single = aligner.align(portraits[name])
        np.testing.assert_allclose(single.landmarks, aligned_portraits[name].landmarks, atol=0.05)
        np.testing.assert_allclose(single.boxes, aligned_portraits[name].boxes, atol=0.05)
        assert np.abs(single.crops[0].astype(int) - aligned_portraits[name].crops[0]).max() <= 1


@pytest.mark.parametrize("angle", [25, -25])
def test_rotated_photo_gives_an_upright_crop(aligner, portraits, angle):
    photo = portraits["facenet_pytorch/test_images/paul_rudd/1.jpg"]
    faces = aligner.align(rotate(photo, angle))
    assert faces.found
    # The detector saw tilted eyes (on screen, a counter-clockwise turn raises the right eye) ...
    assert abs(eye_tilt_deg(faces.landmarks[0]) + angle) < 8
    # ... the fitted transform undoes the rotation ...
    matrix = similarity_transform(faces.landmarks[0], template_for_size((112, 96)))
    _, fitted_angle, _ = decompose_similarity(matrix)
    assert abs(fitted_angle - angle) < 8
    # ... and the crop is upright, on the template.
    (lm,) = redetect(aligner, faces.crops)
    assert lm is not None
    assert abs(eye_tilt_deg(lm)) < 4.0
    assert np.linalg.norm(lm - template_for_size((112, 96)), axis=1).mean() < 5.0


def test_exif_rotated_jpeg_gives_an_upright_crop(aligner, portraits, tmp_path):
    """A camera JPEG stores the sensor's pixels and an Orientation tag; the decoder must apply it."""
    from PIL import Image

    upright = portraits["facenet_pytorch/test_images/shea_whigham/1.jpg"]
    path = tmp_path / "camera.jpg"
    # Orientation 6 means "rotate 90 degrees clockwise to display": store the pixels turned the other way.
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as raw:
        assert raw.size == (upright.shape[0], upright.shape[1])  # stored sideways
    decoded = read_image_rgb(path)
    assert decoded.shape == upright.shape
    faces = aligner.align(decoded)
    assert faces.found
    assert abs(eye_tilt_deg(faces.landmarks[0])) < 8
    (lm,) = redetect(aligner, faces.crops)
    assert lm is not None and abs(eye_tilt_deg(lm)) < 4.0


def _face_patch(aligner: FaceAligner, rgb: np.ndarray, face_px: int) -> np.ndarray:
    """A square patch of `rgb` around its (single) face, scaled so the face box is about `face_px`."""
    import cv2

    (x1, y1, x2, y2) = aligner.align(rgb).boxes[0]
    side = 1.6 * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    scale = 1.6 * face_px / side
    m = np.array([[scale, 0, 0.8 * face_px - cx * scale], [0, scale, 0.8 * face_px - cy * scale]])
    size = int(1.6 * face_px)
    return cv2.warpAffine(rgb, m, (size, size), borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def two_face_photo(aligner, portraits) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """A 300x300 photo with a large face at the left edge and a smaller one in the centre (LFW's case:
    the subject in the middle, a bigger bystander at the border). Returns the photo and both centres."""
    big = _face_patch(aligner, portraits["facenet_pytorch/test_images/angelina_jolie/1.jpg"], 90)
    small = _face_patch(aligner, portraits["lfw_sample/Anthony_Hopkins/Anthony_Hopkins_0001.jpg"], 60)
    canvas = np.full((300, 300, 3), 128, np.uint8)
    canvas[150 - 72 : 150 + 72, 0:144] = big
    canvas[150 - 48 : 150 + 48, 150 - 48 : 150 + 48] = small
    return canvas, (72.0, 150.0), (150.0, 150.0)


def test_face_choice_largest_center_and_all(faces_dir, two_face_photo):
    photo, big_centre, small_centre = two_face_photo

    def centre(box):
        return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)

    largest = FaceAligner(device="cpu", select="largest", min_face=40).align(photo)
    center = FaceAligner(device="cpu", select="center", min_face=40).align(photo)
    every = FaceAligner(device="cpu", select="center", all_faces=True, min_face=40).align(photo)
    assert len(largest) == 1 and len(center) == 1
    assert np.hypot(*np.subtract(centre(largest.boxes[0]), big_centre)) < 20
    assert np.hypot(*np.subtract(centre(center.boxes[0]), small_centre)) < 20
    assert len(every) == 2
    assert np.hypot(*np.subtract(centre(every.boxes[0]), small_centre)) < 20  # in `select` order
    assert np.hypot(*np.subtract(centre(every.boxes[1]), big_centre)) < 20
    assert all(c.shape == (112, 96, 3) for c in every.crops)


@pytest.mark.slow
def test_group_photo_all_faces_are_aligned(aligner, faces_dir):
    photo = read_image_rgb(faces_dir / "bbt/group/bbt2.jpg")  # three people
    faces = FaceAligner(device="cpu", all_faces=True, max_detect_side=480, min_face=40).align(photo)
    assert len(faces) >= 3
    areas = (faces.boxes[:, 2] - faces.boxes[:, 0]) * (faces.boxes[:, 3] - faces.boxes[:, 1])
    assert (np.diff(areas) <= 0).all()  # largest first
    found = redetect(aligner, faces.crops)
    assert all(lm is not None for lm in found)
    # The two large faces look at the camera; the third is turned and cut by the photo's edge, so its
    # landmarks fit a frontal template less well.
    assert abs(eye_tilt_deg(found[0])) < 5.0 and abs(eye_tilt_deg(found[1])) < 5.0
    assert all(abs(eye_tilt_deg(lm)) < 10.0 for lm in found)


def test_no_face_and_tiny_images_give_no_crops(aligner):
    import cv2

    yy, xx = np.mgrid[0:200, 0:240]
    scenery = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    cv2.rectangle(scenery, (50, 50), (120, 150), (200, 30, 30), -1)
    tiny = np.full((10, 12, 3), 200, np.uint8)
    for faces in aligner.align_batch([scenery, tiny]):
        assert not faces.found and faces.error is None
        assert faces.landmarks.shape == (0, 5, 2) and faces.boxes.shape == (0, 4) and faces.scores.shape == (0,)


def test_bad_arrays_and_options_are_rejected(aligner):
    from facever.core.errors import FaceverError

    with pytest.raises(FaceverError, match="uint8 RGB"):
        aligner.align(np.zeros((50, 50), np.uint8))
    with pytest.raises(FaceverError, match="uint8 RGB"):
        aligner.align(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(FaceverError, match="largest, center"):
        FaceAligner(select="middle")
    with pytest.raises(FaceverError, match="min_face"):
        FaceAligner(min_face=5)
