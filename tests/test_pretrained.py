"""Pretrained models by name (`facever models`, `--model NAME`) against a local HTTP server on 127.0.0.1.

The server holds small stand-ins in the publishers' formats and archive layouts: a tiny ONNX graph as
`w600k_r50.onnx` at the root of a zip like insightface's `buffalo_l.zip`, another as
`antelopev2/glintr100.onnx` inside a top folder like `antelopev2.zip`, facenet-style state dicts as
facenet-pytorch's `.pt` release files. The registry's URLs point at the server through the documented
mirror option (FACEVER_MODEL_MIRROR). Each test has its own FACEVER_HOME (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facever.cli import app
from facever.core.errors import FaceverError, InputFileError
from facever.core.locks import FolderInUseError, file_lock
from facever.core.settings import PRETRAINED_FORMATS
from facever.data_prep import pretrained as P
from tests.helpers.http_server import FileServer, no_proxy

onnx = pytest.importorskip("onnx", reason="needs the onnx extra: pip install 'facever[onnx]'")
pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install 'facever[onnx]'")

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()
R50, R100, VGG, CASIA = "arcface-r50-webface600k", "arcface-r100-glint360k", "facenet-vggface2", "facenet-casia-webface"


@pytest.fixture(autouse=True)
def local_only(monkeypatch, tmp_path):
    no_proxy(monkeypatch)
    for var in [v for v in os.environ if v.startswith("FACEVER_URL_") or v in ("FACEVER_MIRROR", "FACEVER_OFFLINE")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # never the user's facenet-pytorch cache


@pytest.fixture()
def server(monkeypatch):
    s = FileServer()
    monkeypatch.setenv("FACEVER_MODEL_MIRROR", s.url("/models/"))
    yield s
    s.close()


def home() -> Path:
    return Path(os.environ["FACEVER_HOME"]) / "models"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------
# Stand-ins in the publishers' formats


def tiny_arcface(seed: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """An ONNX graph shaped like w600k_r50.onnx (input `input.1`, N x 3 x 112 x 112 with a dynamic batch,
    one N x D output): an 8x8 stride-8 convolution, flatten, matmul to 8 values. Returns its bytes and
    its two weights, so a test can compute its output with numpy alone."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    conv = rng.normal(0, 0.1, (4, 3, 8, 8)).astype(np.float32)
    dense = rng.normal(0, 0.1, (4 * 14 * 14, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input.1", "conv_w"], ["c"], kernel_shape=[8, 8], strides=[8, 8]),
         helper.make_node("Flatten", ["c"], ["f"]), helper.make_node("MatMul", ["f", "dense_w"], ["683"])],
        "stand-in", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 8])],
        initializer=[numpy_helper.from_array(conv, "conv_w"), numpy_helper.from_array(dense, "dense_w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString(), conv, dense


def numpy_forward(x: np.ndarray, conv: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """The stand-in graph by hand: non-overlapping 8x8 patches times the kernel, flattened in C order."""
    n = x.shape[0]
    patches = x.reshape(n, 3, 14, 8, 14, 8)
    c = np.einsum("nihpwq,oipq->nohw", patches, conv)
    return c.reshape(n, -1) @ dense


def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def packs() -> dict:
    """buffalo_l.zip (files at the root) and antelopev2.zip (files under antelopev2/), as insightface ships them."""
    r50, r50_conv, r50_dense = tiny_arcface(0)
    r100, _, _ = tiny_arcface(1)
    other = b"not a recognition model"
    buffalo = zipped({"1k3d68.onnx": other, "2d106det.onnx": other, "det_10g.onnx": other, "genderage.onnx": other,
                      "w600k_r50.onnx": r50})
    antelope = zipped({f"antelopev2/{n}": other for n in ("1k3d68.onnx", "2d106det.onnx", "genderage.onnx",
                                                          "scrfd_10g_bnkps.onnx")} | {"antelopev2/glintr100.onnx": r100})
    return {"r50": r50, "r50_weights": (r50_conv, r50_dense), "r100": r100, "buffalo_l.zip": buffalo,
            "antelopev2.zip": antelope}


def serve(server: FileServer, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        server.files[f"/models/{name}"] = data


def small_state_dict(value: float) -> bytes:
    """A small facenet-style file: a state dict (name -> tensor) saved by torch.save, as the release files are."""
    import torch

    buf = io.BytesIO()
    torch.save({"last_linear.weight": torch.full((4, 3), value), "last_bn.running_mean": torch.zeros(4)}, buf)
    return buf.getvalue()


def faces(tmp_path: Path, n: int = 2, seed: int = 3) -> list[Path]:
    """Aligned-crop stand-ins: 112x112 RGB PNGs of smooth random colour fields."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        low = rng.uniform(0, 255, (7, 7, 3))
        img = np.kron(low, np.ones((16, 16, 1))) + rng.normal(0, 20, (112, 112, 3))
        path = tmp_path / f"face{i}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------------
# The registry: the publishers' own URLs and claims, one contract for the loader and the docs


def test_registry_urls_are_the_publishers_own():
    # facenet-pytorch's code, as installed: models/inception_resnet_v1.py, load_weights.
    from facenet_pytorch.models import inception_resnet_v1

    source = inspect.getsource(inception_resnet_v1.load_weights)
    urls = dict(re.findall(r"name == '([\w-]+)':\s+path = '([^']+)'", source))
    assert urls == {"vggface2": P.PRETRAINED[VGG].url, "casia-webface": P.PRETRAINED[CASIA].url}
    for name in (VGG, CASIA):
        assert P.PRETRAINED[name].url.rsplit("/", 1)[1] == P.PRETRAINED[name].download
    # insightface >= 0.7.3, utils/storage.py: model_url = "%s/%s.zip" % (BASE_REPO_URL, name), transcribed.
    base_repo_url = "https://github.com/deepinsight/insightface/releases/download/v0.7"
    assert P.PRETRAINED[R50].url == "%s/%s.zip" % (base_repo_url, "buffalo_l")
    assert P.PRETRAINED[R100].url == "%s/%s.zip" % (base_repo_url, "antelopev2")
    assert (P.PRETRAINED[R50].member, P.PRETRAINED[R100].member) == ("w600k_r50.onnx", "glintr100.onnx")
    for entry in P.PRETRAINED.values():
        assert entry.format in PRETRAINED_FORMATS
        assert entry.sha256 is None  # none of these publishers gives a checksum: trust on first use
        assert entry.integrity == P.TRUST_FIRST_USE
    for name in (R50, R100):
        assert "non-commercial research purposes only" in P.PRETRAINED[name].licence
    assert "LFW 0.9965" in P.PRETRAINED[VGG].claimed_accuracy and "LFW 0.9905" in P.PRETRAINED[CASIA].claimed_accuracy
    assert "LFW 99.83" in P.PRETRAINED[R50].claimed_accuracy


def test_arcface_contract_template_is_insightfaces_arcface_dst():
    from facever.data_prep.templates import template_for_size

    # insightface python-package/insightface/utils/face_align.py, arcface_dst (norm_crop at 112).
    arcface_dst = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                            [41.5493, 92.3655], [70.7299, 92.2041]])
    np.testing.assert_allclose(template_for_size(P.PRETRAINED[R50].contract.input_size), arcface_dst, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Pull: archive layouts, progress, pins, resume


@pytest.mark.parametrize("name, pack, member", [(R50, "buffalo_l.zip", "r50"), (R100, "antelopev2.zip", "r100")])
def test_pull_extracts_the_recognition_member_and_pins_it(server, packs, name, pack, member):
    serve(server, {pack: packs[pack]})
    result = runner.invoke(app, ["models", "pull", name])
    assert result.exit_code == 0, result.output
    target = home() / name / P.PRETRAINED[name].file
    assert result.stdout.strip() == str(target)
    assert target.read_bytes() == packs[member]
    assert sorted(p.name for p in target.parent.iterdir() if not p.name.startswith(".")) == [target.name]  # zip gone
    record = P.read_lock()[name]
    assert record["sha256"] == sha256(packs[member]) and record["download_sha256"] == sha256(packs[pack])
    assert record["trust"] == "trust on first use" and record["licence_shown"]
    assert "trust on first use" in result.stderr and "non-commercial research purposes only" in result.stderr
    # Again: nothing downloaded, the pin confirmed.
    requests = len(server.requests)
    again = runner.invoke(app, ["models", "pull", name])
    assert again.exit_code == 0 and len(server.requests) == requests
    assert "already in the cache" in again.stderr and f"sha256 {record['sha256']} matches" in again.stderr


def test_pull_resumes_an_interrupted_download(server, packs):
    data = packs["buffalo_l.zip"]
    serve(server, {"buffalo_l.zip": data})
    server.drop_after["/models/buffalo_l.zip"] = 1000
    first = runner.invoke(app, ["models", "pull", R50, "--retries", "0"])
    assert first.exit_code == 2 and "interrupted after 1,000" in first.stderr and "run the same command again" in first.stderr
    part = home() / R50 / "buffalo_l.zip.part"
    assert part.stat().st_size == 1000 and not (home() / R50 / "w600k_r50.onnx").exists()
    second = runner.invoke(app, ["models", "pull", R50])
    assert second.exit_code == 0, second.output
    assert server.requests[-1][:2] == ("/models/buffalo_l.zip", "bytes=1000-") and server.requests[-1][2] == 206
    assert "resumed from byte 1,000" in second.stderr
    assert (home() / R50 / "w600k_r50.onnx").read_bytes() == packs["r50"] and not part.exists()
    assert P.read_lock()[R50]["download_sha256"] == sha256(data)


@pytest.mark.parametrize("change", ["different", "truncated"])
def test_a_download_that_differs_from_the_pin_is_refused(server, change):
    original = small_state_dict(1.0)
    serve(server, {"20180402-114759-vggface2.pt": original})
    assert runner.invoke(app, ["models", "pull", VGG]).exit_code == 0
    pinned = P.read_lock()[VGG]["sha256"]
    assert pinned == sha256(original)
    (home() / VGG / "20180402-114759-vggface2.pt").unlink()
    other = small_state_dict(2.0) if change == "different" else original[:-100]
    serve(server, {"20180402-114759-vggface2.pt": other})
    result = runner.invoke(app, ["models", "pull", VGG])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert f"sha256 {sha256(other)}" in message and f"not the {pinned} pinned in" in message
    assert "trust on first use" in message and f"delete the '{VGG}' entry" in message
    assert sorted(p.name for p in (home() / VGG).iterdir() if not p.name.startswith(".")) == []  # nothing kept
    assert P.read_lock()[VGG]["sha256"] == pinned


def test_an_archive_whose_model_differs_from_the_pin_is_refused(server, packs):
    serve(server, {"buffalo_l.zip": packs["buffalo_l.zip"]})
    assert runner.invoke(app, ["models", "pull", R50]).exit_code == 0
    record = P.read_lock()[R50]
    (home() / R50 / "w600k_r50.onnx").unlink()
    # A re-zipped pack holding another model: the archive's own pin refuses it before extraction.
    changed = zipped({"w600k_r50.onnx": packs["r100"]})
    serve(server, {"buffalo_l.zip": changed})
    result = runner.invoke(app, ["models", "pull", R50])
    assert result.exit_code == 2 and f"not the {record['download_sha256']} pinned" in " ".join(result.stderr.split())
    assert not (home() / R50 / "w600k_r50.onnx").exists() and not (home() / R50 / "buffalo_l.zip.part").exists()
    # Its member pinned alone (the archive pin lost): the extracted file is checked and deleted.
    lock = home() / P.LOCK_FILE
    data = json.loads(lock.read_text())
    del data["models"][R50]["download_sha256"]
    lock.write_text(json.dumps(data))
    result = runner.invoke(app, ["models", "pull", R50])
    assert result.exit_code == 2 and f"not the {record['sha256']} pinned" in " ".join(result.stderr.split())
    assert not (home() / R50 / "w600k_r50.onnx").exists()


def test_a_cached_file_that_changed_is_refused_and_left_alone(server, packs):
    from facever.embedding.loading import load_embedding_model

    serve(server, {"buffalo_l.zip": packs["buffalo_l.zip"]})
    assert runner.invoke(app, ["models", "pull", R50]).exit_code == 0
    cached = home() / R50 / "w600k_r50.onnx"
    cached.write_bytes(packs["r50"][:-10])  # truncated in place
    with pytest.raises(FaceverError, match="trust on first use") as info:
        load_embedding_model(R50)
    assert str(cached) in str(info.value) and cached.exists()


def test_publisher_checksum_is_verified_when_there_is_one(server, monkeypatch):
    data = small_state_dict(1.0)
    serve(server, {"20180402-114759-vggface2.pt": data})
    wrong = dataclasses.replace(P.PRETRAINED[VGG], sha256="0" * 64)
    monkeypatch.setitem(P.PRETRAINED, VGG, wrong)
    result = runner.invoke(app, ["models", "pull", VGG])
    assert result.exit_code == 2 and "not the publisher's checksum" in " ".join(result.stderr.split())
    assert not any((home() / VGG).glob("20180402*"))
    monkeypatch.setitem(P.PRETRAINED, VGG, dataclasses.replace(wrong, sha256=sha256(data)))
    result = runner.invoke(app, ["models", "pull", VGG])
    assert result.exit_code == 0, result.output
    assert "verified against the publisher's checksum" in result.stderr and "trust on first use" not in result.stderr
    assert P.read_lock()[VGG]["trust"] == P.TRUST_PUBLISHER


@pytest.mark.parametrize("kind", ["parent", "absolute", "nested-parent", "symlink"])
def test_an_archive_member_escaping_its_folder_refuses_the_whole_archive(server, packs, kind, tmp_path):
    import stat

    outside = tmp_path / "outside.onnx"
    evil = {"parent": "../outside.onnx", "absolute": str(outside), "nested-parent": "antelopev2/../../outside.onnx",
            "symlink": "w600k_r50.onnx"}[kind]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        if kind == "symlink":  # the model member itself a link to a file outside
            info = zipfile.ZipInfo(evil)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, str(outside))
        else:
            zf.writestr(evil, b"x")
            zf.writestr("w600k_r50.onnx", packs["r50"])
    serve(server, {"buffalo_l.zip": buf.getvalue()})
    result = runner.invoke(app, ["models", "pull", R50])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "buffalo_l.zip" in message and repr(evil) in message and "refus" in message
    assert not (home() / R50 / "w600k_r50.onnx").exists() and not (home() / "outside.onnx").exists()
    assert not outside.exists()
    assert "sha256" not in P.read_lock().get(R50, {})


def test_an_archive_without_the_member_names_what_it_holds(server):
    serve(server, {"buffalo_l.zip": zipped({"det_10g.onnx": b"x"})})
    result = runner.invoke(app, ["models", "pull", R50])
    assert result.exit_code == 2 and "no member named 'w600k_r50.onnx' (it holds: det_10g.onnx)" in result.stderr


def test_a_second_puller_is_refused_while_one_holds_the_model(server, packs):
    serve(server, {"buffalo_l.zip": packs["buffalo_l.zip"]})
    with file_lock(home() / R50 / "buffalo_l.zip"):
        with pytest.raises(FolderInUseError, match="in use by process"):
            P.ensure_model(R50)
    assert P.ensure_model(R50).path.read_bytes() == packs["r50"]


# ------------------------------------------------------------------------------------------------
# Offline, mirrors, hand-placed files


def test_offline_uses_the_cache_and_otherwise_says_what_to_download(server, packs, tmp_path, monkeypatch):
    from facever.embedding.loading import load_embedding_model

    serve(server, {"buffalo_l.zip": packs["buffalo_l.zip"]})
    assert runner.invoke(app, ["models", "pull", R50]).exit_code == 0
    server.close()  # no network from here on
    monkeypatch.setenv("FACEVER_OFFLINE", "1")
    a, b = faces(tmp_path)
    result = runner.invoke(app, ["verify", str(a), str(b), "--model", R50, "--aligned", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"]["pretrained"] == R50
    # Not cached: one line with the URL to fetch and where to put it, for the archive or its member.
    result = runner.invoke(app, ["verify", str(a), str(b), "--model", R100, "--aligned"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    flat = " ".join(result.stderr.split())
    assert f"download {server.url('/models/antelopev2.zip')} and put it at {home() / R100 / 'antelopev2.zip'}" in flat
    assert f"its member glintr100.onnx at {home() / R100 / 'glintr100.onnx'}" in flat
    # Put there by hand (the archive): extracted, pinned, used, all without network.
    (home() / R100).mkdir(parents=True, exist_ok=True)
    (home() / R100 / "antelopev2.zip").write_bytes(packs["antelopev2.zip"])
    model = load_embedding_model(R100)
    assert model.fingerprint == sha256(packs["r100"]) == P.read_lock()[R100]["sha256"]
    assert not (home() / R100 / "antelopev2.zip").exists()


def test_unreachable_host_says_where_to_put_the_file(monkeypatch, packs):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: connection refused
    monkeypatch.setenv("FACEVER_MODEL_MIRROR", f"http://127.0.0.1:{port}/m/")
    result = runner.invoke(app, ["models", "pull", R50, "--retries", "0"])
    assert result.exit_code == 2
    flat = " ".join(result.stderr.split())
    assert f"{R50}: cannot reach 127.0.0.1" in flat
    assert f"download http://127.0.0.1:{port}/m/buffalo_l.zip manually and put it at {home() / R50 / 'buffalo_l.zip'}" in flat


def test_url_precedence_and_the_datasets_mirror_is_not_the_models():
    entry = P.PRETRAINED[R50]
    assert P.source_url(entry, {}) == entry.url
    assert P.source_url(entry, {"FACEVER_MIRROR": "http://datasets.example/"}) == entry.url
    assert P.source_url(entry, {"FACEVER_MODEL_MIRROR": "file:///media/usb/models"}) == "file:///media/usb/models/buffalo_l.zip"
    assert P.source_url(entry, {"FACEVER_MODEL_MIRROR": "http://m.example/",
                                "FACEVER_URL_ARCFACE_R50_WEBFACE600K": "http://one.example/b.zip"}) == "http://one.example/b.zip"


def test_cache_root_rules(tmp_path):
    assert P.cache_root({"FACEVER_HOME": str(tmp_path)}) == tmp_path / "models"
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert P.cache_root({"XDG_CACHE_HOME": str(tmp_path / "c")}) == tmp_path / "c" / "facever" / "models"
        assert P.cache_root({}) == Path("~/.cache/facever/models").expanduser()


def test_a_mirror_on_a_local_folder_works(packs, tmp_path, monkeypatch):
    folder = tmp_path / "usb"
    folder.mkdir()
    (folder / "buffalo_l.zip").write_bytes(packs["buffalo_l.zip"])
    monkeypatch.setenv("FACEVER_MODEL_MIRROR", folder.as_uri())
    got = P.ensure_model(R50)
    assert got.path.read_bytes() == packs["r50"] and got.url == folder.as_uri() + "/buffalo_l.zip"


# ------------------------------------------------------------------------------------------------
# --model NAME end to end


def test_verify_by_name_end_to_end(server, packs, tmp_path):
    serve(server, {"buffalo_l.zip": packs["buffalo_l.zip"]})
    a, b = faces(tmp_path)
    args = ["verify", str(a), str(b), "--aligned", "--json", "--device", "cpu", "--flip", "none"]
    first = runner.invoke(app, args + ["--model", R50])
    assert first.exit_code == 0, first.output
    got = json.loads(first.stdout)
    # The number by hand: RGB crops, (x - 127.5) / 127.5, the stand-in graph in numpy, cosine.
    x = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) for p in (a, b)])
    x = ((x - 127.5) / 127.5).transpose(0, 3, 1, 2)
    e = numpy_forward(x, *packs["r50_weights"])
    expected = float(e[0] @ e[1] / np.linalg.norm(e[0]) / np.linalg.norm(e[1]))
    assert got["pairs"][0]["cosine"] == pytest.approx(expected, abs=1e-5)
    assert got["model"]["model"] == R50 and got["model"]["model_sha256"] == sha256(packs["r50"])
    assert "non-commercial research purposes only" in got["model"]["licence"]
    assert "licence" in first.stderr and "trust on first use" in first.stderr
    # Second use: from the cache, no request, no licence again; the same number as the file by path.
    requests = len(server.requests)
    second = runner.invoke(app, args + ["--model", R50])
    by_path = runner.invoke(app, args + ["--model", str(home() / R50 / "w600k_r50.onnx")])
    assert second.exit_code == 0 and by_path.exit_code == 0 and len(server.requests) == requests
    assert "licence" not in second.stderr and "trust on first use" not in second.stderr
    assert json.loads(second.stdout)["pairs"] == json.loads(by_path.stdout)["pairs"] == got["pairs"]


def test_contract_in_the_registry_is_what_the_loader_feeds(server, packs):
    from facever.embedding.loading import load_embedding_model

    serve(server, packs)
    for name in (R50, R100):
        model = load_embedding_model(name)
        contract = P.PRETRAINED[name].contract
        assert (model.input_size, model.color, model.mean, model.std) == (
            contract.input_size, contract.color, contract.mean, contract.std)
        assert model.extra["runtime"] == "onnxruntime" and model.model_id == name


@pytest.fixture(scope="module")
def facenet_file(tmp_path_factory) -> tuple[Path, bytes]:
    """A facenet-pytorch InceptionResnetV1 state dict with the release files' keys (logits included),
    random weights stored in float16 to halve the bytes served."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(2)
    net = InceptionResnetV1(pretrained=None, classify=True, num_classes=5).eval()
    path = tmp_path_factory.mktemp("facenet") / "weights.pt"
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}, path)
    return path, path.read_bytes()


def test_facenet_by_name_is_facenet_pytorchs_model_with_that_file(server, facenet_file, tmp_path):
    import torch

    from facever.embedding.loading import load_embedding_model
    from tests.helpers.references import plain_model_input

    path, data = facenet_file
    serve(server, {"20180408-102900-casia-webface.pt": data})
    by_name = load_embedding_model(CASIA)
    by_weights = load_embedding_model("facenet:casia-webface", weights=path)
    contract = P.PRETRAINED[CASIA].contract
    assert (by_name.input_size, by_name.mean, by_name.std, by_name.color) == (
        contract.input_size, contract.mean, contract.std, contract.color)
    crops = np.random.default_rng(0).integers(0, 256, (2, 160, 160, 3), dtype=np.uint8)
    with torch.no_grad():
        x = plain_model_input(crops, by_name)
        np.testing.assert_array_equal(by_name.module(x).numpy(), by_weights.module(x).numpy())
    assert by_name.fingerprint == by_weights.fingerprint == sha256(data)
    # `facenet:casia-webface` without weights is the same pull: the same cached, pinned file.
    cached = home() / CASIA / "20180408-102900-casia-webface.pt"
    assert by_name.source == load_embedding_model("facenet:casia-webface").source == str(cached.resolve())


def test_a_model_file_that_would_run_code_is_refused_without_running_it(server, tmp_path):
    import torch

    from facever.embedding.loading import load_embedding_model

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    torch.save({"last_linear.weight": Evil()}, buf)
    serve(server, {"20180402-114759-vggface2.pt": buf.getvalue()})
    with pytest.raises(InputFileError, match="20180402-114759-vggface2.pt"):
        load_embedding_model(VGG)
    assert not marker.exists()


def test_models_list_table_tsv_and_json(server, packs):
    serve(server, {"buffalo_l.zip": packs["buffalo_l.zip"]})
    assert runner.invoke(app, ["models", "pull", R50]).exit_code == 0
    result = runner.invoke(app, ["models", "list"])  # CliRunner's stdout is not a terminal: TSV
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines[0].split("\t")
    assert header == ["name", "cached", "format", "input", "trained on", "claimed accuracy", "licence", "source"]
    rows = {line.split("\t")[0]: dict(zip(header, line.split("\t"))) for line in lines[1:]}
    assert set(rows) == set(P.PRETRAINED)
    assert rows[R50]["cached"] == "yes" and rows[R100]["cached"] == "no"
    assert rows[R50]["source"] == server.url("/models/buffalo_l.zip")  # the mirror in use
    assert rows[R50]["input"] == "112x112 RGB, (x - 127.5) / 127.5" and rows[VGG]["input"] == "160x160 RGB, (x - 127.5) / 128"
    assert "non-commercial research purposes only" in rows[R100]["licence"]
    data = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    by_name = {m["name"]: m for m in data["models"]}
    assert data["cache"] == str(home())
    assert by_name[R50]["pinned_sha256"] == sha256(packs["r50"]) and by_name[R50]["member"] == "w600k_r50.onnx"
    assert by_name[R100]["contract"]["alignment"].startswith("insightface norm_crop")


def test_weights_with_a_registry_name_is_an_error():
    from facever.embedding.loading import load_embedding_model

    with pytest.raises(FaceverError, match="brings its own weights"):
        load_embedding_model(R50, weights="x.pth")
    with pytest.raises(FaceverError, match="unknown pretrained model 'arcface-r51'; known: facenet-vggface2"):
        P.get("arcface-r51")


def test_embed_by_name_records_the_model_and_its_licence(server, packs, tmp_path):
    from facever.core.embeddings_file import load_embeddings

    serve(server, {"buffalo_l.zip": packs["buffalo_l.zip"]})
    images = tmp_path / "images"
    images.mkdir()
    for p in faces(tmp_path, n=3):
        p.rename(images / p.name)
    by_name, by_path = tmp_path / "name.npz", tmp_path / "path.npz"
    result = runner.invoke(app, ["embed", R50, str(images), "--out", str(by_name), "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["embed", str(home() / R50 / "w600k_r50.onnx"), str(images), "--out", str(by_path),
                                 "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    a, b = load_embeddings(by_name), load_embeddings(by_path)
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert a.metadata["model"] == R50 and a.metadata["pretrained"] == R50
    assert "non-commercial research purposes only" in a.metadata["licence"]
    assert a.metadata["url"] == server.url("/models/buffalo_l.zip") and a.metadata["integrity"] == "trust on first use"


def test_the_lock_files_lock_waits_for_a_short_holder(tmp_path):
    import threading
    import time

    target = tmp_path / "models.lock"
    held = threading.Event()

    def hold():
        with file_lock(target):
            held.set()
            time.sleep(0.4)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    with pytest.raises(FolderInUseError):
        with file_lock(target):
            pass
    start = time.monotonic()
    with file_lock(target, wait=10):
        waited = time.monotonic() - start
    thread.join()
    assert 0.1 < waited < 5
