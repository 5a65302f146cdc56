"""InsightFace `.bin` verification sets: safe decoding (no code runs), images, protocol, `facever eval-bin`."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facever.protocols.insightface_bin import (
    BinImages,
    bin_folds,
    bin_protocol,
    load_bin,
    write_bin,
)
from facever.core.crop import fit_to_input
from facever.core.errors import FaceverError, InputFileError

from tests.helpers.benchmark_data import jpeg_bytes, orl_people


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _random_images(n: int, seed: int = 0, size=(112, 112)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def test_write_then_load_round_trip(tmp_path):
    images = _random_images(4)
    path = write_bin(tmp_path / "lfw.bin", [_png(im) for im in images], [True, False])
    bins, issame = load_bin(path)
    assert issame.tolist() == [True, False]
    decoded = BinImages(bins, source=path)
    assert len(decoded) == 4
    for got, want in zip(decoded, images):
        np.testing.assert_array_equal(got, want)  # PNG is lossless: exact RGB


def _py2_pickle(images: list[bytes], issame: list[bool]) -> bytes:
    """The opcodes Python 2's `pickle.dump(..., protocol=2)` writes: str as BINSTRING, bools as NEWTRUE/FALSE."""
    out = b"\x80\x02" + b"(]q\x00("  # PROTO 2, MARK, EMPTY_LIST, BINPUT 0, MARK
    out += b"".join(b"T" + struct.pack("<i", len(b)) + b for b in images)
    out += b"e]q\x01(" + b"".join(b"\x88" if s else b"\x89" for s in issame) + b"et."  # APPENDS ... TUPLE STOP
    return out


def test_python2_bin_decodes_strings_as_bytes(tmp_path):
    images = _random_images(2, seed=1)
    path = tmp_path / "agedb_30.bin"
    path.write_bytes(_py2_pickle([_png(im) for im in images], [True]))
    bins, issame = load_bin(path)
    assert issame.tolist() == [True] and all(isinstance(b, bytes) for b in bins)
    np.testing.assert_array_equal(BinImages(bins)[1], images[1])


