"""Models in and out: arcface_torch state dicts, ONNX graphs run with onnxruntime, export to ONNX and
TorchScript, and the bad inputs each of them must refuse clearly."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from facever.cli import app
from facever.core.embeddings_file import load_embeddings
from facever.core.errors import FaceverError, InputFileError
from facever.embedding.extract import embed_images
from facever.embedding.loading import load_embedding_model
from facever.models.iresnet import _IRBlock
from tests.helpers.tiny_models import direct_forward, make_lfw_tree, read_rgb, train_tiny_model

onnx = pytest.importorskip("onnx", reason="needs the onnx extra: pip install 'facever[onnx]'")
pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install 'facever[onnx]'")

runner = CliRunner()


# ----------------------------------------------------------------------------------------------------
# arcface_torch's IResNet, laid out (and run) the way arcface_torch's backbones/iresnet.py does it.


class ArcfaceTorchIResNet(nn.Module):
    """arcface_torch's module tree: conv1, bn1, prelu, layer1..4 (IBasicBlocks), bn2, dropout, fc, features."""

    def __init__(self, layers, num_features: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        inplanes = 64
        for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            blocks = []
            for i in range(count):
                blocks.append(_IRBlock(inplanes, planes, stride=2 if i == 0 else 1))
                inplanes = planes
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Random weights and batch-norm statistics, so a wrongly mapped key changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.dtype.is_floating_point:
                if name.endswith("running_var"):
                    tensor.copy_(torch.rand(tensor.shape, generator=g) + 0.5)
                elif name.endswith("weight") and tensor.ndim == 1:  # BN scale, PReLU slope
                    tensor.copy_(torch.rand(tensor.shape, generator=g) * 0.5 + 0.75)
                elif tensor.ndim > 1:  # conv / fc: unit-variance outputs (fan-in scaling), so 50 blocks stay finite
                    tensor.copy_(torch.randn(tensor.shape, generator=g) / (tensor[0].numel() ** 0.5))
                else:
                    tensor.copy_(torch.randn(tensor.shape, generator=g) * 0.1)
    return module.eval()


@pytest.fixture(scope="module")
def crops112(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops112")
    rels = make_lfw_tree(root, size=(112, 112))[:5]
    return root, rels


@pytest.mark.parametrize("name,layers", [("r18", (2, 2, 2, 2)), ("r50", (3, 4, 14, 3))])
def test_arcface_torch_state_dict_embeds_like_arcface_torch(name, layers, crops112, tmp_path):
    reference = randomize(ArcfaceTorchIResNet(layers), seed=len(name) + sum(layers))
    weights = tmp_path / "backbone.pth"
    torch.save(reference.state_dict(), weights)
    out = tmp_path / "emb.npz"
    root, rels = crops112
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(root / r) for r in rels) + "\n")
    result = runner.invoke(app, ["embed", f"arcface:{name}", str(listing), "--weights", str(weights), "--out", str(out),
                                 "--workers", "0", "--device", "cpu", "--amp", "off", "--flip", "none"])
    assert result.exit_code == 0, result.output
    emb = load_embeddings(out)
    # arcface_torch's preprocessing: RGB, (x / 255 - 0.5) / 0.5; its output: the `features` BatchNorm1d.
    want = direct_forward(reference, [read_rgb(root / r) for r in rels], (0.5,) * 3, (0.5,) * 3)
    got = emb.embeddings
    cos = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() >= 0.9999, cos
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    assert emb.metadata["model"] == f"arcface:{name}" and emb.metadata["input_size"] == [112, 112]


