"""IJB-B / IJB-C: the meta-file reader, pooling per test mode, pair scores, TAR@FAR (both definitions),
1:N metrics, each against a slow obvious reference; and `facever eval-ijb` / `ensemble --protocol ijbc`
on a small synthetic IJB set in the exact layout, built from real photos pasted into larger canvases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facever.cli import app
from facever.core.embeddings_file import Embeddings, load_embeddings, save_embeddings
from facever.core.errors import FaceverError, InputFileError
from facever.protocols import ijb as reader
from facever.verification import ijb

runner = CliRunner()


# ---------------------------------------------------------------------------------------------------
# Slow references, written the obvious way (insightface's loops)


def ref_image_features(raw, mode, faceness):
    out = []
    for row, score in zip(raw, faceness):
        half = row.size // 2
        f = row[:half] + row[half:] if mode.flip else row[:half]
        f = f.astype(np.float64)
        if not mode.norm:
            f = f / math.sqrt(sum(v * v for v in f))
        if mode.detector:
            f = f * score
        out.append(f)
    return out


def ref_templates(feats, templates, medias):
    result = {}
    for t in sorted(set(templates)):
        media_feats = []
        for m in sorted({m for tt, m in zip(templates, medias) if tt == t}):
            rows = [f for f, tt, mm in zip(feats, templates, medias) if tt == t and mm == m]
            media_feats.append(sum(rows) / len(rows))
        s = sum(media_feats)
        result[t] = s / math.sqrt(float(s @ s))
    return result


def ref_conservative(scores, labels, far):
    pos, neg = scores[labels], scores[~labels]
    best = 0.0
    for t in list(np.unique(scores)) + [np.inf]:
        if np.mean(neg >= t) <= far:
            best = max(best, float(np.mean(pos >= t)))
    return best


def ref_insightface(scores, labels, far):
    """insightface's IJB script (`ijb_11.py`, `arcface_torch/eval_ijbc.py`), its lines kept: sklearn's
    roc_curve, the arrays reversed, then the first nearest FAR. Returns `(tar, far reached)`."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fpr = np.flipud(fpr)
    tpr = np.flipud(tpr)  # select largest tpr at same fpr
    _, min_index = min(list(zip(abs(fpr - far), range(len(fpr)))))
    return float(tpr[min_index]), float(fpr[min_index])


# ---------------------------------------------------------------------------------------------------
# Pure functions


def test_test_mode_parsing_and_labels():
    assert ijb.TestMode.parse("F1N0D0") == ijb.TestMode(flip=True, norm=False, detector=False)
    assert ijb.TestMode.parse("d1, f0 n1") == ijb.TestMode(flip=False, norm=True, detector=True)
    assert ijb.TestMode(True, True, True).label == "F1 N1 D1"
    assert len(set(ijb.ALL_MODES)) == 8
    for bad in ("F1N0", "F2N0D0", "F1N0D0X", "F1F1D0"):
        with pytest.raises(ValueError, match="invalid test mode"):
            ijb.TestMode.parse(bad)


@pytest.mark.parametrize("mode", ijb.ALL_MODES, ids=lambda m: m.key)
def test_template_pooling_matches_the_hand_computation_in_every_mode(mode):
    rng = np.random.default_rng(3)
    n, d = 40, 6
    raw = rng.normal(size=(n, 2 * d)).astype(np.float32) * rng.uniform(0.5, 3, size=(n, 1)).astype(np.float32)
    templates = rng.integers(0, 7, n) * 10 + 5  # sparse ids, shuffled order
    medias = rng.integers(0, 3, n)
    faceness = rng.uniform(0.2, 1.0, n)
    feats = ijb.image_features(raw, mode=mode, flip_layout="concat", faceness=faceness)
    ids, pooled = ijb.template_features(feats, templates, medias)
    expected = ref_templates(ref_image_features(raw, mode, faceness), templates.tolist(), medias.tolist())
    assert ids.tolist() == sorted(expected)
    np.testing.assert_allclose(pooled, np.array([expected[t] for t in ids]), atol=2e-6)
    # The pooled features differ between modes (the switches do something): compare with F1 N0 D0.
    base = ijb.template_features(ijb.image_features(raw, mode=ijb.TestMode(), flip_layout="concat"), templates, medias)
    if mode != ijb.TestMode():
        assert np.abs(base[1] - pooled).max() > 1e-3