class _System:
    """Unpickling this would run a shell command that creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Subprocess:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


class _Open:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload_cls, refused_type", [
    (_System, r"(posix|os)\.system"),
    (_Subprocess, r"subprocess\.call"),
    (_Open, r"(builtins|io)\.open"),
])
@pytest.mark.parametrize("where", ["top", "inside_bins", "inside_issame"])
def test_malicious_bin_is_refused_and_nothing_runs(tmp_path, payload_cls, refused_type, where):
    marker = tmp_path / "pwned"
    payload = payload_cls(marker)
    good = _png(_random_images(1)[0])
    obj = {
        "top": payload,
        "inside_bins": ([good, payload], [True]),
        "inside_issame": ([good, good], [payload]),
    }[where]
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(FaceverError, match=rf"refused: .*evil.bin contains a pickled object of type {refused_type} "
                                           r"\(possible code\); only lists, tuples, bytes and bools are allowed"):
        load_bin(path)
    assert not marker.exists()
    # control: the same payload really does run under a plain pickle.load (the test can fail)
    pickle.loads(pickle.dumps(payload_cls(tmp_path / "control")))
    assert (tmp_path / "control").exists()


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_python3_low_protocol_bytes_load(tmp_path, protocol):
    """Python 3 writes bytes under protocols 0-2 as `_codecs.encode(str, "latin1")`: that one call is
    answered by a text-to-bytes stand-in; any other use of it is still refused."""
    images = [_png(im) for im in _random_images(2)]
    path = tmp_path / "py3.bin"
    path.write_bytes(pickle.dumps((images, [True]), protocol=protocol))
    bins, issame = load_bin(path)
    assert bins == images and issame.tolist() == [True]
    evil = tmp_path / "evil.bin"
    # _codecs.encode asked for another codec (a way to smuggle a different call) is refused
    evil.write_bytes(b"c_codecs\nencode\n(Vabc\nVrot13\ntR.")
    with pytest.raises(FaceverError, match="refused: .*_codecs.encode"):
        load_bin(evil)


def test_numpy_arrays_and_objects_are_refused_too(tmp_path):
    path = tmp_path / "np.bin"
    path.write_bytes(pickle.dumps(([b"x", b"y"], np.array([True])), protocol=4))
    with pytest.raises(FaceverError, match=r"refused: .*np.bin contains a pickled object of type numpy"):
        load_bin(path)


@pytest.mark.parametrize("obj, message", [
    ({"a": 1}, "expected a pickled \\(bins, issame_list\\) pair, got dict"),
    (([b"a", b"b", b"c"], [True]), "3 images for 1 pairs"),
    (([b"a", "b"], [True]), "image 1 is a str"),
    (([b"a", b"b"], ["yes"]), "issame_list\\[0\\] is 'yes'"),
    (([], []), "no pairs"),
])
def test_malformed_bin_names_the_file(tmp_path, obj, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(InputFileError, match=message) as info:
        load_bin(path)
    assert info.value.path == path


def test_truncated_or_missing_bin(tmp_path):
    path = tmp_path / "cut.bin"
    path.write_bytes(pickle.dumps(([b"a", b"b"], [True]), protocol=4)[:-5])
    with pytest.raises(InputFileError, match="not a valid InsightFace .bin"):
        load_bin(path)
    with pytest.raises(InputFileError, match="file not found"):
        load_bin(tmp_path / "none.bin")


def test_undecodable_image_names_the_bin_and_index(tmp_path):
    images = BinImages([b"not an image"], source="x.bin")
    with pytest.raises(FaceverError, match="x.bin image 0"):
        images[0]


def test_arcface_crop_fitted_to_96_wide_cuts_8_columns_each_side():
    img = _random_images(1, seed=3)[0]  # 112 x 112
    fitted = fit_to_input(img, (112, 96))
    np.testing.assert_array_equal(fitted, img[:, 8:104])


def test_fit_to_input_crops_to_aspect_then_resizes():
    rng = np.random.default_rng(0)
    tall = rng.integers(0, 256, (100, 50, 3), dtype=np.uint8)
    out = fit_to_input(tall, (112, 96))
    assert out.shape == (112, 96, 3)
    # 50 wide at 96:112 needs round(50 * 112 / 96) = 58 rows: rows 21..78 kept, then enlarged
    import cv2

    np.testing.assert_array_equal(out, cv2.resize(tall[21:79], (96, 112), interpolation=cv2.INTER_LINEAR))
    same = fit_to_input(tall, (100, 50))
    np.testing.assert_array_equal(same, tall)
    wide = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    assert fit_to_input(wide, (56, 48)).shape == (56, 48, 3)


def test_protocol_has_ten_contiguous_folds_like_insightface():
    assert bin_folds(20).tolist() == np.repeat(np.arange(10), 2).tolist()
    # 23 pairs: sklearn KFold(10) gives the first 3 folds 3 pairs, the rest 2
    assert np.bincount(bin_folds(23)).tolist() == [3, 3, 3] + [2] * 7
    proto = bin_protocol(np.array([True, False] * 10), name="lfw")
    assert proto.first[:2] == ["000000", "000002"] and proto.second[:2] == ["000001", "000003"]
    assert proto.n_folds == 10 and proto.labels.sum() == 10


def test_bin_from_real_faces(faces_dir, tmp_path):
    people = orl_people(faces_dir, 4, 2)
    names = list(people)
    images, issame = [], []
    for k in range(4):  # 2 same pairs, 2 different
        a = people[names[k]][0]
        b = people[names[k]][1] if k % 2 == 0 else people[names[(k + 1) % 4]][0]
        images += [jpeg_bytes(a, size=(112, 112)), jpeg_bytes(b, size=(112, 112))]
        issame.append(k % 2 == 0)
    path = write_bin(tmp_path / "orl.bin", images, issame)
    bins, flags = load_bin(path)
    assert flags.tolist() == [True, False, True, False]
    fitted = BinImages(bins, source=path, size=(112, 96))
    names_batches = list(fitted.batches(3))
    assert [len(n) for n, _ in names_batches] == [3, 3, 2]
    assert names_batches[0][1].shape == (3, 112, 96, 3) and names_batches[0][1].dtype == np.uint8


# ---------------------------------------------------------------------------------------------------
# `facever eval-bin` end to end.

REPORT_KEYS = {"protocol", "accuracy", "folds", "auc", "eer", "tar_at_far", "val_at_far", "pairs", "settings",
               "facever_version"}


def _run(args):
    from typer.testing import CliRunner

    from facever.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _orl_bin(path: Path, faces_dir: Path) -> tuple[Path, list[str]]:
    """20 pairs of 112x112 ORL crops (same, different alternating: every contiguous fold has one of each)."""
    people = orl_people(faces_dir, 10, 4)
    names = list(people)
    images, issame, owners = [], [], []
    for k in range(20):
        p = names[k // 2]
        if k % 2 == 0:
            pair = [(p, people[p][0]), (p, people[p][1])]
        else:
            q = names[(k // 2 + 3) % 10]
            pair = [(p, people[p][2]), (q, people[q][3])]
        for owner, src in pair:
            images.append(jpeg_bytes(src, size=(112, 112)))
            owners.append(owner)
        issame.append(k % 2 == 0)
    return write_bin(path, images, issame), owners


def test_eval_bin_with_model_crops_arcface_images_to_the_model(tmp_path, faces_dir):
    import torch

    from facever.core.embeddings_file import load_embeddings
    from facever.embedding.loading import load_embedding_model
    from tests.helpers.benchmark_data import tiny_model
    from tests.helpers.references import plain_model_input

    path, _ = _orl_bin(tmp_path / "orl.bin", faces_dir)
    model = tiny_model(tmp_path / "model.pt", input_size=(112, 96))
    out = tmp_path / "out"
    result = _run(["eval-bin", path, "--model", model, "--device", "cpu", "--amp", "off", "--flip", "none", "--out", out])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report) and report["protocol"] == "orl.bin"
    assert report["pairs"]["total"] == 20 and len(report["folds"]) == 10
    assert report["settings"]["source_image_size"] == [112, 112] and report["settings"]["input_size"] == [112, 96]
    assert (out / "roc.png").is_file()
    saved = np.load(out / "embeddings.npz")
    assert list(saved["paths"][:3]) == ["000000", "000001", "000002"] and saved["embeddings"].shape == (40, 16)
    # image 5 embedded by hand from its exact 96x112 centre crop (8 columns cut each side, no resampling)
    net = load_embedding_model(model, device="cpu")
    bins, _ = load_bin(path)
    crop = BinImages(bins)[5][:, 8:104]
    with torch.inference_mode():
        want = net.module(plain_model_input([crop], net)).numpy()[0]
    np.testing.assert_allclose(saved["embeddings"][5], want, rtol=1e-4, atol=1e-5)
    assert load_embeddings(out / "embeddings.npz").metadata["amp"] == "off"
    # --amp bf16 asks for bf16 on any CPU; the embeddings say so and stay within bf16's precision.
    bf16 = _run(["eval-bin", path, "--model", model, "--device", "cpu", "--amp", "bf16", "--flip", "none", "--out", tmp_path / "bf16"])
    assert bf16.exit_code == 0, bf16.output
    rows = load_embeddings(tmp_path / "bf16" / "embeddings.npz")
    assert rows.metadata["amp"] == "bf16"
    np.testing.assert_allclose(rows.embeddings[5], want, atol=0.03)
    assert not np.array_equal(rows.embeddings[5], saved["embeddings"][5])


def test_eval_bin_with_embeddings(tmp_path, faces_dir):
    from facever.core.embeddings_file import save_embeddings
    from tests.helpers.benchmark_data import identity_embeddings

    path, owners = _orl_bin(tmp_path / "orl.bin", faces_dir)
    names = [f"{i:06d}" for i in range(len(owners))]
    paths, emb = identity_embeddings(dict(zip(names, owners)))
    save_embeddings(tmp_path / "emb.npz", paths, emb)
    result = _run(["eval-bin", path, "--embeddings", tmp_path / "emb.npz", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"]["mean"] == 1.0 and report["pairs"]["same"] == 10


def test_eval_bin_refuses_a_malicious_file(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps(([b"x", _System(marker)], [True]), protocol=2))
    result = _run(["eval-bin", path, "--model", tmp_path / "model.pt"])
    assert result.exit_code == 2
    assert "refused:" in result.output and "possible code" in result.output
    assert not marker.exists()


def test_the_workflow_reads_and_embeds_a_bin(tmp_path, faces_dir):
    from facever.workflows.evaluate import EmbedSettings, Source, benchmark_embeddings, open_benchmark
    from tests.helpers.benchmark_data import tiny_model

    path, owners = _orl_bin(tmp_path / "orl.bin", faces_dir)
    bench = open_benchmark("bin", path)
    proto = bench.protocol
    assert proto.name == "orl.bin" and len(proto) == 20 and proto.source == path
    used = benchmark_embeddings(bench, Source(model=str(tiny_model(tmp_path / "m.pt"))),
                                embed=EmbedSettings(flip="none", batch_size=16, device="cpu"))
    emb = used.embeddings
    assert emb.paths == [f"{i:06d}" for i in range(40)] and emb.dim == 16
    assert emb.metadata["source_image_size"] == [112, 112] and emb.metadata["crop_size"] == [112, 96]


def test_ensemble_on_a_bin_with_two_models(tmp_path, faces_dir):
    from tests.helpers.benchmark_data import tiny_model

    path, _ = _orl_bin(tmp_path / "orl.bin", faces_dir)
    m1 = tiny_model(tmp_path / "a" / "model.pt", seed=1)
    m2 = tiny_model(tmp_path / "b" / "model.pt", input_size=(112, 112), seed=2)
    out = tmp_path / "ens"
    result = _run(["ensemble", m1, m2, "--protocol", "bin", "--pairs", path, "--device", "cpu", "--out", out])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "orl.bin" and report["names"] == ["a", "b"]
    assert report["ensemble"]["pairs"]["total"] == 20 and len(report["ensemble"]["folds"]) == 10
    assert (out / "roc.png").is_file()
    # Each model is embedded as eval-bin embeds it (one workflow): same rows, same numbers.
    single = _run(["eval-bin", path, "--model", m1, "--device", "cpu", "--out", tmp_path / "single"])
    assert single.exit_code == 0, single.output
    np.testing.assert_array_equal(np.load(out / "embeddings_a.npz")["embeddings"],
                                  np.load(tmp_path / "single" / "embeddings.npz")["embeddings"])
    assert json.loads((tmp_path / "single" / "report.json").read_text())["accuracy"] == report["models"]["a"]["accuracy"]
    # ... and through the one cache: a second run embeds nothing again.
    again = _run(["ensemble", m1, m2, "--protocol", "bin", "--pairs", path, "--device", "cpu", "--out", out])
    assert again.exit_code == 0 and again.output.count("40 reused") == 2, again.output


def test_bf16_embedding_of_a_bin_runs_on_the_cpu(tmp_path, faces_dir):
    """The bf16 branch of `.bin` embedding (the default on GPUs) is chosen by `amp`, not by the device."""
    from facever.embedding.cache import embed_items_cached
    from facever.embedding.loading import load_embedding_model
    from facever.embedding.sources import ImageBytes
    from facever.protocols.insightface_bin import image_names
    from tests.helpers.benchmark_data import tiny_model

    path, _ = _orl_bin(tmp_path / "orl.bin", faces_dir)
    bins, _ = load_bin(path)
    model = load_embedding_model(tiny_model(tmp_path / "model.pt", input_size=(112, 96)), device="cpu")
    names = image_names(8)
    images = ImageBytes(bins[:8], names, source=path)
    fp32, _, _ = embed_items_cached(model, images, names, cache=None, device="cpu", amp="off")
    bf16, _, _ = embed_items_cached(model, images, names, cache=None, device="cpu", amp="bf16")
    assert fp32.metadata["amp"] == "off" and bf16.metadata["amp"] == "bf16"
    assert bf16.paths == fp32.paths and bf16.embeddings.dtype == np.float32
    assert not np.array_equal(bf16.embeddings, fp32.embeddings)  # bf16 really ran
    cos = np.sum(fp32.embeddings * bf16.embeddings, 1) / (
        np.linalg.norm(fp32.embeddings, axis=1) * np.linalg.norm(bf16.embeddings, axis=1))
    assert np.all(cos > 0.99)
