"""Backbone registry, every registered model's forward/backward, and the model.pt bundle."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from facever.core.errors import FaceverError, InputFileError
from facever.models import create_model, list_models, model_options
from facever.models.bundle import load_model_bundle, save_model_bundle

EXPECTED = {  # name: (input size, embedding dim)
    "sphere20": ((112, 96), 512),
    "sphere64": ((112, 96), 512),
    "iresnet50": ((112, 112), 512),
    "iresnet100": ((112, 112), 512),
    "mobilefacenet": ((112, 112), 128),
    "inception-resnet-v1": ((160, 160), 512),
}
# Full-size forward+backward of the deepest nets takes tens of seconds on two shared cores.
SLOW = {"iresnet100", "sphere64", "iresnet50"}
# Small variants (narrow, small input) that keep every layer type of their family.
TINY = {
    "sphere20": dict(input_size=(32, 24), width=8, embedding_dim=16),
    "sphere64": dict(input_size=(32, 32), width=4, embedding_dim=8),
    "iresnet50": dict(input_size=(32, 32), width=4, embedding_dim=16),
    "iresnet100": dict(input_size=(16, 16), width=2, embedding_dim=8),
    "mobilefacenet": dict(input_size=(32, 24), width=8, embedding_dim=16),
    "inception-resnet-v1": dict(input_size=(80, 80)),
}


def _check_forward_backward(model, batch: int = 2):
    torch.manual_seed(0)
    h, w = model.input_size
    out = model.train()(torch.randn(batch, 3, h, w))
    assert out.shape == (batch, model.embedding_dim)
    assert torch.isfinite(out).all()
    # A random projection, not a sum: a final BatchNorm makes the batch sum constant (zero gradient).
    (out * torch.randn_like(out)).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
            assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


def test_registry_lists_every_model():
    assert list_models() == sorted(EXPECTED)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(EXPECTED)]
)
def test_full_size_forward_backward(name):
    model = create_model(name)
    size, dim = EXPECTED[name]
    assert model.input_size == size and model.embedding_dim == dim
    assert len(model.mean) == 3 and len(model.std) == 3
    _check_forward_backward(model)


@pytest.mark.parametrize("name", list_models())
def test_small_variant_forward_backward(name):
    model = create_model(name, **TINY[name])
    assert model.input_size == tuple(TINY[name]["input_size"])
    _check_forward_backward(model, batch=3)


@pytest.mark.parametrize("name, size", [("sphere20", (112, 112)), ("mobilefacenet", (112, 96)), ("iresnet50", [64, 48])])
def test_input_size_override_resizes_the_output_stage(name, size):
    model = create_model(name, input_size=size, **({"width": 8} if name == "iresnet50" else {}))
    out = model.eval()(torch.randn(1, 3, *size))
    assert model.input_size == tuple(size) and out.shape == (1, model.embedding_dim)


def test_unknown_name_and_option_errors_list_what_exists():
    with pytest.raises(FaceverError, match=r"unknown model 'sphere21'; known models: .*iresnet50.*sphere20"):
        create_model("sphere21")
    with pytest.raises(FaceverError, match=r"model 'sphere20' has no option depth; its options: input_size, width, embedding_dim"):
        create_model("sphere20", depth=3)
    with pytest.raises(FaceverError, match="input_size must be"):
        create_model("sphere20", input_size=(8, 8))
    with pytest.raises(FaceverError, match="input_size must be"):
        create_model("iresnet50", input_size="big")
    assert "weights" in model_options("inception-resnet-v1")


def test_none_overrides_keep_defaults():
    model = create_model("mobilefacenet", embedding_dim=None, input_size=None, width=8)
    assert model.embedding_dim == 128 and model.input_size == (112, 112)


# --- the model.pt bundle ---------------------------------------------------------------------------


def _save(path, arch="iresnet50", **extra):
    kwargs = dict(TINY[arch])
    model = create_model(arch, **kwargs)
    # Train a step's worth of BN statistics so buffers differ from their defaults and must travel too.
    model.train()(torch.randn(4, 3, *model.input_size))
    save_model_bundle(
        path, model, arch=arch, arch_kwargs=kwargs, input_size=model.input_size, mean=model.mean,
        std=model.std, embedding_dim=model.embedding_dim, extra=extra or None,
    )
    return model.eval()


def test_bundle_round_trip_gives_identical_outputs(tmp_path):
    path = tmp_path / "run" / "model.pt"
    model = _save(path, class_map=["ann", "bob"], step=12, val_accuracy=0.93, config={"lr": 0.1, "milestones": [4, 8]})
    loaded, info = load_model_bundle(path)
    assert not loaded.training
    x = torch.randn(3, 3, *model.input_size)
    assert torch.equal(model(x), loaded(x))
    assert info["arch"] == "iresnet50" and info["input_size"] == [32, 32] and info["embedding_dim"] == 16
    assert info["mean"] == [0.5] * 3 and info["color"] == "RGB" and info["format_version"] == 1
    assert info["class_map"] == ["ann", "bob"] and info["step"] == 12 and info["config"]["milestones"] == [4, 8]
    assert "state_dict" not in info
    # The file itself is a plain dict that the safe loader reads.
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "facever-model" and all(t.device.type == "cpu" for t in raw["state_dict"].values())
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_bundle_saves_the_plain_module_inside_a_wrapper(tmp_path):
    model = create_model("sphere20", **TINY["sphere20"]).eval()
    wrapped = torch.nn.DataParallel(model)
    save_model_bundle(tmp_path / "m.pt", wrapped, arch="sphere20", arch_kwargs=TINY["sphere20"], input_size=(32, 24),
                      mean=model.mean, std=model.std, embedding_dim=16)
    loaded, _ = load_model_bundle(tmp_path / "m.pt")
    x = torch.randn(2, 3, 32, 24)
    assert torch.equal(model(x), loaded(x))


def _touch(path):  # what a malicious pickle would run if the loader unpickled arbitrary objects
    open(path, "w").close()
    return path


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker,))


def test_bundle_loading_never_unpickles_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "facever-model", "format_version": 1, "payload": _Payload(str(marker))}, evil)
    with pytest.raises(InputFileError, match=r"evil\.pt: not a readable facever model file"):
        load_model_bundle(evil)
    assert not marker.exists()


def test_bundle_errors_name_the_file(tmp_path):
    with pytest.raises(FaceverError, match=r"missing\.pt: no such model file"):
        load_model_bundle(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x89PNG not a model at all")
    with pytest.raises(InputFileError, match=r"junk\.pt: not a readable facever model file"):
        load_model_bundle(junk)
    plain = tmp_path / "weights.pt"
    torch.save(create_model("sphere20", **TINY["sphere20"]).state_dict(), plain)
    with pytest.raises(InputFileError, match=r"weights\.pt: not a facever model file"):
        load_model_bundle(plain)


def test_bundle_with_unknown_arch_or_wrong_weights(tmp_path):
    path = tmp_path / "model.pt"
    _save(path, "sphere20")
    raw = torch.load(path, weights_only=True)
    torch.save({**raw, "arch": "sphere99"}, tmp_path / "arch.pt")
    with pytest.raises(InputFileError, match=r"arch\.pt: cannot build its model: unknown model 'sphere99'; known models:"):
        load_model_bundle(tmp_path / "arch.pt")
    torch.save({**raw, "arch_kwargs": {**raw["arch_kwargs"], "width": 4}}, tmp_path / "width.pt")
    with pytest.raises(InputFileError, match=r"width\.pt: weights do not fit sphere20"):
        load_model_bundle(tmp_path / "width.pt")
    torch.save({**raw, "format_version": 2}, tmp_path / "future.pt")
    with pytest.raises(InputFileError, match="newer"):
        load_model_bundle(tmp_path / "future.pt")


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "model.pt"
    _save(path, "sphere20", step=1)
    before = path.read_bytes()
    model = create_model("sphere20", **TINY["sphere20"])
    with pytest.raises(ValueError, match="plain data only"):
        save_model_bundle(path, model, arch="sphere20", arch_kwargs=TINY["sphere20"], input_size=(32, 24),
                          mean=model.mean, std=model.std, embedding_dim=16, extra={"config": {"bad": object()}})
    with pytest.raises(ValueError, match="must not reuse"):
        save_model_bundle(path, model, arch="sphere20", arch_kwargs=TINY["sphere20"], input_size=(32, 24),
                          mean=model.mean, std=model.std, embedding_dim=16, extra={"arch": "x"})
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["model.pt"]


# --- facenet-pytorch's Inception-ResNet-v1 -------------------------------------------------------------


@pytest.fixture(scope="module")
def facenet_checkpoint(tmp_path_factory):
    """A state dict in facenet-pytorch's checkpoint layout (with its logits classifier), randomised."""
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    net = InceptionResnetV1(pretrained=None, classify=True, num_classes=9)
    with torch.no_grad():
        for name, buffer in net.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("facenet") / "20180402-114759-vggface2.pt"
    torch.save(net.state_dict(), path)
    return path, net.eval()