def test_flip_layouts_and_their_errors():
    raw = np.arange(1, 9, dtype=np.float32).reshape(2, 4)
    f1 = ijb.image_features(raw, mode=ijb.TestMode(norm=True), flip_layout="concat")
    np.testing.assert_array_equal(f1, [[4, 6], [12, 14]])
    f0 = ijb.image_features(raw, mode=ijb.TestMode(flip=False, norm=True), flip_layout="concat")
    np.testing.assert_array_equal(f0, [[1, 2], [5, 6]])
    np.testing.assert_array_equal(ijb.image_features(raw, mode=ijb.TestMode(norm=True), flip_layout="sum"), raw)
    with pytest.raises(ValueError, match="F1 needs the mirrored"):
        ijb.image_features(raw, mode=ijb.TestMode(), flip_layout="none")
    with pytest.raises(ValueError, match="F0 needs f"):
        ijb.image_features(raw, mode=ijb.TestMode(flip=False), flip_layout="sum")
    with pytest.raises(ValueError, match="D1 needs"):
        ijb.image_features(raw, mode=ijb.TestMode(detector=True), flip_layout="concat")
    with pytest.raises(ValueError, match="norm zero"):
        ijb.image_features(np.zeros((1, 4), np.float32), mode=ijb.TestMode(), flip_layout="concat")


@pytest.mark.parametrize("structure", ["uniform", "bipartite", "one_template", "sparse"])
def test_pair_scores_equal_per_pair_dot_products(structure):
    rng = np.random.default_rng(5)
    t, d, n = 300, 16, 5000
    feats = rng.normal(size=(t, d)).astype(np.float32)
    if structure == "uniform":
        r1, r2 = rng.integers(0, t, n), rng.integers(0, t, n)
    elif structure == "bipartite":
        r1, r2 = rng.integers(0, 40, n), rng.integers(100, t, n)
    elif structure == "one_template":
        r1, r2 = np.full(n, 7), rng.integers(0, t, n)
    else:  # few pairs among many templates: the pair-by-pair path
        r1, r2 = rng.integers(0, t, 30), rng.integers(0, t, 30)
    expected = np.array([float(feats[a].astype(np.float64) @ feats[b]) for a, b in zip(r1, r2)])
    for block in (7, 64, 512):
        np.testing.assert_allclose(ijb.pair_scores(feats, r1, r2, block=block), expected, rtol=0, atol=1e-5)


def test_template_rows_finds_every_id_and_names_the_missing_ones():
    for ids in (np.array([0, 3, 7, 12]), np.array([5, 10**12])):  # table lookup, binary search
        wanted = np.r_[ids[::-1], ids]
        np.testing.assert_array_equal(ijb.template_rows(ids, wanted), [3, 2, 1, 0, 0, 1, 2, 3][-2 * ids.size:]
                                      if ids.size == 4 else [1, 0, 0, 1])
        for bad in (-7, 4, 10**13):
            with pytest.raises(ValueError, match=f"1 template ids have no images: {bad}"):
                ijb.template_rows(ids, np.r_[ids, bad])


def test_tar_at_far_both_definitions_against_brute_force():
    rng = np.random.default_rng(11)
    for trial in range(30):
        n = int(rng.integers(20, 400))
        labels = rng.random(n) < rng.uniform(0.1, 0.6)
        labels[:2] = [True, False]
        scores = rng.normal(size=n) + labels * rng.uniform(0, 2)
        if trial % 3 == 0:
            scores = np.round(scores, 1)  # many ties
        fpr, tpr, corners = ijb.roc_with_corners(scores, labels)
        fars = (1e-3, 0.01, 0.05, 0.1, 0.3)
        both = ijb.tar_at_far_both(fpr, tpr, fars, corners=corners)
        for far in fars:
            key = f"{far:g}"
            assert both["conservative"][key]["tar"] == pytest.approx(ref_conservative(scores, labels, far), abs=1e-12)
            assert both["conservative"][key]["far"] <= far
            assert (both["insightface"][key]["tar"], both["insightface"][key]["far"]) == ref_insightface(scores, labels, far)


