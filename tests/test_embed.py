"""Embedding extraction: model loading (facever model.pt, facenet-pytorch weights), preprocessing, flip
fusion, bad images, `facever embed` and `facever eval-lfw --model` end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from facever.cli import app
from facever.embedding.extract import BadImagesError, NoImageEmbeddedError, embed_images, forward_with_flip
from facever.embedding.loading import FACENET_WEIGHTS, load_embedding_model
from facever.embedding.preprocess import normalize_batch
from facever.core.embeddings_file import load_embeddings
from facever.core.errors import FaceverError, InputFileError
from tests.helpers.references import hand_verification, plain_model_input
from tests.helpers.tiny_models import (
    PEOPLE, TINY_SIZE, direct_forward, make_lfw_tree, make_pairs_file, read_rgb, train_tiny_model,
)

runner = CliRunner()

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    model_path = train_tiny_model(root / "run" / "model.pt")
    rels = make_lfw_tree(root / "lfw")
    pairs = make_pairs_file(root / "pairs.txt")
    return {"model": model_path, "images": root / "lfw", "rels": rels, "pairs": pairs}


# ----------------------------------------------------------------------------------------------------
# Model loading


def test_facever_model_loads_with_its_preprocessing(tiny):
    model = load_embedding_model(tiny["model"])
    assert model.input_size == TINY_SIZE
    assert model.mean == pytest.approx((0.5, 0.4, 0.3)) and model.std == pytest.approx((0.25, 0.5, 0.2))
    assert model.model_id == "facever:sphere20" and model.color == "RGB"
    assert len(model.fingerprint) == 64
    # The run folder works as well as the file.
    assert load_embedding_model(tiny["model"].parent).fingerprint == model.fingerprint
    meta = model.metadata()
    assert meta["input_size"] == [28, 24] and meta["model_step"] == 3


def test_missing_model_and_unknown_facenet_name_are_clear_errors(tmp_path):
    with pytest.raises(FaceverError, match="no such model file"):
        load_embedding_model(tmp_path / "nope.pt")
    with pytest.raises(FaceverError, match="known: facenet:vggface2, facenet:casia-webface"):
        load_embedding_model("facenet:vgg")
    with pytest.raises(FaceverError, match="separate weights apply to facenet"):
        load_embedding_model(tmp_path / "nope.pt", weights=tmp_path / "w.pt")


@pytest.fixture(scope="module")
def facenet_weights(tmp_path_factory):
    """A facenet-pytorch InceptionResnetV1 state dict as its release files hold it (with `logits.*`)."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(1)
    net = InceptionResnetV1(pretrained=None, classify=True, num_classes=7).eval()
    # Non-trivial batch-norm statistics, so a loading mistake cannot go unnoticed.
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("facenet") / "weights.pt"
    torch.save(net.state_dict(), path)
    return path, net


def test_facenet_weights_load_and_match_facenet_pytorch(facenet_weights, faces_dir):
    from facenet_pytorch import InceptionResnetV1, fixed_image_standardization

    path, trained = facenet_weights
    model = load_embedding_model("facenet:vggface2", weights=path)
    assert model.input_size == (160, 160) and model.model_id == "facenet:vggface2"
    root = faces_dir / "facenet_pytorch" / "test_images_aligned"
    rels = ["angelina_jolie/1.png"]
    emb, bad = embed_images(model, root, rels, batch_size=2, workers=0, amp="off", flip="none")
    assert not bad and emb.paths == rels

    # What a facenet-pytorch user computes: their module with these weights, their standardisation.
    reference = InceptionResnetV1(pretrained=None, classify=False).eval()
    reference.load_state_dict({k: v for k, v in trained.state_dict().items() if not k.startswith("logits.")})
    x = torch.stack([torch.from_numpy(read_rgb(root / r).copy()).permute(2, 0, 1).float() for r in rels])
    with torch.no_grad():
        expected = reference(fixed_image_standardization(x)).numpy()
    np.testing.assert_allclose(emb.embeddings, expected, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(emb.embeddings, axis=1), 1.0, atol=1e-5)
    # Batch norms folded into the convolutions: same embeddings, and the loaded module is left as it was.
    folded = embed_images(model, root, rels, workers=0, fuse_bn=True, amp="off", flip="none")[0]
    np.testing.assert_allclose(folded.embeddings, expected, atol=2e-5)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.module.modules())


