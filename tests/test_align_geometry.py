"""Alignment geometry without the detector: templates, the least-squares similarity, warping, face choice,
centre crops, output naming and source listing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facever.data_prep.align import center_crop, face_order, warp_face
from facever.data_prep.align_dataset import collect_sources, output_names
from facever.core.errors import FaceverError
from facever.data_prep.similarity import (
    apply_transform,
    decompose_similarity,
    similarity_matrix,
    similarity_transform,
)
from facever.data_prep.templates import REFERENCE_112x96, template_for_size

# -- templates ---------------------------------------------------------------------------------------


def test_reference_template_is_the_published_96x112_points():
    expected = [
        (30.2946, 51.6963),
        (65.5318, 51.5014),
        (48.0252, 71.7366),
        (33.5493, 92.3655),
        (62.7299, 92.2041),
    ]
    np.testing.assert_array_equal(template_for_size((112, 96)), np.array(expected))


def test_arcface_template_is_reference_shifted_by_8():
    t = template_for_size((112, 112))
    np.testing.assert_allclose(t[:, 0], REFERENCE_112x96[:, 0] + 8, atol=1e-12)
    np.testing.assert_allclose(t[:, 1], REFERENCE_112x96[:, 1], atol=1e-12)
    # The published ArcFace point for the left eye.
    np.testing.assert_allclose(t[0], [38.2946, 51.6963], atol=1e-9)


@pytest.mark.parametrize("side", [128, 160, 224])
def test_square_templates_scale_the_arcface_template(side):
    np.testing.assert_allclose(template_for_size((side, side)), template_for_size((112, 112)) * side / 112, atol=1e-9)


def test_other_sizes_scale_uniformly_and_stay_centred():
    t = template_for_size((224, 192))
    np.testing.assert_allclose(t, REFERENCE_112x96 * 2, atol=1e-9)
    tall = template_for_size((140, 96))  # taller than the reference: same scale, centred vertically
    np.testing.assert_allclose(tall, REFERENCE_112x96 + [0, 14], atol=1e-9)


# -- similarity transform ----------------------------------------------------------------------------


def test_similarity_recovers_known_transforms_exactly():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scale = float(rng.uniform(0.05, 5))
        angle = float(rng.uniform(-180, 180))
        tx, ty = rng.uniform(-500, 500, size=2)
        truth = similarity_matrix(scale=scale, angle_deg=angle, tx=tx, ty=ty)
        src = rng.uniform(0, 1000, size=(5, 2))
        estimated = similarity_transform(src, apply_transform(truth, src))
        np.testing.assert_allclose(estimated, truth, rtol=1e-9, atol=1e-7)
        s, a, t = decompose_similarity(estimated)
        assert math.isclose(s, scale, rel_tol=1e-9)
        assert math.isclose((a - angle + 180) % 360 - 180, 0.0, abs_tol=1e-7)
        np.testing.assert_allclose(t, [tx, ty], atol=1e-6)


def test_similarity_is_the_least_squares_optimum_on_noisy_points():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, size=(5, 2))
    dst = apply_transform(similarity_matrix(scale=0.6, angle_deg=17, tx=10, ty=-4), src) + rng.normal(0, 2, (5, 2))
    best = similarity_transform(src, dst)
    best_cost = ((apply_transform(best, src) - dst) ** 2).sum()
    s, a, t = decompose_similarity(best)
    # Any perturbation of scale, angle or translation costs more.
    for ds, da, dt in [(1.01, 0, 0), (0.99, 0, 0), (1, 0.5, 0), (1, -0.5, 0), (1, 0, 0.3), (1, 0, -0.3)]:
        other = similarity_matrix(scale=s * ds, angle_deg=a + da, tx=t[0] + dt, ty=t[1] - dt)
        assert ((apply_transform(other, src) - dst) ** 2).sum() > best_cost


def test_similarity_never_reflects():
    src = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 7]], dtype=float)
    mirrored = src * [-1, 1]
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_similarity_rejects_degenerate_and_bad_input():
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="finite"):
        similarity_transform(np.full((5, 2), np.nan), np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        similarity_transform(np.zeros((5, 3)), np.zeros((5, 3)))


# -- warping ------------------------------------------------------------------------------------------


def _dots_image(points: np.ndarray, shape: tuple[int, int], radius: int) -> np.ndarray:
    """A black image with a white disc at each point; the crop's disc centroids tell where points went."""
    import cv2

    img = np.zeros((*shape, 3), np.uint8)
    for x, y in points:
        cv2.circle(img, (int(round(x)), int(round(y))), radius, (255, 255, 255), -1, lineType=cv2.LINE_AA)
    return img