def test_the_two_definitions_on_a_hand_computed_curve():
    # 4 same, 10 different pairs (FAR steps of 0.1). Sorted: .95 same, .9 diff, .8 same AND diff (a tie:
    # one diagonal step), .7 ... diff, .1 same, .05 same. Points: (0,0) (0,.25) (.1,.25) (.2,.5) (.3,.5) ...
    labels = np.array([True] * 4 + [False] * 10)
    scores = np.array([0.95, 0.8, 0.1, 0.05] + [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.0])
    fpr, tpr, corners = ijb.roc_with_corners(scores, labels)
    both = ijb.tar_at_far_both(fpr, tpr, (0.05, 0.14, 0.16), corners=corners)
    # 0.05: FAR 0 and 0.1 are equally near; on the reversed arrays the first is the higher FAR.
    assert both["insightface"]["0.05"] == {"tar": 0.25, "far": 0.1}
    assert both["conservative"]["0.05"] == {"tar": 0.25, "far": 0.0}
    assert both["insightface"]["0.14"] == {"tar": 0.25, "far": 0.1}
    # 0.16: the nearest point lies above the target (FAR 0.2) and the tie lifts it above the conservative TAR.
    assert both["insightface"]["0.16"] == {"tar": 0.5, "far": 0.2}
    assert both["conservative"]["0.16"] == {"tar": 0.25, "far": 0.0}


def test_thinned_roc_is_a_staircase_under_the_true_curve_through_its_corners():
    rng = np.random.default_rng(4)
    labels = rng.random(30_000) < 0.2
    scores = rng.normal(size=labels.size) + 1.5 * labels
    fpr, tpr, _ = ijb.roc_with_corners(scores, labels)
    tf, tt = ijb.thin_roc(fpr, tpr, points=60)
    assert tf.size < 200 and tf[0] == 0 and tf[-1] == 1 and tt[-1] == 1
    assert np.all(np.diff(tf) >= 0) and np.all(np.diff(tt) >= 0)
    best_below = tpr[np.searchsorted(fpr, tf, side="right") - 1]  # the true curve's TPR at each FAR
    assert np.all(tt <= best_below)
    assert np.mean(tt == best_below) > 0.45  # every other staircase point is a true ROC point


def ref_search(probe_feats, probe_subjects, gallery_feats, gallery_subjects, ranks, fpirs):
    subjects = sorted(set(gallery_subjects.tolist()))
    sims = probe_feats.astype(np.float64) @ gallery_feats.T.astype(np.float64)
    best = np.array([[max(sims[p, j] for j in range(len(gallery_subjects)) if gallery_subjects[j] == s)
                      for s in subjects] for p in range(len(probe_subjects))])
    mated = [s in subjects for s in probe_subjects]
    ranks_of, mate_scores = [], []
    for p, s in enumerate(probe_subjects):
        if mated[p]:
            m = best[p, subjects.index(s)]
            ranks_of.append(1 + sum(v > m for v in best[p]))
            mate_scores.append(m)
    cmc = {k: float(np.mean([r <= k for r in ranks_of])) for k in ranks}
    non = [best[p].max() for p in range(len(probe_subjects)) if not mated[p]]
    tpir = {}
    for f in fpirs:
        # the lowest threshold among candidate values with FPIR <= f
        candidates = sorted(set(non) | {-np.inf, np.inf})
        ok = [t for t in candidates if np.mean([v > t for v in non]) <= f]
        t = min(ok)
        tpir[f] = float(np.mean([r == 1 and m > t for r, m in zip(ranks_of, mate_scores)]))
    return cmc, tpir


def test_one_to_n_metrics_against_brute_force():
    rng = np.random.default_rng(2)
    for trial in range(10):
        d = 8
        gallery_subjects = rng.permutation(30)[:12]
        if trial % 2:
            gallery_subjects = np.r_[gallery_subjects, gallery_subjects[:4]]  # subjects with two templates
        centres = rng.normal(size=(30, d))
        g = centres[gallery_subjects] + rng.normal(scale=0.8, size=(gallery_subjects.size, d))
        probe_subjects = rng.integers(0, 30, 60)
        p = centres[probe_subjects] + rng.normal(scale=0.8, size=(60, d))
        g = (g / np.linalg.norm(g, axis=1, keepdims=True)).astype(np.float32)
        p = (p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32)
        if trial == 3:
            p = np.round(p, 1)
            g = np.round(g, 1)
        res = ijb.search_metrics("G", p, probe_subjects, g, gallery_subjects, ranks=(1, 3, 5), fpirs=(0.01, 0.1, 0.3))
        cmc, tpir = ref_search(p, probe_subjects, g, gallery_subjects, (1, 3, 5), (0.01, 0.1, 0.3))
        assert res.cmc == pytest.approx(cmc, abs=1e-12)
        for f in (0.01, 0.1, 0.3):
            assert res.tpir_at_fpir[f"{f:g}"]["tpir"] == pytest.approx(tpir[f], abs=1e-12)
            assert res.tpir_at_fpir[f"{f:g}"]["fpir"] <= f