def test_inception_resnet_loads_facenet_weights_and_matches_facenet(facenet_checkpoint):
    path, reference = facenet_checkpoint
    model = create_model("inception-resnet-v1", weights=str(path)).eval()
    assert model.mean == (127.5 / 255,) * 3 and model.std == (128 / 255,) * 3
    reference.classify = False  # facenet-pytorch's embedding mode: L2-normalised last_bn output
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    assert torch.allclose(F.normalize(ours, dim=1), theirs, atol=1e-5)
    assert not torch.allclose(ours.norm(dim=1), torch.ones(2))  # facever backbones return unnormalised features


def test_inception_bundle_does_not_need_the_original_weights_file(facenet_checkpoint, tmp_path):
    path, _ = facenet_checkpoint
    copy = tmp_path / "vggface2.pt"
    copy.write_bytes(path.read_bytes())
    model = create_model("inception-resnet-v1", input_size=(96, 96), weights=str(copy)).eval()
    save_model_bundle(tmp_path / "model.pt", model, arch="inception-resnet-v1",
                      arch_kwargs={"input_size": [96, 96], "weights": str(copy)}, input_size=(96, 96),
                      mean=model.mean, std=model.std, embedding_dim=512)
    copy.unlink()
    loaded, info = load_model_bundle(tmp_path / "model.pt")
    assert "weights" not in info["arch_kwargs"]
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_inception_rejects_weights_of_another_network(tmp_path):
    wrong = tmp_path / "sphere.pt"
    torch.save(create_model("sphere20", **TINY["sphere20"]).state_dict(), wrong)
    with pytest.raises(InputFileError, match=r"sphere\.pt: weights do not fit InceptionResnetV1"):
        create_model("inception-resnet-v1", weights=str(wrong))
    with pytest.raises(FaceverError, match=r"nope\.pt: no such weights file"):
        create_model("inception-resnet-v1", weights=str(tmp_path / "nope.pt"))