def _centroids(crop: np.ndarray, near: np.ndarray, window: int = 6) -> np.ndarray:
    grey = crop.astype(float).mean(axis=2)
    found = []
    for x, y in near:
        x0, y0 = int(round(x)) - window, int(round(y)) - window
        patch = grey[max(0, y0) : y0 + 2 * window + 1, max(0, x0) : x0 + 2 * window + 1]
        ys, xs = np.mgrid[max(0, y0) : max(0, y0) + patch.shape[0], max(0, x0) : max(0, x0) + patch.shape[1]]
        found.append([(xs * patch).sum() / patch.sum(), (ys * patch).sum() / patch.sum()])
    return np.array(found)


@pytest.mark.parametrize("size", [(112, 96), (112, 112), (160, 160)])
@pytest.mark.parametrize("scale", [1.0, 6.0])  # 6: a large face, exercising the shrink-before-warp path
def test_warp_moves_landmarks_onto_the_template(size, scale):
    template = template_for_size(size)
    # Landmarks of a face rotated by 25 degrees, somewhere in a larger photo.
    face_to_photo = similarity_matrix(scale=1.3 * scale, angle_deg=25, tx=40 * scale, ty=30 * scale)
    landmarks = apply_transform(face_to_photo, template)
    photo = _dots_image(landmarks, (int(260 * scale), int(240 * scale)), radius=int(2 * scale))
    crop = warp_face(photo, landmarks, size)
    assert crop.shape == (*size, 3) and crop.dtype == np.uint8
    np.testing.assert_allclose(_centroids(crop, template), template, atol=0.6)


def test_center_crop_takes_the_middle():
    img = np.zeros((250, 250, 3), np.uint8)
    img[100:150, 100:150] = 255  # a white square in the centre
    crop = center_crop(img, (112, 96))
    assert crop.shape == (112, 96, 3)
    # The square covers the middle 50 of the 125-pixel-high region: about 40% of the crop, centred.
    rows = np.flatnonzero(crop[:, 48, 0] > 127)
    cols = np.flatnonzero(crop[56, :, 0] > 127)
    assert abs(rows.mean() - 55.5) < 1.5 and abs(cols.mean() - 47.5) < 1.5
    assert 40 <= len(rows) <= 50
    # Narrow and tiny images still give the requested size.
    assert center_crop(np.zeros((400, 30, 3), np.uint8), (112, 96)).shape == (112, 96, 3)
    assert center_crop(np.zeros((3, 2, 3), np.uint8), (112, 112)).shape == (112, 112, 3)


# -- face choice --------------------------------------------------------------------------------------


def test_face_order_largest_and_center():
    boxes = np.array(
        [
            [0, 0, 60, 60],  # large, in the corner
            [110, 110, 150, 150],  # smaller, at the centre of a 260x260 image
            [200, 200, 220, 220],  # small, off-centre
        ],
        dtype=float,
    )
    assert list(face_order(boxes, (260, 260, 3), select="largest")) == [0, 1, 2]
    assert face_order(boxes, (260, 260, 3), select="center")[0] == 1
    # A much larger face wins "center" even when slightly off-centre.
    boxes2 = np.array([[120, 120, 140, 140], [40, 40, 200, 200]], dtype=float)
    assert face_order(boxes2, (260, 260, 3), select="center")[0] == 1
    with pytest.raises(Exception, match="largest, center"):
        face_order(boxes, (260, 260, 3), select="middle")