# ---------------------------------------------------------------------------------------------------
# A synthetic IJB set in the exact layout

PEOPLE = ["amy", "bernadette", "howard", "leonard", "penny", "raj"]
CANVAS = (220, 240)  # h, w


def _bbt_crops(faces_dir: Path):
    from facever.core.images import read_image_rgb

    out = {}
    for person in PEOPLE:
        files = sorted((faces_dir / "bbt" / person).glob("*.png"))
        if len(files) < 4:
            pytest.skip(f"bbt/{person} has fewer than 4 photos")
        out[person] = [read_image_rgb(f) for f in files[:4]]
    return out


def build_ijb(root: Path, faces_dir: Path, *, set_name: str = "ijbc") -> dict:
    """IJB_release/IJBC with loose_crop/ (real 150x150 face photos rotated, scaled and pasted into larger
    noisy canvases) and meta/ (templates of 2 media with 1-2 images, all template pairs, landmarks placed
    by the known transform, a 1:N split). Returns facts the tests check against."""
    import cv2
    from PIL import Image

    from facever.data_prep.similarity import apply_transform, similarity_matrix
    from facever.data_prep.templates import template_for_size

    rng = np.random.default_rng(0)
    folder = root / set_name.upper()
    (folder / "loose_crop").mkdir(parents=True)
    (folder / "meta").mkdir()
    crops = _bbt_crops(faces_dir)
    tid_mid, pts_lines, names, subjects = [], [], [], {}
    tid, image_no = 1, 1
    for s, person in enumerate(PEOPLE):
        for half in range(2):  # two templates per person, from different photos
            t = tid * 10 + 3
            subjects[t] = s + 100
            for media, count in ((7, 2), (8, 1)):
                for _ in range(count):
                    src = crops[person][2 * half + (image_no % 2)]
                    h, w = src.shape[:2]
                    points = template_for_size((h, w))  # where the face sits in the centred crop
                    m = similarity_matrix(scale=rng.uniform(0.8, 1.2), angle_deg=rng.uniform(-20, 20),
                                          tx=rng.uniform(20, 50), ty=rng.uniform(10, 40))
                    canvas = rng.integers(0, 255, (*CANVAS, 3), dtype=np.uint8)
                    cv2.warpAffine(src, m, (CANVAS[1], CANVAS[0]), dst=canvas, borderMode=cv2.BORDER_TRANSPARENT)
                    name = f"{image_no}.jpg"
                    Image.fromarray(canvas).save(folder / "loose_crop" / name, quality=95)
                    placed = apply_transform(m, points)
                    score = rng.uniform(0.5, 1.0)
                    pts_lines.append(name + " " + " ".join(f"{v:.3f}" for v in placed.ravel()) + f" {score:.4f}")
                    tid_mid.append(f"{name} {t} {media + 100 * half}")
                    names.append(name)
                    image_no += 1
            tid += 1
    templates = sorted(subjects)
    pairs = [(a, b, int(subjects[a] == subjects[b])) for i, a in enumerate(templates) for b in templates[i + 1:]]
    meta = folder / "meta"
    (meta / f"{set_name}_face_tid_mid.txt").write_text("\n".join(tid_mid) + "\n")
    (meta / f"{set_name}_template_pair_label.txt").write_text("\n".join(f"{a} {b} {l}" for a, b, l in pairs) + "\n")
    (meta / f"{set_name}_name_5pts_score.txt").write_text("\n".join(pts_lines) + "\n")
    g = ("G", "S")[set_name == "ijbb"]
    first = templates[0::2]  # each person's first template: G1 = the first three people, G2 = the rest
    for k, gallery in enumerate((first[:3], first[3:]), start=1):
        rows = ["TEMPLATE_ID,SUBJECT_ID,FILENAME,MEDIA_ID"]
        rows += [f"{t},{subjects[t]},img/{t}_{j}.jpg,{j}" for t in gallery for j in range(2)]
        (meta / f"{set_name}_1N_gallery_{g}{k}.csv").write_text("\n".join(rows) + "\n")
    rows = ["TEMPLATE_ID,SUBJECT_ID,FILENAME"] + [f"{t},{subjects[t]},frames/{t}.png" for t in templates[1::2]]
    (meta / f"{set_name}_1N_probe_mixed.csv").write_text("\n".join(rows) + "\n")
    return {"folder": folder, "names": names, "pairs": pairs, "subjects": subjects, "tid_mid": tid_mid}


