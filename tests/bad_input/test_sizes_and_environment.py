"""Unbounded sizes and environment values: a declared size, a worker count, a nesting depth or an
environment variable is bounded or checked before anything is allocated, started or waited on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.bad_input.conftest import accepted, refused, write_images


@pytest.fixture
def images(tmp_path):
    write_images(tmp_path / "imgs", names=["Ann", "Bob"])
    return tmp_path


def _onnx(path, side: int):
    """A valid ONNX graph declaring N x 3 x side x side images (its output: the per-channel mean, N x 3)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, side, side])
    out = helper.make_tensor_value_info("e", TensorProto.FLOAT, ["n", 3])
    node = helper.make_node("ReduceMean", ["x", "axes"], ["e"], keepdims=0)
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    model = helper.make_model(helper.make_graph([node], "g", [image], [out], initializer=[axes]),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_onnx_declaring_huge_images_refused_before_allocating(images):
    pytest.importorskip("onnxruntime")
    model = _onnx(images / "huge.onnx", 100_000)
    refused(["embed", model, images / "imgs", "--out", images / "out.npz", "--device", "cpu", "--workers", "0"],
            r"huge\.onnx: input 'x' declares images of 100000x100000, outside 8\.\.4096 pixels a side", images)


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0", "1e300", "soon"])
def test_progress_interval_checked_like_an_option(images, tiny_model, monkeypatch, value):
    monkeypatch.setenv("FACEVER_PROGRESS_INTERVAL", value)
    refused(["embed", tiny_model, images / "imgs", "--out", images / "out.npz", "--device", "cpu", "--workers", "0"],
            rf"environment variable FACEVER_PROGRESS_INTERVAL='{value}': expected a number of seconds from 0\.1 to 86400",
            images)


def test_offline_flag_checked_like_an_option(images, tiny_model, monkeypatch):
    monkeypatch.setenv("FACEVER_OFFLINE", "maybe")
    refused(["embed", tiny_model, images / "imgs", "--out", images / "out.npz"],
            r"FACEVER_OFFLINE='maybe': expected 1/true/yes/on or 0/false/no/off", images)


def test_workers_bounded_by_the_cpus_and_the_work(images, tiny_model, monkeypatch):
    """`--workers 1000` on 4 images (one batch): one worker process at most, not a thousand starting up."""
    import torch.utils.data

    from facever.core.devices import available_cpus, bound_workers

    started = []
    real = torch.utils.data.DataLoader.__init__

    def spy(self, *args, **kwargs):
        started.append(kwargs.get("num_workers", 0))
        real(self, *args, **kwargs)

    monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", spy)
    accepted(["embed", tiny_model, images / "imgs", "--out", images / "out.npz", "--device", "cpu", "--workers", "1000"])
    assert started == [1]
    cpus = available_cpus()
    assert bound_workers(1000, tasks=10) == min(10, cpus) and bound_workers(3, tasks=1) == 1
    assert bound_workers(0, tasks=100) == 0 and bound_workers(2, tasks=0) == 0


def test_deeply_nested_report_in_compare(tmp_path):
    run = tmp_path / "run"
    (run / "lfw").mkdir(parents=True)
    (run / "config.toml").write_text('arch = "sphere20"\n')
    (run / "lfw" / "report.json").write_text("[" * 100_000 + "]" * 100_000)
    result = accepted(["compare", run, "--json"])
    assert json.loads(result.stdout)["runs"][0]["benchmarks"] == {}  # not a report: nothing to show, no traceback


def test_deeply_nested_config_json_in_compare(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    refused(["compare", run], r"run/config\.json: not valid JSON \(nested too deeply\)", tmp_path)


def test_deeply_nested_threshold_report_in_verify(images, tiny_model):
    (images / "report.json").write_text("[" * 100_000)
    a, b = sorted((images / "imgs" / "Ann").iterdir())
    refused(["verify", a, b, "--model", tiny_model, "--aligned", "--threshold-from", images / "report.json"],
            r"report\.json: not valid JSON \(nested too deeply\)", images)


def test_deeply_nested_embeddings_metadata(tmp_path):
    from tests.bad_input.conftest import lfw_items, lfw_lines

    items = lfw_items()
    np.savez(tmp_path / "emb.npz", paths=np.array(items), embeddings=np.ones((len(items), 4), np.float32),
             metadata=np.array("[" * 100_000))
    (tmp_path / "pairs.txt").write_text("10\t1\n" + "\n".join(lfw_lines()) + "\n")
    refused(["eval-lfw", "--pairs", tmp_path / "pairs.txt", "-e", tmp_path / "emb.npz"],
            r"emb\.npz: `metadata` is not a JSON object", tmp_path)