def test_arcface_rejects_another_architecture_naming_the_key(tmp_path):
    from facever.models import create_model

    sphere = tmp_path / "sphere.pth"
    torch.save(create_model("sphere20", input_size=(112, 112), width=4, embedding_dim=8).state_dict(), sphere)
    with pytest.raises(InputFileError, match=r"sphere\.pth: arcface:r18 has no parameter '[a-z]"):
        load_embedding_model("arcface:r18", weights=sphere)
    deeper = tmp_path / "r34.pth"
    torch.save(ArcfaceTorchIResNet((3, 4, 6, 3)).state_dict(), deeper)
    with pytest.raises(InputFileError, match=r"arcface:r18 has no parameter .layer1\.2\.bn1\.weight. \(shape \(64,\)\)"):
        load_embedding_model("arcface:r18", weights=deeper)
    shallower = tmp_path / "r18.pth"
    torch.save(ArcfaceTorchIResNet((2, 2, 2, 2)).state_dict(), shallower)
    with pytest.raises(InputFileError, match=r"arcface:r34 needs 'layer1\.2\.bn1\.weight'"):
        load_embedding_model("arcface:r34", weights=shallower)
    with pytest.raises(FaceverError, match="unknown model arcface:r19; known: arcface:r18"):
        load_embedding_model("arcface:r19", weights=shallower)
    with pytest.raises(FaceverError, match="needs its weights"):
        load_embedding_model("arcface:r18")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputFileError, match="not a readable PyTorch state dict"):
        load_embedding_model("arcface:r18", weights=garbage)


# ----------------------------------------------------------------------------------------------------
# Export, then the exported files through `facever embed`.


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model = train_tiny_model(root / "run" / "model.pt")
    rels = make_lfw_tree(root / "lfw")
    result = runner.invoke(app, ["export", str(model), "--out", str(root / "model.onnx")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    result = runner.invoke(app, ["export", str(model), "--format", "torchscript", "--out", str(root / "model.torchscript")])
    assert result.exit_code == 0, result.output
    return {"root": root, "model": model, "images": root / "lfw", "rels": rels, "onnx": root / "model.onnx",
            "torchscript": root / "model.torchscript", "report": report}


def _cli_embed(spec, images, out, *extra):
    result = runner.invoke(app, ["embed", str(spec), str(images), "--out", str(out), "--workers", "0", "--device", "cpu",
                                 "--amp", "off", "--flip", "none", *extra])
    assert result.exit_code == 0, result.output
    return load_embeddings(out)


def test_exported_onnx_and_torchscript_embed_like_the_model(exported, tmp_path):
    pytorch = _cli_embed(exported["model"], exported["images"], tmp_path / "pt.npz")
    for kind in ("onnx", "torchscript"):
        emb = _cli_embed(exported[kind], exported["images"], tmp_path / f"{kind}.npz", "--batch-size", "7")
        assert emb.paths == pytorch.paths
        np.testing.assert_allclose(emb.embeddings, pytorch.embeddings, rtol=1e-4, atol=1e-5)
        assert emb.metadata["preprocessing"] == pytorch.metadata["preprocessing"]  # read back from the file
        assert emb.metadata["model"] == f"{kind}:model.{kind}"


def test_onnx_metadata_and_dynamic_batch(exported):
    graph = onnx.load(str(exported["onnx"]))
    meta = {p.key: json.loads(p.value) for p in graph.metadata_props}
    assert meta["facever.input_size"] == [28, 24]
    assert meta["facever.mean"] == pytest.approx([0.5, 0.4, 0.3]) and meta["facever.std"] == pytest.approx([0.25, 0.5, 0.2])
    assert meta["facever.color"] == "RGB" and meta["facever.embedding_dim"] == 16
    assert "5-point" in meta["facever.crop"]["policy"]
    batch = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # a named, dynamic batch axis
    opset = max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 18 and exported["report"]["opset"] == opset
    assert exported["report"]["min_cosine_vs_pytorch"] >= 0.9999


def test_onnx_fixed_batch_graph_gives_the_same_embeddings(exported, tmp_path):
    """A graph whose batch is fixed at 2 runs 5 images in padded chunks; any batch size gives the same rows."""
    graph = onnx.load(str(exported["onnx"]))
    for value in (graph.graph.input[0], graph.graph.output[0]):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = 2
    fixed = tmp_path / "fixed.onnx"
    onnx.save(graph, str(fixed))
    model = load_embedding_model(fixed)
    assert model.module.fixed_batch == 2
    dynamic = load_embedding_model(exported["onnx"])
    assert dynamic.module.fixed_batch is None
    want = embed_images(dynamic, exported["images"], exported["rels"], workers=0, batch_size=64)[0].embeddings
    for batch_size in (1, 5):
        got = embed_images(model, exported["images"], exported["rels"], workers=0, batch_size=batch_size)[0].embeddings
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_onnx_matches_onnxruntime_run_by_hand_and_preprocessing_overrides(exported):
    import onnxruntime

    model = load_embedding_model(exported["onnx"], mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), color="BGR")
    assert model.color == "BGR" and model.mean == (0.5, 0.5, 0.5)
    rel = exported["rels"][:3]
    rgb = [read_rgb(exported["images"] / r) for r in rel]
    x = (np.stack(rgb)[..., ::-1].astype(np.float32) - 127.5) / 127.5  # BGR, InsightFace's scaling
    session = onnxruntime.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
    got = embed_images(model, exported["images"], rel, workers=0, flip="none")[0].embeddings
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(FaceverError, match="can be set for ONNX and TorchScript models only"):
        load_embedding_model(exported["model"], mean=(0.5, 0.5, 0.5))


def test_cli_embed_mean_std_bgr_on_the_255_scale(exported, tmp_path):
    emb = _cli_embed(exported["onnx"], exported["images"], tmp_path / "o.npz", "--mean", "127.5", "--std",
                     "63.75,127.5,51", "--bgr")
    assert emb.metadata["color"] == "BGR"
    assert emb.metadata["mean"] == pytest.approx([0.5] * 3) and emb.metadata["std"] == pytest.approx([0.25, 0.5, 0.2])


def test_export_refuses_a_file_that_disagrees_and_leaves_nothing(exported, tmp_path):
    from facever.embedding.export import export_model

    out = tmp_path / "never.torchscript"
    # No float computation reaches a cosine above 1: the check must fail and the file must not appear.
    with pytest.raises(FaceverError, match="disagrees with the PyTorch model"):
        export_model(exported["model"], out, format="torchscript", min_cosine=1.5)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FaceverError, match="already an exported onnxruntime model"):
        export_model(exported["onnx"], tmp_path / "never.onnx")