@pytest.fixture(scope="module")
def ijb_set(tmp_path_factory, faces_dir):
    root = tmp_path_factory.mktemp("IJB_release")
    return root, build_ijb(root, faces_dir)


def test_reader_against_the_format(ijb_set):
    root, facts = ijb_set
    meta = reader.read_ijb(root, "ijbc")
    assert meta.folder == facts["folder"] and meta.images_dir == facts["folder"] / "loose_crop"
    assert meta.media.names == facts["names"]
    assert [f"{n} {t} {m}" for n, t, m in zip(meta.media.names, meta.media.templates, meta.media.medias)] == facts["tid_mid"]
    assert list(zip(meta.pairs.t1.tolist(), meta.pairs.t2.tolist(), meta.pairs.labels.astype(int).tolist())) == facts["pairs"]
    assert reader.read_ijb(facts["folder"], "ijbc").pairs.labels.sum() == len(PEOPLE)  # the set folder works too
    marks = reader.read_landmarks(meta.landmarks_path())
    assert marks.points.shape == (len(facts["names"]), 5, 2) and np.all((marks.faceness > 0.5) & (marks.faceness < 1))
    galleries, probes = reader.search_files(meta.folder, "ijbc")
    assert [g for g, _ in galleries] == ["G1", "G2"]
    g1 = reader.read_search_set(galleries[0][1])
    assert g1.templates.tolist() == sorted(facts["subjects"])[0:6:2] and len(g1) == 3  # two rows per template
    assert reader.read_search_set(probes).subjects.tolist() == [100, 101, 102, 103, 104, 105]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_malformed_lines_are_reported_with_file_and_line(tmp_path):
    p = _write(tmp_path / "tid.txt", "1.jpg 1 1\n2.jpg 1\n")
    with pytest.raises(InputFileError, match=r"tid.txt:2: expected `image_name template_id media_id`"):
        reader.read_template_media(p)
    p = _write(tmp_path / "tid2.txt", "1.jpg 1 1\n\n2.jpg x 1\n")
    with pytest.raises(InputFileError, match=r"tid2.txt:3: template id 'x'"):
        reader.read_template_media(p)
    p = _write(tmp_path / "pairs.txt", "1 2 1\n1 3 0\n2 3 2\n")
    with pytest.raises(InputFileError, match=r"pairs.txt:3: label '2'"):
        reader.read_template_pairs(p)
    p = _write(tmp_path / "pairs2.txt", "1 2 1\n1 3\n2 3 0 5\n")
    with pytest.raises(InputFileError, match=r"pairs2.txt:2: expected `template_1 template_2 label`"):
        reader.read_template_pairs(p)
    p = _write(tmp_path / "pairs3.txt", "1 2 1\n\n1 3 0\n")  # a blank line: accepted (slow path)
    assert reader.read_template_pairs(p).t2.tolist() == [2, 3]
    p = _write(tmp_path / "pts.txt", "1.jpg " + " ".join(["1"] * 11) + "\n2.jpg " + " ".join(["1"] * 10) + "\n")
    with pytest.raises(InputFileError, match=r"pts.txt:2: expected .*12 fields.*got 11"):
        reader.read_landmarks(p)
    p = _write(tmp_path / "pts2.txt", "1.jpg " + " ".join(["1"] * 10) + " nan\n")
    with pytest.raises(InputFileError, match=r"pts2.txt:1: landmarks and score must be finite"):
        reader.read_landmarks(p)
    p = _write(tmp_path / "g.csv", "TEMPLATE_ID,SUBJECT_ID\n1,5\n1,6\n")
    with pytest.raises(InputFileError, match=r"g.csv:3: template 1 has subject 6 here but 5 at line 2"):
        reader.read_search_set(p)
    p = _write(tmp_path / "h.csv", "TEMPLATE,SUBJECT_ID\n1,5\n")
    with pytest.raises(InputFileError, match=r"h.csv:1: the header must name TEMPLATE_ID"):
        reader.read_search_set(p)