def test_facenet_weights_from_cache_folder_and_inline_spec(facenet_weights, tmp_path, monkeypatch):
    path, _ = facenet_weights
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("FACEVER_OFFLINE", "1")
    cached = tmp_path / "th" / "checkpoints" / FACENET_WEIGHTS["casia-webface"][0]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    model = load_embedding_model("facenet:casia-webface")
    assert model.source == str(cached.resolve())
    inline = load_embedding_model(f"facenet:vggface2={path}")
    assert inline.fingerprint == model.fingerprint


def test_facenet_offline_without_weights_says_which_file_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("FACEVER_OFFLINE", "1")
    folder = tmp_path / "th" / "checkpoints"
    with pytest.raises(FaceverError) as info:
        load_embedding_model("facenet:vggface2")
    message = str(info.value)
    assert "20180402-114759-vggface2.pt" in message and f"{folder}/" in message and "`weights`" in message
    # The same pull as the registry's name: facever's own cache is the first place offered.
    own = Path(os.environ["FACEVER_HOME"]) / "models" / "facenet-vggface2" / "20180402-114759-vggface2.pt"
    assert f"put it at {own}" in message and "\n" not in message


def test_facenet_rejects_weights_of_another_model(tiny, tmp_path):
    wrong = tmp_path / "wrong.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(InputFileError, match="wrong.pt"):
        load_embedding_model("facenet:vggface2", weights=wrong)
    with pytest.raises(InputFileError, match="wrong.pt"):
        torch.save({"fc.weight": torch.zeros(3, 3), "x": {"nested": 1}}, wrong)
        load_embedding_model("facenet:vggface2", weights=wrong)


# ----------------------------------------------------------------------------------------------------
# Preprocessing and extraction