# ----------------------------------------------------------------------------------------------------
# Bad ONNX files and a missing onnxruntime.


def _graph(path, inputs, outputs, nodes, initializers=()):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_bad_onnx_files_are_clear_errors(exported, tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported["onnx"].read_bytes()[:1000])
    with pytest.raises(InputFileError, match=r"truncated\.onnx: not a readable ONNX model"):
        load_embedding_model(truncated)

    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])
    two = _graph(tmp_path / "two.onnx", [image], [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 192]),
                                                   helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 192])],
                 [helper.make_node("Flatten", ["x"], ["a"]), helper.make_node("Flatten", ["x"], ["b"])])
    with pytest.raises(InputFileError, match=r"two\.onnx: expected one embedding output, the graph has 2"):
        load_embedding_model(two)

    vector = helper.make_tensor_value_info("v", TensorProto.FLOAT, ["n", 10])
    w = numpy_helper.from_array(np.ones((10, 4), np.float32), "w")
    flat = _graph(tmp_path / "flat.onnx", [vector], [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["n", 4])],
                  [helper.make_node("MatMul", ["v", "w"], ["e"])], [w])
    with pytest.raises(InputFileError, match=r"flat\.onnx: input 'v' has shape \['n', 10\]: not a face image input"):
        load_embedding_model(flat)

    with pytest.raises(FaceverError, match="no such ONNX model file"):
        load_embedding_model(tmp_path / "absent.onnx")


def test_missing_onnxruntime_says_how_to_install(exported, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with pytest.raises(FaceverError, match=r"pip install 'facever\[onnx\]'"):
        load_embedding_model(exported["onnx"])
    result = runner.invoke(app, ["embed", str(exported["onnx"]), str(exported["images"]), "--out", str(tmp_path / "e.npz")])
    assert result.exit_code == 2 and "pip install 'facever[onnx]'" in result.output
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    result = runner.invoke(app, ["export", str(exported["model"]), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "pip install 'facever[onnx]'" in result.output
    assert not (tmp_path / "m.onnx").exists()