def test_a_pair_with_an_unknown_template_names_the_line(tmp_path):
    meta = tmp_path / "IJBC" / "meta"
    _write(meta / "ijbc_face_tid_mid.txt", "1.jpg 1 1\n2.jpg 2 1\n")
    _write(meta / "ijbc_template_pair_label.txt", "1 2 1\n1 9 0\n")
    with pytest.raises(InputFileError, match=r"ijbc_template_pair_label.txt:2: template 9 has no image"):
        reader.read_ijb(tmp_path, "ijbc")
    with pytest.raises(FaceverError, match="no meta/ folder"):
        reader.read_ijb(tmp_path / "nowhere", "ijbb")


def _fake_embeddings(names, d=12, seed=0, flip="concat"):
    rng = np.random.default_rng(seed)
    width = 2 * d if flip == "concat" else d
    return Embeddings(list(names), rng.normal(size=(len(names), width)).astype(np.float32), {"flip": flip})


def test_evaluate_ijb_equals_the_reference_computation(ijb_set):
    root, facts = ijb_set
    meta = reader.read_ijb(root, "ijbc")
    marks = reader.read_landmarks(meta.landmarks_path())
    emb = _fake_embeddings(facts["names"][::-1])  # another order than the meta file: joined by name
    for mode in (ijb.TestMode(), ijb.TestMode(True, True, True), ijb.TestMode(False, False, True)):
        res = ijb.evaluate_ijb(meta, emb, mode, landmarks=marks)
        raw = emb.embeddings[emb.rows(meta.media.names)]
        face = marks.faceness[marks.rows(meta.media.names)]
        t = ref_templates(ref_image_features(raw, mode, face), meta.media.templates.tolist(), meta.media.medias.tolist())
        expected = np.array([t[a] @ t[b] for a, b in zip(meta.pairs.t1, meta.pairs.t2)])
        np.testing.assert_allclose(res.scores, expected, atol=1e-5)
        assert res.n_templates == 12 and res.n_images == len(facts["names"]) and res.n_pairs == 66
        for far in ("0.01", "0.1"):
            assert res.tar_at_far["conservative"][far]["tar"] == ref_conservative(res.scores, res.labels, float(far))


def test_missing_embedding_or_landmarks_are_named(ijb_set):
    root, facts = ijb_set
    meta = reader.read_ijb(root, "ijbc")
    emb = _fake_embeddings(facts["names"][:-1])
    with pytest.raises(InputFileError, match=rf"ijbc_face_tid_mid.txt:{len(facts['names'])}: image '{facts['names'][-1]}' has no embedding"):
        ijb.evaluate_ijb(meta, emb, ijb.TestMode())
    marks = reader.read_landmarks(meta.landmarks_path())
    marks.names[4] = "other.jpg"
    marks._index = None
    with pytest.raises(InputFileError, match=r"no landmarks for 1 images, first '5.jpg' \(listed at .*tid_mid.txt:5\)"):
        ijb.evaluate_ijb(meta, _fake_embeddings(facts["names"]), ijb.TestMode(detector=True), landmarks=marks)
    with pytest.raises(FaceverError, match="F1 N0 D0: test mode F1 needs"):
        ijb.evaluate_ijb(meta, _fake_embeddings(facts["names"], flip="none"), ijb.TestMode())


def test_cli_eval_ijb_from_embeddings_every_mode_and_one_to_n(ijb_set, tmp_path):
    root, facts = ijb_set
    emb_file = save_embeddings(tmp_path / "e.npz", facts["names"], _fake_embeddings(facts["names"]).embeddings,
                               {"flip": "concat"})
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval-ijb", str(root), "--embeddings", str(emb_file), "--mode", "all",
                                 "--one-to-n", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for mode in ijb.ALL_MODES:
        assert mode.label in result.stdout
    assert "G1" in result.stdout and "average" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["test_mode"]["label"] == "F1 N0 D0" and len(report["modes"]) == 8
    assert report["pairs"] == {"total": 66, "same": 6, "different": 60} and report["templates"] == 12
    assert set(report["tar_at_far"]) == {"insightface", "conservative"}
    assert list(report["tar_at_far"]["conservative"]) == ["1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1"]
    scores = np.load(out / "scores.npz")
    assert scores["scores_F1N1D1"].shape == (66,) and scores["template_1"].tolist() == [p[0] for p in facts["pairs"]]
    # report.json's numbers are those of the library on the saved scores.
    res = ijb.score_result("ijbc", ijb.TestMode(), scores["scores_F1N0D0"], scores["labels"], n_templates=12, n_images=1)
    assert report["auc"] == pytest.approx(res.auc) and report["tar_at_far"] == res.tar_at_far
    one = report["one_to_n"]
    assert [g["gallery"] for g in one["galleries"]] == ["G1", "G2"]
    assert one["galleries"][0]["probes"] == {"mated": 3, "non_mated": 3}
    assert one["average"]["cmc"]["rank1"] == pytest.approx(np.mean([g["cmc"]["rank1"] for g in one["galleries"]]))
    assert (out / "roc.png").read_bytes().startswith(b"\x89PNG")


