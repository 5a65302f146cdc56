"""`facever verify` and the one forward loop: thresholds that cannot decide, models whose output is not
embeddings, preprocessing and devices that cannot work: one line each, no traceback, nothing written."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from tests.bad_input.conftest import refused, write_images


@pytest.fixture
def photos(tmp_path):
    write_images(tmp_path / "imgs", names=["Ann", "Bob"])
    a, b = sorted((tmp_path / "imgs" / "Ann").iterdir())
    return tmp_path, a, b


@pytest.mark.parametrize("threshold, match", [
    ("nan", r"`?-?-?threshold`? nan: not a number; give a cosine similarity between -1 and 1"),
    ("inf", r"threshold.? inf: not a number"),
    ("5", r"threshold.? 5\.0: a cosine similarity lies between -1 and 1, so every pair would be called different people"),
    ("-3", r"threshold.? -3\.0: .*called the same person"),
])
def test_threshold_that_cannot_decide(photos, tiny_model, threshold, match):
    root, a, b = photos
    refused(["verify", a, a, "--model", tiny_model, "--aligned", "-t", threshold, "--device", "cpu"], match, root)


def _scripted(path, forward_body: str):
    """A TorchScript model (asked for by its name) whose forward is `forward_body` of x (N x 3 x 32 x 24)."""
    source = f"def forward(x):\n    return {forward_body}\n"
    namespace: dict = {}
    exec(source, {"torch": torch}, namespace)  # noqa: S102 - the test's own model
    meta = {"input_size": [32, 24], "mean": [0.5] * 3, "std": [0.5] * 3, "color": "RGB"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)

        class Model(torch.nn.Module):
            pass

        Model.forward = lambda self, x: namespace["forward"](x)
        traced = torch.jit.trace(Model(), torch.zeros(2, 3, 32, 24), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"facever.json": json.dumps(meta)})
    return path


@pytest.mark.parametrize("body, match", [
    # Two photos, each with its mirror image (flip concat): the model sees 4 images and gives 2 embeddings.
    ("x.sum()", r"torchscript:model\.torchscript: the model returned shape \(\) for 4 images; an embedding model "
                r"returns N x D"),
    ("x.flatten(1)[:, :8] * 0.0", r"torchscript:model\.torchscript gave 2 of 2 embeddings that are all zeros"),
    ("x.flatten(1)[:, :8] * float('nan')", r"gave 2 of 2 embeddings with NaN or infinite values"),
])
def test_model_whose_output_is_not_embeddings(photos, body, match):
    root, a, b = photos
    model = _scripted(root / "model.torchscript", body)
    refused(["verify", a, b, "--model", model, "--aligned", "--device", "cpu", "--flip", "concat"], match, root)


def test_model_output_checked_by_embed_too(photos):
    root, _, _ = photos
    model = _scripted(root / "model.torchscript", "x.flatten(1)[:, :8] * float('nan')")
    refused(["embed", model, root / "imgs", "--out", root / "out.npz", "--device", "cpu", "--workers", "0"],
            r"embeddings with NaN or infinite values", root, resume_files=(".out.partial",))


@pytest.mark.parametrize("option, value, match", [
    ("--mean", "nan", r"--mean 'nan': every value must be a finite number \(on the 0\.\.255 pixel scale\)"),
    ("--std", "-1", r"--std '-1': every value must be above 0 \(on the 0\.\.255 pixel scale\)"),
    ("--std", "1,2", r"--std '1,2': expected one value or three"),
])
def test_preprocessing_checked_on_the_scale_typed(photos, option, value, match):
    root, a, b = photos
    model = _scripted(root / "model.torchscript", "x.flatten(1)[:, :8]")
    refused(["verify", a, b, "--model", model, "--aligned", option, value, "--device", "cpu"], match, root)


@pytest.mark.parametrize("device, match", [
    ("mps", r"--device mps: not available \((this PyTorch is built without MPS|no Apple GPU here)\)"),
    ("meta", r"--device meta: not a device facever runs on"),
])
def test_device_that_this_build_lacks(photos, tiny_model, device, match):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    root, a, b = photos
    refused(["verify", a, b, "--model", tiny_model, "--aligned", "--device", device], match, root)
