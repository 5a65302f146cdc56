"""The one embedding cache (`facever.embedding.cache`): content-keyed, sharded, never stale.

Rows are reused only when the image's bytes and every setting that changes an embedding are the same; a
changed image (same name, even with its old mtime) or setting is embedded again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facever.embedding.cache import EmbeddingCache, cache_settings, embed_items_cached
from facever.embedding.sources import file_key
from facever.embedding.extract import embed_images
from facever.embedding.loading import load_embedding_model
from tests.helpers.benchmark_data import tiny_model


@pytest.fixture
def tiny(tmp_path) -> dict:
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    rels = []
    for person in ("ann", "bob", "cy"):
        (root / person).mkdir(parents=True)
        for k in range(4):
            rel = f"{person}/{k}.png"
            Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(root / rel)
            rels.append(rel)
    model = load_embedding_model(tiny_model(tmp_path / "model.pt", input_size=(24, 20)))
    return {"root": root, "rels": rels, "model": model, "cache": tmp_path / "cache"}


def _run(tiny, **kw):
    plan = {}
    emb, bad, reused = embed_items_cached(
        tiny["model"], tiny["root"], tiny["rels"], cache=tiny["cache"], workers=0, device="cpu",
        on_plan=lambda done, todo: plan.update(done=done, todo=todo), **{"amp": "off", **kw},
    )
    return emb, reused, plan


def test_a_second_run_reuses_every_row_and_gives_the_same_numbers(tiny):
    first, reused, plan = _run(tiny, chunk_size=5)
    assert reused == 0 and plan == {"done": 0, "todo": 12}
    assert len(list(Path(first.metadata["cache"]).glob("shard-*.npz"))) == 3  # 5 + 5 + 2
    second, reused, plan = _run(tiny)
    assert reused == 12 and plan == {"done": 12, "todo": 0} and second.metadata["reused"] == 12
    assert second.paths == first.paths
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    direct = embed_images(tiny["model"], tiny["root"], tiny["rels"], workers=0, amp="off")[0]
    np.testing.assert_allclose(second.embeddings, direct.embeddings, rtol=1e-5, atol=1e-6)


def test_an_image_changed_in_place_is_embedded_again(tiny):
    first, _, _ = _run(tiny)
    target = tiny["root"] / tiny["rels"][4]
    stat = target.stat()
    # Same name, same size, same mtime: only the bytes tell (a re-alignment written over the old crops).
    pixels = np.asarray(Image.open(target))
    Image.fromarray(255 - pixels).save(target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second, reused, plan = _run(tiny)
    assert reused == 11 and plan == {"done": 11, "todo": 1}
    changed = second.paths.index(tiny["rels"][4])
    assert not np.allclose(second.embeddings[changed], first.embeddings[changed], atol=1e-3)
    direct = embed_images(tiny["model"], tiny["root"], [tiny["rels"][4]], workers=0, amp="off")[0]
    np.testing.assert_allclose(second.embeddings[changed], direct.embeddings[0], rtol=1e-5, atol=1e-6)
    others = [i for i in range(12) if i != changed]
    np.testing.assert_array_equal(second.embeddings[others], first.embeddings[others])


@pytest.mark.parametrize("change", [{"amp": "bf16"}, {"flip": "sum"}, {"flip": "none"}])
def test_another_precision_or_flip_is_not_reused(tiny, change):
    first, _, _ = _run(tiny)  # the default flip, concat: f(x) then f(mirror x)
    other, reused, plan = _run(tiny, **change)
    assert reused == 0 and plan["todo"] == 12
    if other.dim == first.dim:
        assert not np.allclose(other.embeddings, first.embeddings, atol=1e-4)
    else:  # computed afresh from concat's halves f(x), f(mirror x): none is the first, sum both added
        plain, mirrored = first.embeddings[:, :other.dim], first.embeddings[:, other.dim:]
        want = plain if change["flip"] == "none" else plain + mirrored
        assert 2 * other.dim == first.dim and other.metadata["flip"] == change["flip"]
        np.testing.assert_allclose(other.embeddings, want, rtol=1e-5, atol=1e-5)
    # and the first settings are still there, untouched
    again, reused, _ = _run(tiny)
    assert reused == 12
    np.testing.assert_array_equal(again.embeddings, first.embeddings)


def test_another_model_file_is_not_reused(tiny, tmp_path):
    _run(tiny)
    tiny2 = {**tiny, "model": load_embedding_model(tiny_model(tmp_path / "other.pt", input_size=(24, 20), seed=1))}
    _, reused, _ = _run(tiny2)
    assert reused == 0


def test_a_renamed_file_is_reused_by_content(tiny):
    first, _, _ = _run(tiny)
    (tiny["root"] / "ann" / "0.png").rename(tiny["root"] / "ann" / "renamed.png")
    rels = ["ann/renamed.png", *tiny["rels"][1:]]
    emb, _, reused = embed_items_cached(tiny["model"], tiny["root"], rels, cache=tiny["cache"], workers=0,
                                        device="cpu", amp="off")
    assert reused == 12
    np.testing.assert_array_equal(emb.embeddings, first.embeddings)


def test_settings_and_keys_say_what_they_stand_for(tiny):
    settings = cache_settings(tiny["model"], flip="none", amp="off", device_type="cpu")
    assert settings["model_sha256"] == tiny["model"].fingerprint and settings["amp"] == "off"
    assert settings["crop_policy"] and "24x20" in settings["preprocessing"]
    assert EmbeddingCache(tiny["cache"], settings).folder != EmbeddingCache(tiny["cache"], {**settings, "amp": "bf16"}).folder
    key, mtime = file_key(tiny["root"] / tiny["rels"][0])
    assert key.split("-")[0] == str((tiny["root"] / tiny["rels"][0]).stat().st_size) and mtime > 0
    assert file_key(tiny["root"] / "missing.png") is None


def test_eval_lfw_after_images_change_in_place_prints_what_a_clean_run_prints(tmp_path):
    """Issue 11's case: images re-made in place under the same names; the cached run must not differ from a clean one."""
    import json
    import shutil

    from typer.testing import CliRunner

    from facever.cli import app
    from tests.helpers.tiny_models import make_lfw_tree, make_pairs_file, train_tiny_model

    model = train_tiny_model(tmp_path / "run" / "model.pt")
    images = tmp_path / "lfw"
    make_lfw_tree(images)
    pairs = make_pairs_file(tmp_path / "pairs.txt")

    def eval_lfw(out):
        r = CliRunner().invoke(app, ["eval-lfw", "--pairs", str(pairs), "--ext", ".png", "--model", str(model),
                                     "--images", str(images), "--device", "cpu", "--out", str(out), "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout), r.stderr

    before, _ = eval_lfw(tmp_path / "out")
    # "Re-align" half of the people in place: same names, other pixels (mirrored crops).
    for person in sorted(p for p in images.iterdir() if p.is_dir())[::2]:
        for f in person.iterdir():
            stat = f.stat()
            Image.fromarray(np.ascontiguousarray(np.asarray(Image.open(f))[:, ::-1])).save(f)
            os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    cached, log = eval_lfw(tmp_path / "out")
    shutil.rmtree(tmp_path / "clean", ignore_errors=True)
    clean, _ = eval_lfw(tmp_path / "clean")
    assert "reused" in log  # the unchanged half came from the cache
    assert cached["auc"] == clean["auc"] and cached["accuracy"] == clean["accuracy"]
    assert cached["auc"] != before["auc"]  # the images did change the number


def _embed_bin(tiny, blobs, **kw):
    """Images held in memory (a `.bin`'s) through the one cached loop, named as `bin_protocol` names them."""
    from facever.embedding.sources import ImageBytes
    from facever.protocols.insightface_bin import image_names

    names = image_names(len(blobs))
    emb, bad, reused = embed_items_cached(tiny["model"], ImageBytes(blobs, names, source="set.bin"), names,
                                          workers=0, amp="off", **kw)
    assert emb.paths == names and emb.metadata["reused"] == reused
    return emb


def test_bin_images_are_cached_by_their_bytes(tiny):
    blobs = [(tiny["root"] / r).read_bytes() for r in tiny["rels"]]
    first = _embed_bin(tiny, blobs, cache=tiny["cache"])
    assert first.metadata["reused"] == 0
    direct = _embed_bin(tiny, blobs, cache=None)
    np.testing.assert_array_equal(first.embeddings, direct.embeddings)
    again = _embed_bin(tiny, blobs, cache=tiny["cache"])
    assert again.metadata["reused"] == 12
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    # Another .bin where image 3 holds image 7's bytes: nothing to embed, its row comes by content.
    blobs[3] = blobs[7]
    changed = _embed_bin(tiny, blobs, cache=tiny["cache"])
    assert changed.metadata["reused"] == 12
    np.testing.assert_array_equal(changed.embeddings[3], first.embeddings[7])
    flipped = _embed_bin(tiny, blobs, cache=tiny["cache"], flip="sum")
    assert flipped.metadata["reused"] == 0


def test_images_in_memory_and_on_disk_are_one_cache(tiny):
    """The same bytes in a `.bin` and in a file are the same cache row (one key: the content), and give the
    same embedding as `embed_images` on the files."""
    blobs = [(tiny["root"] / r).read_bytes() for r in tiny["rels"]]
    files, _, _ = embed_items_cached(tiny["model"], tiny["root"], tiny["rels"], cache=tiny["cache"], workers=0,
                                     amp="off")
    from_bin = _embed_bin(tiny, blobs, cache=tiny["cache"])
    assert from_bin.metadata["reused"] == 12
    np.testing.assert_array_equal(from_bin.embeddings, files.embeddings)
    uncached, _ = embed_images(tiny["model"], tiny["root"], tiny["rels"], workers=0, amp="off")
    np.testing.assert_array_equal(files.embeddings, uncached.embeddings)


def test_a_refused_request_without_keep_partial_writes_nothing(tiny):
    from facever.embedding.extract import BadImagesError

    blobs = [(tiny["root"] / r).read_bytes() for r in tiny["rels"]]
    blobs[5] = b"junk"
    with pytest.raises(BadImagesError, match=r"000005 \(not an image"):
        _embed_bin(tiny, blobs, cache=tiny["cache"], keep_partial=False)
    assert not tiny["cache"].exists()
    with pytest.raises(BadImagesError):  # the default keeps the good rows for the rerun
        _embed_bin(tiny, blobs, cache=tiny["cache"])
    assert sorted(p.name for p in tiny["cache"].rglob("shard-*.npz")) == ["shard-00000.npz"]