def test_cli_eval_ijb_insightface_convention(ijb_set, tmp_path):
    """--convention insightface: F1 N1 D1 first (the default mode replaced), insightface's 1:N beside NIST's,
    the convention recorded; its numbers are the library's on the same features."""
    root, facts = ijb_set
    emb = _fake_embeddings(facts["names"]).embeddings
    emb_file = save_embeddings(tmp_path / "e.npz", facts["names"], emb, {"flip": "concat"})
    out = tmp_path / "out"
    result = runner.invoke(app, ["eval-ijb", str(root), "--embeddings", str(emb_file), "--convention", "insightface",
                                 "--one-to-n", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["test_mode"]["label"] == "F1 N1 D1" and list(report["modes"]) == ["F1N1D1"]
    assert report["settings"]["convention"]["name"] == "insightface"
    one = report["one_to_n"]
    assert set(one) >= {"galleries", "average", "insightface"} and "insightface" in result.stdout
    meta = reader.read_ijb(root, "ijbc")
    landmarks = reader.read_landmarks(meta.landmarks_path())
    loaded = load_embeddings(emb_file)
    feats = ijb.ijb_template_features(meta, loaded, ijb.TestMode.parse("F1N1D1"), landmarks=landmarks)
    galleries, probe_path = reader.search_files(meta.folder, "ijbc")
    expected = ijb.insightface_search(*feats, [(n, reader.read_search_set(p)) for n, p in galleries],
                                      reader.read_search_set(probe_path))
    assert one["insightface"] == json.loads(json.dumps(expected))
    # mode all: F1N1D1 first, every other mode after it
    result = runner.invoke(app, ["eval-ijb", str(root), "--embeddings", str(emb_file), "--convention", "insightface",
                                 "--mode", "all", "--json"])
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["modes"])[:2] == ["F1N1D1", "F1N0D0"]
    # facenet's scripts have no IJB protocol
    result = runner.invoke(app, ["eval-ijb", str(root), "--embeddings", str(emb_file), "--convention", "facenet"])
    assert result.exit_code == 2 and "has no ijbc protocol" in result.output


def test_cli_eval_ijb_errors(ijb_set, tmp_path):
    root, facts = ijb_set
    assert runner.invoke(app, ["eval-ijb", str(root)]).exit_code == 2
    emb_file = save_embeddings(tmp_path / "e.npz", facts["names"][1:], _fake_embeddings(facts["names"][1:]).embeddings,
                               {"flip": "concat"})
    result = runner.invoke(app, ["eval-ijb", str(root), "--embeddings", str(emb_file)])
    assert result.exit_code == 2 and "ijbc_face_tid_mid.txt:1: image '1.jpg' has no embedding" in result.output
    result = runner.invoke(app, ["eval-ijb", str(root), "--embeddings", str(emb_file), "--mode", "F1N0"])
    assert result.exit_code == 2 and "--mode: invalid test mode" in result.output


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.helpers.tiny_models import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("tiny") / "model.pt")


