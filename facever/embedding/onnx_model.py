"""Face-embedding ONNX graphs run with onnxruntime, behind the same module interface as a PyTorch model.

`OnnxModule` is what `EmbeddingModel.module` holds for a `.onnx` file: called with a normalised
`N x 3 x H x W` float tensor it returns the `N x D` float32 embeddings, so the one forward loop
(`facever.embedding.extract.ForwardLoop`) drives it like any other model.

What a graph must look like (InsightFace's `w600k_r50.onnx`, `buffalo_l`'s recognition model, and what
`facever export` writes): one image input `N x 3 x H x W` (H and W fixed; N fixed or dynamic) and one
output `N x D`. A graph with a fixed batch is run in chunks of that batch (the last one padded), so the
batch size never changes the result.

Preprocessing: the ONNX metadata `facever.*` written by `facever export` when present, else
InsightFace's (RGB, `(x - 127.5) / 127.5` on 0..255 pixels); the caller may override either.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from facever.core.errors import FaceverError, InputFileError
from facever.core.json_files import parse_json
from facever.core.sizes import size_problem

log = logging.getLogger(__name__)

INSTALL_HINT = "ONNX support needs onnxruntime (and onnx, onnxscript to export): pip install 'facever[onnx]'"
# InsightFace's recognition models: `(img - 127.5) / 127.5` on RGB, i.e. mean 0.5, std 0.5 on 0..1.
INSIGHTFACE_MEAN = (0.5, 0.5, 0.5)
INSIGHTFACE_STD = (0.5, 0.5, 0.5)
# Keys `facever export` writes into the graph's metadata_props (values are JSON).
METADATA_PREFIX = "facever."


def import_onnxruntime():
    """onnxruntime, or a FaceverError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise FaceverError(INSTALL_HINT) from None
    return onnxruntime


class OnnxModule:
    """An onnxruntime session that quacks like an eval-mode `torch.nn.Module` for the embedding loop."""

    def __init__(self, path: str | Path, *, device: Any = "cpu"):
        self.path = Path(path)
        ort = import_onnxruntime()
        self._ort = ort
        if not self.path.is_file():
            raise FaceverError(f"{self.path}: no such ONNX model file")
        self.providers = ["CPUExecutionProvider"]
        self.session = self._open(self.providers)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            names = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise InputFileError(self.path, f"expected one image input, the graph has {len(inputs)}: {names}")
        if len(outputs) != 1:
            names = ", ".join(f"{o.name} {o.shape}" for o in outputs)
            raise InputFileError(self.path, f"expected one embedding output, the graph has {len(outputs)}: {names}")
        spec, out = inputs[0], outputs[0]
        shape = list(spec.shape)
        if len(shape) != 4 or shape[1] != 3 or not all(isinstance(v, int) and v > 0 for v in shape[2:]):
            raise InputFileError(self.path, f"input {spec.name!r} has shape {shape}: not a face image input "
                                            "(expected N x 3 x H x W with H and W fixed)")
        if spec.type != "tensor(float)":
            raise InputFileError(self.path, f"input {spec.name!r} is {spec.type}; expected tensor(float) pixels")
        if len(out.shape) != 2:
            raise InputFileError(self.path, f"output {out.name!r} has shape {list(out.shape)}; expected N x D embeddings")
        self.input_name, self.output_name = spec.name, out.name
        self.input_size = (int(shape[2]), int(shape[3]))
        problem = size_problem(*self.input_size)
        if problem is not None:  # refused before any batch of that size is allocated
            raise InputFileError(self.path, f"input {spec.name!r} declares images of {problem}")
        # A fixed batch dimension (an int) must be respected; a name or None is dynamic.
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.embedding_dim = out.shape[1] if isinstance(out.shape[1], int) else None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.to(device)

    def _open(self, providers):
        import torch

        options = self._ort.SessionOptions()
        options.log_severity_level = 3  # errors only: onnxruntime's warnings would go to stderr unasked
        # The same thread budget as PyTorch (OMP_NUM_THREADS, torch.set_num_threads), and no busy-waiting
        # between runs: onnxruntime's spinning threads otherwise starve the image-decoding workers.
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return self._ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            text = str(exc).strip().splitlines()
            reason = text[0] if text else type(exc).__name__
            raise InputFileError(self.path, f"not a readable ONNX model ({reason[:200]})") from None

    # -- torch.nn.Module's interface, as far as the embedding loop uses it --------------------------
    def eval(self):
        return self

    def modules(self):
        return iter(())  # no torch sub-modules: nothing to fold or convert

    def to(self, *args, **kwargs):
        """Choose the execution provider from a device (`cuda` -> CUDAExecutionProvider when installed)."""
        import torch

        device = kwargs.get("device", args[0] if args and not isinstance(args[0], torch.memory_format) else None)
        if device is None:
            return self  # a dtype or memory-format change: the graph has its own
        device_type = torch.device(device).type if not isinstance(device, torch.device) else device.type
        wanted = ["CPUExecutionProvider"]
        if device_type == "cuda":
            if "CUDAExecutionProvider" in self._ort.get_available_providers():
                wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            else:
                log.warning("onnxruntime has no CUDA provider here (install onnxruntime-gpu); running %s on the CPU",
                            self.path.name)
        if wanted != self.providers:
            self.session = self._open(wanted)
            self.providers = wanted
        return self

    def __call__(self, x):
        import torch

        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        n = array.shape[0]
        if self.fixed_batch is None:
            out = self._run(array)
        else:
            b = self.fixed_batch
            chunks = []
            for start in range(0, n, b):
                part = array[start:start + b]
                if part.shape[0] < b:  # pad the last chunk; the padding's rows are dropped
                    pad = np.zeros((b - part.shape[0], *part.shape[1:]), dtype=np.float32)
                    part = np.concatenate([part, pad])
                chunks.append(self._run(part)[: min(b, n - start)])
            out = np.concatenate(chunks) if chunks else np.zeros((0, self.embedding_dim or 0), np.float32)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).to(x.device)

    def _run(self, array: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: array})[0]
        if out.ndim != 2 or out.shape[0] != array.shape[0]:
            raise InputFileError(self.path, f"output has shape {out.shape} for {array.shape[0]} inputs; expected N x D")
        return out

    def facever_metadata(self) -> dict[str, Any]:
        """The `facever.*` metadata written by `facever export` (JSON values decoded), or {}."""
        meta = {}
        for key, value in self.metadata.items():
            if key.startswith(METADATA_PREFIX):
                try:
                    meta[key[len(METADATA_PREFIX):]] = parse_json(value, self.path)
                except InputFileError:  # not JSON (or nested too deeply): kept as text, checked by its reader
                    meta[key[len(METADATA_PREFIX):]] = value
        return meta