# -- naming and listing -------------------------------------------------------------------------------


def test_output_names_mirror_paths_and_resolve_collisions():
    rels = ["a/x.png", "a/x.jpg", "b/y.pgm", "c/noext"]
    # The photo already named like the output keeps it; the other keeps its full name, so looking a
    # crop up by either rule never returns another photo's face.
    assert output_names(rels, fmt="jpg") == ["a/x.png.jpg", "a/x.jpg", "b/y.jpg", "c/noext.jpg"]
    assert output_names(["a/x.png", "a/x.bmp"], fmt="jpg") == ["a/x.png.jpg", "a/x.bmp.jpg"]
    assert output_names(["a/x.png"], fmt="png", all_faces=True) == ["a/x_0.png"]
    with pytest.raises(FaceverError, match="rename one"):
        output_names(["p.jpg", "p.png", "p.png.jpg"], fmt="jpg")


def test_collect_sources_from_a_list_file(tmp_path):
    (tmp_path / "imgs" / "p1").mkdir(parents=True)
    for name in ("imgs/p1/a.jpg", "imgs/p1/b.png"):
        (tmp_path / name).write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# comment\nimgs/p1/a.jpg\t0\n\nimgs/p1/b.png 1\nimgs/p1/a.jpg\n", encoding="utf-8")
    root, pairs = collect_sources(listing)
    assert root == tmp_path
    # Text after a tab (a label) is ignored; spaces are part of the path; duplicates listed once.
    assert [rel for _, rel in pairs] == ["imgs/p1/a.jpg", "imgs/p1/b.png 1"]
    # Paths outside the list's folder: relative to their common parent, never with `..`.
    other = tmp_path / "lists" / "l.txt"
    other.parent.mkdir()
    other.write_text("../imgs/p1/a.jpg\n" + str(tmp_path / "imgs" / "p1" / "b.png") + "\n", encoding="utf-8")
    root, pairs = collect_sources(other)
    assert root == tmp_path / "imgs" / "p1"
    assert [rel for _, rel in pairs] == ["a.jpg", "b.png"]


def test_collect_sources_rejects_binary_and_empty_lists(tmp_path):
    from facever.core.errors import FaceverError

    binary = tmp_path / "photo.dat"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    with pytest.raises(FaceverError, match="photo.dat.*binary"):
        collect_sources(binary)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n", encoding="utf-8")
    with pytest.raises(FaceverError, match="empty.txt: lists no image paths"):
        collect_sources(empty)
    with pytest.raises(FaceverError, match="no such file"):
        collect_sources(tmp_path / "missing")


def test_collect_sources_excludes_dst_inside_src(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.jpg").write_bytes(b"x")
    (tmp_path / "out" / "p").mkdir(parents=True)
    (tmp_path / "out" / "p" / "a.jpg").write_bytes(b"x")
    _, pairs = collect_sources(tmp_path, exclude=tmp_path / "out")
    assert [rel for _, rel in pairs] == ["p/a.jpg"]


def test_degenerate_landmarks_are_dropped_not_fatal():
    from facever.data_prep.align import Detections, FaceAligner

    rgb = np.zeros((100, 100, 3), np.uint8)
    good = template_for_size((112, 96)) * 0.8 + 5
    det = Detections(
        boxes=np.array([[0, 0, 90, 90], [10, 10, 60, 60]], np.float32),
        scores=np.array([0.99, 0.98], np.float32),
        landmarks=np.stack([np.full((5, 2), 40.0), good]).astype(np.float32),
    )
    aligner = FaceAligner()  # the detector is never built: only the warp runs
    faces = aligner.align_detected(rgb, det)
    assert len(faces) == 1 and faces.error is None
    np.testing.assert_allclose(faces.boxes[0], [10, 10, 60, 60])
    only_bad = Detections(det.boxes[:1], det.scores[:1], det.landmarks[:1])
    faces = aligner.align_detected(rgb, only_bad)
    assert not faces.found and "cannot align" in faces.error
