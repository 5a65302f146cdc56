"""Model files (model.pt): checked before anything large is allocated; code never runs; one-line errors."""

from __future__ import annotations

import pickle
import time
import zipfile

import pytest
import torch

from tests.bad_input.conftest import TINY_KWARGS, refused, save_tiny_model, write_images


@pytest.fixture
def images(tmp_path):
    write_images(tmp_path / "imgs", names=["Ann", "Bob"])
    return tmp_path


def _nan_first(bundle):
    state = dict(bundle["state_dict"])
    name = next(n for n, t in state.items() if t.is_floating_point())
    state[name] = state[name].clone().fill_(float("nan"))
    return state


CASES = {
    "NaN weights": (dict(state_dict=_nan_first), r"holds NaN or infinite values"),
    "width 100000 (hundreds of GB)": (dict(arch_kwargs={**TINY_KWARGS, "width": 100000}), r"weights do not fit sphere20"),
    "arch_kwargs a list": (dict(arch_kwargs=[1, 2]), r"arch_kwargs \[1, 2\]: not a mapping"),
    "arch_kwargs of the wrong type": (dict(arch_kwargs={**TINY_KWARGS, "width": "wide"}), r"cannot build sphere20|cannot build its model"),
    "unknown option": (dict(arch_kwargs={**TINY_KWARGS, "colour": 1}), r"cannot build its model: .*no option colour"),
    "embedding_dim a string": (dict(embedding_dim="8"), r"embedding_dim '8': expected a positive whole number"),
    "embedding_dim not the model's": (dict(embedding_dim=9), r"embedding_dim 9 is not its model's \(8\)"),
    "std 0": (dict(std=[0.5, 0.0, 0.5]), r"std .*every value must be above 0"),
    "mean NaN": (dict(mean=[0.5, float("nan"), 0.5]), r"mean .*expected 3 finite numbers"),
    "input_size 0x0": (dict(input_size=[0, 0]), r"input_size \[0, 0\]: expected \[height, width\]"),
    "input_size 1x1": (dict(input_size=[1, 1]), r"input_size \[1, 1\] is not its model's \(32x24\)"),
    "input_size not the architecture's": (dict(input_size=[64, 64]), r"input_size \[64, 64\] is not its model's"),
    "state_dict a list": (dict(state_dict=[1, 2]), r"state_dict is not a mapping of names to tensors"),
    "missing weight": (dict(state_dict=lambda b: dict(list(b["state_dict"].items())[1:])), r"weights do not fit .*missing"),
    "unknown arch": (dict(arch="resnet9000"), r"unknown model 'resnet9000'"),
    "arch not a string": (dict(arch=3), r"arch 3: not a model name"),
    "format version a string": (dict(format_version="1"), r"format version '1' is not a version number"),
    "format version newer": (dict(format_version=7), r"format version 7 is newer"),
    "no format marker": (dict(format="other"), r"not a facever model file"),
    "color BGR": (dict(color="BGR"), r"color 'BGR': only RGB"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_edited_model_refused(images, case):
    changes, match = CASES[case]
    model = save_tiny_model(images / "model.pt", **changes)
    started = time.perf_counter()
    refused(["embed", model, images / "imgs", "--out", images / "out.npz", "--device", "cpu"], match, images)
    assert time.perf_counter() - started < 20  # refused from the metadata, not after allocating


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def _pickled_code(path):
    torch.save({"format": "facever-model", "payload": Evil()}, path)


def _not_zip(path):
    path.write_text("not a model")


def _truncated(path):
    save_tiny_model(path)
    path.write_bytes(path.read_bytes()[:2000])


def _plain_pickle(path):
    path.write_bytes(pickle.dumps({"format": "facever-model"}))


def _empty_zip(path):
    with zipfile.ZipFile(path, "w"):
        pass


FILE_CASES = {
    "pickled code": (_pickled_code, r"not a readable facever model file"),
    "not a zip": (_not_zip, r"not a readable facever model file"),
    "truncated": (_truncated, r"not a readable facever model file"),
    "plain pickle": (_plain_pickle, r"not a readable facever model file|not a facever model file"),
    "empty zip": (_empty_zip, r"not a readable facever model file"),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_broken_model_file_refused(images, case, capfd):
    make, match = FILE_CASES[case]
    make(images / "model.pt")
    refused(["embed", images / "model.pt", images / "imgs", "--out", images / "out.npz", "--device", "cpu"], match, images)
    assert "code ran" not in capfd.readouterr().out


def test_checkpoint_given_as_model(images):
    torch.save({"format": "facever-checkpoint", "format_version": 1}, images / "checkpoint.pt")
    refused(["embed", images / "checkpoint.pt", images / "imgs", "--out", images / "out.npz"], r"not a facever model file", images)


def test_missing_model(images):
    refused(["embed", images / "none.pt", images / "imgs", "--out", images / "out.npz"], r"none\.pt", images)


def test_nan_weights_refused_by_eval_lfw_too(images, tmp_path):
    save_tiny_model(images / "model.pt", state_dict=_nan_first)
    (images / "pairs.txt").write_text("2\t1\nAnn 1 2\nAnn 1 Bob 1\nBob 1 2\nAnn 2 Bob 2\n")
    refused(["eval-lfw", "--pairs", images / "pairs.txt", "--model", images / "model.pt", "--images", images / "imgs",
             "--out", images / "out"], r"NaN", images)


# -- TorchScript is code: run only from a file named *.torchscript / *.ts -------------------------------

def _code_archive(path, victim):
    """A TorchScript archive with facever's preprocessing record whose forward overwrites `victim`
    (through a shared memory map of the file): what a crafted `model.pt` could do if it were run."""
    import json
    import warnings

    class Payload(torch.nn.Module):
        def __init__(self, target: str):
            super().__init__()
            self.target = target

        def forward(self, x):
            t = torch.from_file(self.target, shared=True, size=4, dtype=torch.uint8)
            t.fill_(88)
            return x.flatten(1)[:, :8] + t[:1].float() * 0.0

    meta = {"input_size": [32, 24], "mean": [0.5] * 3, "std": [0.5] * 3, "color": "RGB", "embedding_dim": 8}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(Payload(str(victim))), str(path), _extra_files={"facever.json": json.dumps(meta)})
    return path


@pytest.fixture
def code_archive(images):
    victim = images / "victim.txt"
    victim.write_text("precious")
    return _code_archive(images / "model.pt", victim), victim


TS_REFUSED = r"model\.pt: is a TorchScript archive, not a weights file: TorchScript is code.*\*\.torchscript or \*\.ts"


def test_code_named_model_pt_is_not_run_by_embed(images, code_archive):
    model, victim = code_archive
    refused(["embed", model, images / "imgs", "--out", images / "out.npz", "--device", "cpu", "--workers", "0"],
            TS_REFUSED, images)
    assert victim.read_text() == "precious"


def test_code_named_model_pt_is_not_run_by_verify(images, code_archive):
    model, victim = code_archive
    imgs = sorted((images / "imgs" / "Ann").iterdir())
    refused(["verify", imgs[0], imgs[1], "--model", model, "--aligned", "--device", "cpu"], TS_REFUSED, images)
    assert victim.read_text() == "precious"


def test_code_named_model_pt_is_not_run_by_eval_lfw(images, code_archive):
    model, victim = code_archive
    (images / "pairs.txt").write_text("2\t1\nAnn 1 2\nAnn 1 Bob 1\nBob 1 2\nAnn 2 Bob 2\n")
    refused(["eval-lfw", "--pairs", images / "pairs.txt", "--model", model, "--images", images / "imgs",
             "--out", images / "out", "--device", "cpu"], TS_REFUSED, images)
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("kind", ["arcface:r18", "facenet:vggface2"])
def test_code_named_as_weights_is_not_run(images, code_archive, kind):
    model, victim = code_archive
    refused(["embed", kind, images / "imgs", "--weights", model, "--out", images / "out.npz", "--device", "cpu"],
            TS_REFUSED, images)
    assert victim.read_text() == "precious"


def test_the_same_code_runs_when_named_as_torchscript(tmp_path):
    """The control: the payload above really writes when the user asks for TorchScript by name, so the
    refusals are of code that would have run."""
    from tests.bad_input.conftest import accepted

    write_images(tmp_path / "imgs", names=["Ann"])
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    model = _code_archive(tmp_path / "trusted.torchscript", victim)
    accepted(["embed", model, tmp_path / "imgs", "--out", tmp_path / "out.npz", "--device", "cpu", "--workers", "0"])
    assert victim.read_text() == "XXXXious"


@pytest.mark.parametrize("out", ["model.pt", "noisy.onnx", "noisy"])
def test_export_torchscript_named_like_weights_refused(tmp_path, tiny_model, out):
    refused(["export", tiny_model, "--format", "torchscript", "--out", tmp_path / out],
            r"a TorchScript file must be named \*\.torchscript or \*\.ts.*TorchScript is code", tmp_path)


def test_export_onnx_named_otherwise_refused(tmp_path, tiny_model):
    refused(["export", tiny_model, "--out", tmp_path / "model.pt"], r"model\.pt: an ONNX file must be named \*\.onnx", tmp_path)