def test_normalize_batch_against_hand_computation_and_bgr():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    x = normalize_batch(torch.from_numpy(pixels), mean=mean, std=std).numpy()
    expected = ((pixels / 255.0 - np.array(mean)) / np.array(std)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-5)
    bgr = normalize_batch(torch.from_numpy(pixels), mean=mean, std=std, color="BGR").numpy()
    expected_bgr = ((pixels[..., ::-1] / 255.0 - np.array(mean)) / np.array(std)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(bgr, expected_bgr, rtol=1e-6, atol=1e-5)


def test_embeddings_match_direct_forward_and_are_deterministic(tiny):
    model = load_embedding_model(tiny["model"])
    rels = tiny["rels"]
    crops = [read_rgb(tiny["images"] / r) for r in rels]
    expected = direct_forward(model.module, crops, model.mean, model.std)
    runs = [
        embed_images(model, tiny["images"], rels, batch_size=4, workers=0, amp="off", flip="none")[0],
        embed_images(model, tiny["images"], rels, batch_size=7, workers=1, amp="off", flip="none")[0],
        embed_images(model, tiny["images"], rels, batch_size=5, workers=0, channels_last=False, amp="off", flip="none")[0],
    ]
    for emb in runs:
        assert emb.paths == rels and emb.embeddings.dtype == np.float32 and emb.dim == 16
        np.testing.assert_allclose(emb.embeddings, expected, rtol=1e-4, atol=1e-5)
    # Same settings, same numbers.
    again = embed_images(model, tiny["images"], rels, batch_size=4, workers=0, amp="off", flip="none")[0]
    np.testing.assert_array_equal(again.embeddings, runs[0].embeddings)
    meta = runs[0].metadata
    assert meta["flip"] == "none" and meta["crop_size"] == [28, 24] and meta["model"] == "facever:sphere20"
    assert "pixels/255" in meta["preprocessing"] and meta["model_sha256"] == model.fingerprint


def test_flip_modes_against_hand_computation(tiny):
    model = load_embedding_model(tiny["model"])
    rels = tiny["rels"][:5]
    crops = [read_rgb(tiny["images"] / r) for r in rels]
    plain = direct_forward(model.module, crops, model.mean, model.std)
    mirrored = direct_forward(model.module, [c[:, ::-1] for c in crops], model.mean, model.std)
    assert not np.allclose(plain, mirrored, atol=1e-3)  # the flip must matter for the test to mean anything
    concat = embed_images(model, tiny["images"], rels, flip="concat", workers=0, amp="off")[0]
    summed = embed_images(model, tiny["images"], rels, flip="sum", workers=0, amp="off")[0]
    np.testing.assert_allclose(concat.embeddings, np.concatenate([plain, mirrored], axis=1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(summed.embeddings, plain + mirrored, rtol=1e-4, atol=1e-5)
    assert concat.metadata["flip"] == "concat" and summed.metadata["flip"] == "sum"
    with pytest.raises(ValueError, match="`flip` must be one of none, concat, sum, got 'mean'"):
        forward_with_flip(model.module, torch.zeros(1, 3, *TINY_SIZE), "mean")
    with pytest.raises(FaceverError, match="`flip` must be one of"):
        embed_images(model, tiny["images"], rels, flip="mean")


def test_other_sizes_are_fitted_and_an_aspect_change_is_warned_once(tiny, tmp_path, caplog):
    model = load_embedding_model(tiny["model"])
    src = read_rgb(tiny["images"] / tiny["rels"][0])
    Image.fromarray(np.repeat(np.repeat(src, 2, 0), 2, 1)).save(tmp_path / "double.png")  # same aspect
    Image.fromarray(np.zeros((30, 30, 3), np.uint8) + 90).save(tmp_path / "square1.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8) + 30).save(tmp_path / "square2.png")
    with caplog.at_level(logging.WARNING, logger="facever"):
        emb, _ = embed_images(model, tmp_path, ["double.png", "square1.png", "square2.png"], workers=0, amp="off", flip="none")
    stretch = [r for r in caplog.records if "aspect ratio differs" in r.getMessage()]
    assert len(stretch) == 1 and "square1.png" in stretch[0].getMessage()
    assert emb.metadata["resized_images"] == 3 and emb.metadata["aspect_mismatch_images"] == 2
    # The pipeline fits crops by the crop policy: the same as the model's input written out by hand.
    x = plain_model_input([read_rgb(tmp_path / "double.png")], model)
    with torch.no_grad():
        np.testing.assert_allclose(model.module(x).numpy(), emb.embeddings[:1], rtol=1e-4, atol=1e-5)


def test_bad_images_are_listed_and_fail_unless_skipped(tiny, tmp_path):
    model = load_embedding_model(tiny["model"])
    good = tiny["rels"][:3]
    root = tiny["images"]
    bad_root = tmp_path / "imgs"
    for rel in good:
        (bad_root / rel).parent.mkdir(parents=True, exist_ok=True)
        (bad_root / rel).write_bytes((root / rel).read_bytes())
    (bad_root / "broken.png").write_bytes((root / good[0]).read_bytes()[:60])  # truncated
    (bad_root / "notes.jpg").write_text("not an image")
    rels = good + ["broken.png", "notes.jpg", "missing.png"]
    with pytest.raises(BadImagesError) as info:
        embed_images(model, bad_root, rels, batch_size=2, workers=0)
    assert sorted(b.path for b in info.value.bad) == ["broken.png", "missing.png", "notes.jpg"]
    assert "3 of 6 images" in str(info.value)
    emb, bad = embed_images(model, bad_root, rels, batch_size=2, workers=1, skip_bad=True)
    assert emb.paths == good and [b.path for b in bad] == ["broken.png", "missing.png", "notes.jpg"]
    assert emb.metadata["bad_images"] == 3
    # Nothing embeddable: an error that still lists every file, with or without skip_bad.
    with pytest.raises(NoImageEmbeddedError, match="no image could be embedded") as info:
        embed_images(model, bad_root, ["broken.png", "notes.jpg"], workers=0, skip_bad=True)
    assert [b.path for b in info.value.bad] == ["broken.png", "notes.jpg"]
    # Chunked (resumable) embedding: a chunk of bad images only does not stop the next chunk.
    from facever.embedding.cache import embed_items_cached

    emb, bad, _ = embed_items_cached(model, bad_root, ["broken.png", "notes.jpg"] + good, cache=tmp_path / "c",
                                     chunk_size=2, workers=0, device="cpu", skip_bad=True)
    assert emb.paths == good and len(bad) == 2
    # The cache remembers the bad bytes too: a rerun embeds nothing and lists the same failures.
    again, bad2, reused = embed_items_cached(model, bad_root, ["broken.png", "notes.jpg"] + good, cache=tmp_path / "c",
                                             chunk_size=2, workers=0, device="cpu", skip_bad=True,
                                             progress=lambda n: pytest.fail("embedded again"))
    assert again.paths == good and reused == len(good) and bad2 == bad


def test_progress_counts_every_image(tiny):
    model = load_embedding_model(tiny["model"])
    seen = []
    embed_images(model, tiny["images"], tiny["rels"], batch_size=4, workers=0, progress=seen.append)
    assert sum(seen) == len(tiny["rels"])


def test_bf16_autocast_on_cpu_stays_close_and_returns_float32(tiny):
    """bf16 is opt-in on a CPU (the default `auto` is float32 there, whatever the CPU); the float32
    tests above pass amp="off" anyway."""
    model = load_embedding_model(tiny["model"])
    rels = tiny["rels"][:4]
    fp32 = embed_images(model, tiny["images"], rels, workers=0, amp="off")[0]
    bf16 = embed_images(model, tiny["images"], rels, workers=0, amp="bf16")[0]
    assert bf16.embeddings.dtype == np.float32 and bf16.metadata["amp"] == "bf16"
    cos = np.sum(fp32.embeddings * bf16.embeddings, 1) / (
        np.linalg.norm(fp32.embeddings, axis=1) * np.linalg.norm(bf16.embeddings, axis=1))
    assert np.all(cos > 0.99)
    default = embed_images(model, tiny["images"], rels, workers=0)[0]
    assert default.metadata["amp"] == "off"
    np.testing.assert_array_equal(default.embeddings, fp32.embeddings)


# ----------------------------------------------------------------------------------------------------
# Raw photos through the aligner


@pytest.mark.slow
def test_raw_photos_through_align(tiny, faces_dir, tmp_path):
    from facever.data_prep.align import FaceAligner

    model = load_embedding_model(tiny["model"])
    # Small real photos (MTCNN on CPU costs about a second per megapixel): two LFW originals and one more.
    root = faces_dir
    rels = ["lfw_sample/Anthony_Hopkins/Anthony_Hopkins_0001.jpg", "lfw_sample/Anthony_Hopkins/Anthony_Hopkins_0002.jpg",
            "knn/train/kit_harington/john2.jpeg"]
    assert all((root / r).is_file() for r in rels)
    aligner = FaceAligner(size=model.input_size, select="largest")
    emb, bad = embed_images(model, root, rels, workers=0, align=aligner, amp="off", flip="none")
    assert emb.paths == rels and not bad
    assert emb.metadata["aligned_here"] and emb.metadata["aligner"]["size"] == [28, 24]
    # Same crops, aligned by hand, then the plain forward pass.
    crops = [aligner.align(read_rgb(root / r)).crops[0] for r in rels]
    np.testing.assert_allclose(emb.embeddings, direct_forward(model.module, crops, model.mean, model.std),
                               rtol=1e-4, atol=1e-5)

    # A photo without a face is a bad image; the CLI lists it and fails unless --skip-bad.
    photos = tmp_path / "photos"
    photos.mkdir()
    for r in rels[:2]:
        (photos / r.replace("/", "_")).write_bytes((root / r).read_bytes())
    Image.fromarray(np.full((120, 100, 3), 128, np.uint8)).save(photos / "wall.jpg")
    out = tmp_path / "photos.npz"
    result = runner.invoke(app, ["embed", str(tiny["model"]), str(photos), "--out", str(out), "--align"])
    assert result.exit_code == 2 and "wall.jpg" in result.output and not out.exists()
    result = runner.invoke(app, ["embed", str(tiny["model"]), str(photos), "--out", str(out), "--align", "--skip-bad"])
    assert result.exit_code == 0, result.output
    saved = load_embeddings(out)
    assert len(saved) == 2 and saved.metadata["bad"] == [{"path": "wall.jpg", "reason": "no face found"}]


# ----------------------------------------------------------------------------------------------------
# CLI


def test_cli_embed_folder_and_list_file(tiny, tmp_path):
    out = tmp_path / "emb.npz"
    result = runner.invoke(app, ["embed", str(tiny["model"]), str(tiny["images"]), "--out", str(out),
                                 "--flip", "concat", "--batch-size", "5", "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    emb = load_embeddings(out)
    assert emb.paths == tiny["rels"] and emb.dim == 32
    assert emb.metadata["flip"] == "concat" and emb.metadata["model"] == "facever:sphere20"
    model = load_embedding_model(tiny["model"])
    direct = embed_images(model, tiny["images"], tiny["rels"], flip="concat", workers=0)[0]
    np.testing.assert_allclose(emb.embeddings, direct.embeddings, rtol=1e-5, atol=1e-6)

    listing = tiny["images"] / "subset.txt"
    listing.write_text("# two images\n" + "\n".join(tiny["rels"][:2]) + "\n")
    try:
        out2 = tmp_path / "subset.npz"
        result = runner.invoke(app, ["embed", str(tiny["model"]), str(listing), "--out", str(out2), "--workers", "0"])
        assert result.exit_code == 0, result.output
        assert load_embeddings(out2).paths == tiny["rels"][:2]
    finally:
        listing.unlink()


def test_cli_embed_resumes_an_interrupted_run(tiny, tmp_path):
    from facever.embedding.cache import embed_items_cached

    model = load_embedding_model(tiny["model"])
    out = tmp_path / "emb.npz"
    partial = tmp_path / ".emb.partial"
    seen = []

    def interrupt(n):
        seen.append(n)
        if sum(seen) > 8:
            raise KeyboardInterrupt

    # The same call `facever embed` makes, stopped by Ctrl-C in the third chunk of four images.
    with pytest.raises(KeyboardInterrupt):
        embed_items_cached(model, tiny["images"], tiny["rels"], cache=partial, chunk_size=4, batch_size=2,
                           workers=0, device="cpu", progress=interrupt)
    assert len(list(partial.rglob("shard-*.npz"))) == 2 and not out.exists()
    result = runner.invoke(app, ["embed", str(tiny["model"]), str(tiny["images"]), "--out", str(out),
                                 "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "resumed: 8 embeddings" in result.output and not partial.exists()
    emb = load_embeddings(out)
    direct = embed_images(model, tiny["images"], tiny["rels"], workers=0)[0]
    assert emb.paths == tiny["rels"] and "cache" not in emb.metadata
    np.testing.assert_allclose(emb.embeddings, direct.embeddings, rtol=1e-5, atol=1e-6)


def test_cli_embed_bad_images(tiny, tmp_path):
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    (root / "a" / "ok.png").write_bytes((tiny["images"] / tiny["rels"][0]).read_bytes())
    (root / "a" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "e.npz"
    result = runner.invoke(app, ["embed", str(tiny["model"]), str(root), "--out", str(out), "--workers", "0"])
    assert result.exit_code == 2 and "a/bad.png" in result.output and "--skip-bad" in result.output
    assert not out.exists()
    result = runner.invoke(app, ["embed", str(tiny["model"]), str(root), "--out", str(out), "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert "resumed: 1 embeddings" in result.output  # the good image was kept from the failed run
    emb = load_embeddings(out)
    assert emb.paths == ["a/ok.png"] and emb.metadata["bad"][0]["path"] == "a/bad.png"


def test_cli_embed_offline_facenet_error(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("FACEVER_OFFLINE", "1")
    result = runner.invoke(app, ["embed", "facenet:vggface2", str(tiny["images"]), "--out", str(tmp_path / "e.npz")])
    assert result.exit_code == 2 and "20180402-114759-vggface2.pt" in result.output


def test_eval_lfw_model_matches_embeddings_file_and_reuses_its_cache(tiny, tmp_path):
    emb_file = tmp_path / "emb.npz"
    assert runner.invoke(app, ["embed", str(tiny["model"]), str(tiny["images"]), "--out", str(emb_file),
                               "--flip", "sum", "--workers", "0"]).exit_code == 0
    by_file = tmp_path / "by_file"
    r1 = runner.invoke(app, ["eval-lfw", "--pairs", str(tiny["pairs"]), "--ext", ".png", "--embeddings",
                             str(emb_file), "--out", str(by_file)])
    assert r1.exit_code == 0, r1.output
    by_model = tmp_path / "by_model"
    args = ["eval-lfw", "--pairs", str(tiny["pairs"]), "--ext", ".png", "--model", str(tiny["model"]),
            "--images", str(tiny["images"]), "--flip", "sum", "--device", "cpu", "--out", str(by_model)]
    r2 = runner.invoke(app, args)
    assert r2.exit_code == 0, r2.output
    a = json.loads((by_file / "report.json").read_text())
    b = json.loads((by_model / "report.json").read_text())
    assert b["accuracy"] == pytest.approx(a["accuracy"]) and b["auc"] == pytest.approx(a["auc"])
    from facever.protocols.lfw import read_lfw_pairs

    # ... and both are what a brute-force 10-fold over numpy cosines of the embeddings file gives.
    accuracy, auc = hand_verification(load_embeddings(emb_file), read_lfw_pairs(tiny["pairs"], ext=".png"))
    assert a["accuracy"]["mean"] == pytest.approx(accuracy, abs=1e-12) and a["auc"] == pytest.approx(auc, abs=1e-9)
    assert a["pairs"]["total"] == 40
    cache = load_embeddings(by_model / "embeddings.npz")

    needed = read_lfw_pairs(tiny["pairs"], ext=".png").items()
    assert sorted(cache.paths) == sorted(needed) and len(needed) < len(tiny["rels"])  # only what the pairs need
    # Second run: every row reused, nothing rewritten; another flip mode: embedded again.
    mtime = (by_model / "embeddings.npz").stat().st_mtime_ns
    r3 = runner.invoke(app, args)
    assert r3.exit_code == 0 and f"{len(needed)} reused" in r3.output
    assert (by_model / "embeddings.npz").stat().st_mtime_ns == mtime
    r4 = runner.invoke(app, [*args[:-4], "--flip", "concat", "--out", str(by_model)])
    assert r4.exit_code == 0 and "reused" not in r4.output
    assert load_embeddings(by_model / "embeddings.npz").dim == 32


def test_eval_lfw_model_missing_images(tiny, tmp_path):
    images = tmp_path / "lfw"
    for rel in tiny["rels"]:
        if not rel.startswith(PEOPLE[0]):
            (images / rel).parent.mkdir(parents=True, exist_ok=True)
            (images / rel).write_bytes((tiny["images"] / rel).read_bytes())
    args = ["eval-lfw", "--pairs", str(tiny["pairs"]), "--ext", ".png", "--model", str(tiny["model"]),
            "--images", str(images), "--out", str(tmp_path / "r")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and f"{PEOPLE[0]}/{PEOPLE[0]}_0001.png" in result.output
    assert "--allow-missing" in result.output
    result = runner.invoke(app, [*args, "--allow-missing", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["pairs"]["dropped"] > 0
    result = runner.invoke(app, ["eval-lfw", "--pairs", str(tiny["pairs"]), "--model", str(tiny["model"])])
    assert result.exit_code == 2 and "--images" in result.output


# ----------------------------------------------------------------------------------------------------
# What runs on a GPU, checked on the CPU: no per-batch tensors from Python lists, autotune scope


class _TensorsFromPython(torch.overrides.TorchFunctionMode):
    """Counts tensors built from Python data (`torch.tensor`, `torch.as_tensor`): on a GPU each is a
    blocking host-to-device copy."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.tensor, torch.as_tensor):
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_normalisation_constants_are_made_once_per_device_and_model():
    pixels = torch.randint(0, 256, (2, 4, 3, 3), dtype=torch.uint8)
    mean, std = (0.31, 0.42, 0.53), (0.21, 0.22, 0.23)  # statistics no other test uses
    with _TensorsFromPython() as first:
        a = normalize_batch(pixels, mean=mean, std=std)
    with _TensorsFromPython() as again:
        b = normalize_batch(pixels, mean=mean, std=std)
    assert first.count == 2 and again.count == 0
    want = (pixels.permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(a, want, atol=1e-6) and torch.equal(a, b)
    # Made outside inference mode, the cached constants serve inference and ordinary code alike.
    with torch.inference_mode():
        assert torch.equal(normalize_batch(pixels, mean=mean, std=std), a)


def test_cudnn_autotune_is_off_while_mtcnn_detects_and_kept_for_the_embedding_forward(tiny, faces_dir):
    """P-Net sees a new shape for every photo size and pyramid level: autotuning it would benchmark
    every convolution again each time. The embedding forward (fixed batch shapes) keeps it."""
    from facever.data_prep.align import FaceAligner

    model = load_embedding_model(tiny["model"])
    aligner = FaceAligner(size=model.input_size)
    seen: dict[str, set] = {"detector": set(), "embedding": set()}

    def record(where):
        return lambda module, args: seen[where].add(torch.backends.cudnn.benchmark)

    hooks = [m.register_forward_pre_hook(record("detector")) for m in (aligner.mtcnn.pnet, aligner.mtcnn.rnet, aligner.mtcnn.onet)]
    hooks.append(model.module.register_forward_pre_hook(record("embedding")))
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # as a user (or the training loop on a GPU) may have set it
    try:
        rel = "lfw_sample/Anthony_Hopkins/Anthony_Hopkins_0001.jpg"  # 250 x 250: a fraction of a second
        emb, bad = embed_images(model, faces_dir, [rel], workers=0, align=aligner, amp="off")
    finally:
        torch.backends.cudnn.benchmark = before
        for h in hooks:
            h.remove()
    assert emb.paths == [rel] and not bad
    assert seen == {"detector": {False}, "embedding": {True}}