def test_cli_eval_ijb_with_a_model_aligns_embeds_and_resumes(ijb_set, tiny_model, tmp_path, faces_dir):
    from facever.core.images import read_image_rgb
    from facever.data_prep.align import warp_face
    from facever.data_prep.templates import template_for_size

    root, facts = ijb_set
    out = tmp_path / "out"
    args = ["eval-ijb", str(root), "--model", str(tiny_model), "--device", "cpu", "--out", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    crops = out / "crops_28x24"
    assert sorted(p.name for p in crops.iterdir() if not p.name.startswith(".")) == sorted(facts["names"])
    # The crop from the pasted canvas and its placed landmarks is the face of the original photo.
    original = _bbt_crops(faces_dir)["amy"][1]
    direct = warp_face(original, template_for_size(original.shape[:2]), (28, 24)).astype(float)
    from_canvas = read_image_rgb(crops / "1.jpg").astype(float)
    other = warp_face(_bbt_crops(faces_dir)["raj"][1], template_for_size((150, 150)), (28, 24)).astype(float)
    assert np.abs(from_canvas - direct).mean() < 12 < np.abs(from_canvas - other).mean()
    emb = load_embeddings(out / "embeddings.npz")
    assert sorted(emb.paths) == sorted(facts["names"]) and emb.dim == 32 and emb.metadata["flip"] == "concat"
    # Scoring the saved embeddings gives the same numbers; a second --model run embeds nothing again.
    again = runner.invoke(app, ["eval-ijb", str(root), "--embeddings", str(out / "embeddings.npz"), "--json"])
    assert json.loads(again.stdout)["tar_at_far"] == report["tar_at_far"]
    rerun = runner.invoke(app, args)
    assert rerun.exit_code == 0 and f"0 computed, {len(facts['names'])} reused" in rerun.output


def test_cli_eval_ijb_missing_image_or_landmarks_are_named(ijb_set, tiny_model, tmp_path):
    import shutil

    root, facts = ijb_set
    copy = tmp_path / "IJB"
    shutil.copytree(facts["folder"], copy / "IJBB")
    for f in (copy / "IJBB" / "meta").iterdir():
        f.rename(f.with_name(f.name.replace("ijbc", "ijbb").replace("_G", "_S")))
    (copy / "IJBB" / "loose_crop" / "3.jpg").unlink()
    args = ["eval-ijb", str(copy), "--set", "ijbb", "--model", str(tiny_model), "--device", "cpu", "--out",
            str(tmp_path / "o")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "ijbb_face_tid_mid.txt:3: image" in result.output and "3.jpg not found" in result.output
    pts = copy / "IJBB" / "meta" / "ijbb_name_5pts_score.txt"
    pts.write_text("".join(line for line in pts.read_text().splitlines(True) if not line.startswith("2.jpg ")))
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "no landmarks for 1 images, first '2.jpg'" in result.output


def test_cli_ensemble_on_ijbc(ijb_set, tmp_path):
    root, facts = ijb_set
    files = []
    for seed in (1, 2):
        emb = _fake_embeddings(facts["names"], seed=seed)
        files.append(save_embeddings(tmp_path / f"m{seed}.npz", emb.paths, emb.embeddings, {"flip": "concat"}))
    out = tmp_path / "ens"
    result = runner.invoke(app, ["ensemble", str(files[0]), str(files[1]), "--protocol", "ijbc", "--pairs", str(root),
                                 "--weights", "3,1", "--names", "a,b", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    meta = reader.read_ijb(root, "ijbc")
    single = [ijb.evaluate_ijb(meta, load_embeddings(f), ijb.TestMode()) for f in files]
    fused = 0.75 * single[0].scores.astype(np.float64) + 0.25 * single[1].scores
    expected = ijb.score_result("ijbc", ijb.TestMode(), fused, meta.pairs.labels, n_templates=12, n_images=1)
    assert report["models"]["a"]["tar_at_far"] == single[0].tar_at_far
    assert report["ensemble"]["auc"] == pytest.approx(expected.auc)
    assert report["ensemble"]["tar_at_far"] == expected.tar_at_far
    assert "F1 N0 D0" in result.stderr  # the title; stdout is the table, tab-separated into a pipe
    header, *rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert header[:3] == ["model", "AUC", "TAR@FAR by"] and len(header) == 3 + len(expected.tar_at_far["insightface"])
    assert [(r[0], r[2]) for r in rows] == [(n, d) for n in ("a", "b", "ensemble") for d in ("insightface", "conservative")]
    assert rows[4][1] == f"{expected.auc:.4f}"


def test_cli_ensemble_on_ijbc_with_models_embeds_like_eval_ijb(ijb_set, tiny_model, tmp_path):
    from tests.helpers.tiny_models import train_tiny_model

    root, facts = ijb_set
    second = train_tiny_model(tmp_path / "m2" / "model.pt", seed=1)
    out = tmp_path / "ens"
    result = runner.invoke(app, ["ensemble", str(tiny_model), str(second), "--protocol", "ijbc", "--pairs", str(root),
                                 "--images", str(root), "--names", "a,b", "--device", "cpu", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(load_embeddings(out / "embeddings_a.npz").paths) == sorted(facts["names"])
    single = runner.invoke(app, ["eval-ijb", str(root), "--model", str(tiny_model), "--device", "cpu", "--out",
                                 str(tmp_path / "single"), "--json"])
    assert json.loads(single.stdout)["tar_at_far"] == report["models"]["a"]["tar_at_far"]
