"""`facever enroll` / `facever identify`: templates equal the mean of normalised embeddings computed by hand,
top-k equals a brute-force search, "unknown" below the threshold, CSV/JSON out, and the bad input of the
issue: one image per person, duplicate names, a person whose images all fail, an empty gallery, a gallery
of another model."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facever.cli import app
from facever.core.embeddings_file import save_embeddings
from tests.helpers.tiny_models import direct_forward

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = (28, 24)
COMMON = ["--aligned", "--device", "cpu", "--amp", "off", "--flip", "none"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """staff/: 6 people with 1 to 4 aligned-size crops (`solo` has exactly one), plus `ghost` whose two
    files are not images; probes/: a new crop of 3 staff members; a tiny random model."""
    from tests.helpers.benchmark_data import tiny_model

    root = tmp_path_factory.mktemp("gallery")
    rng = np.random.default_rng(7)
    bases, files = {}, {}
    for i, (name, n) in enumerate([("ann", 3), ("bob", 4), ("cy", 2), ("dee", 3), ("eve", 2), ("solo", 1)]):
        bases[name] = rng.integers(0, 256, (*SIZE, 3))
        (root / "staff" / name).mkdir(parents=True)
        files[name] = []
        for j in range(n):
            img = np.clip(bases[name] + rng.normal(0, 25, bases[name].shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / "staff" / name / f"{j}.png")
            files[name].append(root / "staff" / name / f"{j}.png")
    (root / "staff" / "ghost").mkdir()
    for j in range(2):
        (root / "staff" / "ghost" / f"{j}.png").write_bytes(b"not an image")
    (root / "probes").mkdir()
    for name in ("ann", "cy", "solo"):
        img = np.clip(bases[name] + rng.normal(0, 25, bases[name].shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / "probes" / f"{name}.png")
    return {"root": root, "files": files, "model": tiny_model(root / "model.pt", input_size=SIZE)}


def _embed_by_hand(model_path, paths):
    from facever.embedding.loading import load_embedding_model

    m = load_embedding_model(model_path)
    e = direct_forward(m.module, [np.asarray(Image.open(p).convert("RGB")) for p in paths], m.mean, m.std)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def gallery(setup):
    out = setup["root"] / "gallery.npz"
    result = runner.invoke(app, ["enroll", str(setup["root"] / "staff"), "--model", str(setup["model"]),
                                 "--out", str(out), *COMMON])
    assert result.exit_code == 0, result.output
    return out, result


def test_enroll_templates_are_pooled_normalised_embeddings(setup, gallery):
    from facever.workflows.gallery import load_gallery

    out, result = gallery
    g = load_gallery(out)
    assert not (out.parent / ".gallery.partial").exists()  # the resume cache goes once the gallery is written
    assert g.names == ["ann", "bob", "cy", "dee", "eve", "solo"]
    assert g.images.tolist() == [3, 4, 2, 3, 2, 1]
    for name, t in zip(g.names, g.templates):
        unit = _embed_by_hand(setup["model"], setup["files"][name])
        mean = unit.mean(axis=0)
        np.testing.assert_allclose(t, mean / np.linalg.norm(mean), atol=2e-5)
    # the person whose images all failed is listed, not dropped in silence
    assert "ghost: not enrolled, none of their 2 images could be used" in result.stderr
    assert "1 people not enrolled" in result.stderr
    assert set(g.metadata["failed_people"]) == {"ghost"} and len(g.metadata["failed_people"]["ghost"]) == 2


def test_identify_top_k_equals_brute_force_and_unknown_below_threshold(setup, gallery, tmp_path):
    from facever.workflows.gallery import load_gallery

    out, _ = gallery
    g = load_gallery(out)
    probes = setup["root"] / "probes"
    names = sorted(p.name for p in probes.iterdir())
    sims = _embed_by_hand(setup["model"], [probes / n for n in names]) @ g.templates.T
    threshold = float(np.median(sims.max(axis=1)))  # some probes above, some below
    csv_out = tmp_path / "answers.csv"
    result = runner.invoke(app, ["identify", str(probes), "--gallery", str(out), "--top", "3", "--threshold",
                                 f"{threshold}", "--out", str(csv_out), "--json", *COMMON[:-2]])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["gallery_people"], data["k"], data["backend"], data["flip"]) == (6, 3, "numpy", "none")
    rows = data["photos"]
    assert [r["photo"] for r in rows] == [str(probes / n) for n in names]
    for row, s in zip(rows, sims):
        order = np.argsort(-s, kind="stable")[:3]
        assert [m["person"] for m in row["matches"]] == [g.names[i] for i in order]
        np.testing.assert_allclose([m["cosine"] for m in row["matches"]], s[order], atol=2e-5)
        assert row["decision"] == (g.names[order[0]] if s[order[0]] > threshold else "unknown")
    assert {r["decision"] for r in rows} & {"unknown"}
    with open(csv_out, newline="") as f:
        table = list(csv.DictReader(f))
    assert [t["decision"] for t in table] == [r["decision"] for r in rows]
    assert [t["person_1"] for t in table] == [r["matches"][0]["person"] for r in rows]
    assert float(table[0]["cosine_2"]) == pytest.approx(rows[0]["matches"][1]["cosine"], abs=1e-6)
    # no threshold: the best people, no decision
    plain = runner.invoke(app, ["identify", str(probes / "ann.png"), "--gallery", str(out), "--json", *COMMON[:-2]])
    assert json.loads(plain.stdout)["photos"][0]["decision"] is None
    assert "no threshold" in plain.stderr


def test_identify_with_faiss_gives_the_same_answers(setup, gallery):
    pytest.importorskip("faiss", reason="faiss-cpu is an optional extra (pip install 'facever[faiss]')")
    out, _ = gallery
    args = ["identify", str(setup["root"] / "probes"), "--gallery", str(out), "--json", *COMMON[:-2]]
    a = json.loads(runner.invoke(app, args).stdout)["photos"]
    b = json.loads(runner.invoke(app, args + ["--backend", "faiss"]).stdout)["photos"]
    assert [[m["person"] for m in r["matches"]] for r in a] == [[m["person"] for m in r["matches"]] for r in b]


def test_identify_at_a_calibrated_far_states_the_open_set_bound(setup, gallery, tmp_path):
    from facever.verification import calibration as cal
    from facever.verification.report import write_json

    out, _ = gallery
    rng = np.random.default_rng(0)
    s = np.r_[rng.normal(0, 0.1, 400), rng.normal(0.6, 0.1, 100)]
    points = cal.thresholds_at_far(s, np.r_[np.zeros(400, bool), np.ones(100, bool)], [0.01])
    from facever.core.checksums import file_digest

    record = cal.Calibration(points=points, refused=[], confidence=0.95, pairs={"total": 500, "same": 100,
                             "different": 400, "source": "x"}, model={"model_sha256": file_digest(setup["model"]),
                             "flip": "none"}, created="2026-12-07T00:00:00+00:00")
    write_json(tmp_path / "c.json", record.to_dict())
    result = runner.invoke(app, ["identify", str(setup["root"] / "probes"), "--gallery", str(out), "--far", "0.01",
                                 "--calibration", str(tmp_path / "c.json"), "--json", *COMMON[:-2]])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["threshold"] == points[0].threshold
    bound = min(1.0, 6 * points[0].far_bound)
    assert f"matched to one of the 6 people with probability <= {bound:.3g}" in result.stderr


def test_duplicate_names_are_refused(setup, tmp_path):
    other = tmp_path / "more" / "ANN"  # the same person as staff/ann, by case
    other.mkdir(parents=True)
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(other / "0.png")
    out = tmp_path / "g.npz"
    result = runner.invoke(app, ["enroll", str(setup["root"] / "staff"), str(tmp_path / "more"), "--model",
                                 str(setup["model"]), "--out", str(out), *COMMON])
    assert result.exit_code == 2 and "person 'ANN' is enrolled twice" in result.output
    assert not out.exists()


def test_nobody_enrollable_and_empty_or_foreign_galleries_are_refused(setup, tmp_path):
    (tmp_path / "bad" / "x").mkdir(parents=True)
    (tmp_path / "bad" / "x" / "0.png").write_bytes(b"nope")
    nobody = runner.invoke(app, ["enroll", str(tmp_path / "bad"), "--model", str(setup["model"]),
                                 "--out", str(tmp_path / "g.npz"), *COMMON])
    assert nobody.exit_code == 2 and "nobody could be enrolled" in nobody.output
    assert not (tmp_path / "g.npz").exists()

    empty = tmp_path / "empty.npz"
    save_embeddings(empty, [], np.zeros((0, 16), np.float32), {"kind": "facever-gallery", "images_per_person": []})
    probe = setup["root"] / "probes" / "ann.png"
    r = runner.invoke(app, ["identify", str(probe), "--gallery", str(empty), "--model", str(setup["model"]), *COMMON])
    assert r.exit_code == 2 and "empty.npz" in r.output and "holds no embeddings" in r.output

    images = tmp_path / "images.npz"
    save_embeddings(images, ["a.png"], np.ones((1, 16), np.float32), {})
    r = runner.invoke(app, ["identify", str(probe), "--gallery", str(images), "--model", str(setup["model"]), *COMMON])
    assert r.exit_code == 2 and "not a gallery" in r.output


def test_identify_with_another_model_is_refused(setup, gallery, tmp_path):
    from tests.helpers.benchmark_data import tiny_model

    out, _ = gallery
    other = tiny_model(tmp_path / "other.pt", input_size=SIZE, seed=9)
    r = runner.invoke(app, ["identify", str(setup["root"] / "probes"), "--gallery", str(out), "--model", str(other),
                            *COMMON])
    assert r.exit_code == 2 and "enrolled with another model" in r.output


def test_identify_lists_photos_that_cannot_be_read(setup, gallery, tmp_path):
    out, _ = gallery
    (tmp_path / "broken.png").write_bytes(b"xx")
    r = runner.invoke(app, ["identify", str(setup["root"] / "probes" / "ann.png"), str(tmp_path / "broken.png"),
                            "--gallery", str(out), "--json", *COMMON[:-2]])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["photos"]
    assert rows[0]["error"] is None and rows[1]["error"] and rows[1]["matches"] == []


def test_enroll_raw_photos_lists_a_person_whose_photos_have_no_face(faces_dir, tmp_path):
    """Real photos, aligned with MTCNN: two bbt people enrol; `wall`, whose photos are flat grey, is listed."""
    from tests.helpers.benchmark_data import tiny_model

    staff = tmp_path / "staff"
    for name in ("amy", "howard"):
        (staff / name).mkdir(parents=True)
        for src in sorted((faces_dir / "bbt" / name).glob("*.png"))[:2]:
            (staff / name / src.name).write_bytes(src.read_bytes())
    (staff / "wall").mkdir()
    for j in range(2):
        Image.fromarray(np.full((120, 100, 3), 128, np.uint8)).save(staff / "wall" / f"{j}.png")
    model = tiny_model(tmp_path / "m.pt", input_size=(112, 96))
    out = tmp_path / "g.npz"
    r = runner.invoke(app, ["enroll", str(staff), "--model", str(model), "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "wall: not enrolled, none of their 2 images could be used" in r.stderr and "no face" in r.stderr
    from facever.workflows.gallery import load_gallery

    assert load_gallery(out).names == ["amy", "howard"]


def test_outputs_never_overwrite_inputs(setup, gallery, tmp_path):
    photo = setup["root"] / "staff" / "ann" / "0.png"
    before = photo.read_bytes()
    r = runner.invoke(app, ["enroll", str(setup["root"] / "staff"), "--model", str(setup["model"]), "--out", str(photo),
                            *COMMON])
    assert r.exit_code == 2 and "is also an input" in r.output and photo.read_bytes() == before
    out, _ = gallery
    kept = out.read_bytes()
    r = runner.invoke(app, ["identify", str(setup["root"] / "probes"), "--gallery", str(out), "--out", str(out),
                            *COMMON[:-2]])
    assert r.exit_code == 2 and ("is also an input" in r.output or ".csv or a .json" in r.output)
    assert out.read_bytes() == kept
