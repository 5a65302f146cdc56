"""Exporting a model to ONNX or TorchScript, with the preprocessing written into the file and checked equality.

`export_model(spec, out, format="onnx")` loads any PyTorch model `load_embedding_model` accepts (a
facever `model.pt`, `arcface:r50=backbone.pth`, ...), writes

- ONNX: torch's current (torch.export-based) exporter, a dynamic batch axis named `batch`, the
  input `input` (N x 3 x H x W, float32, already normalised) and output `embedding` (N x D); the
  preprocessing as `metadata_props` `facever.input_size`, `facever.mean`, `facever.std`,
  `facever.color`, `facever.crop`, `facever.embedding_dim`, `facever.arch`, `facever.source_sha256` and, for a
  calibrated model, `facever.calibration` (JSON values; mean/std on the 0..1 scale:
  `x = (pixels / 255 - mean) / std`);
- TorchScript: a traced module with the same facts in the archive's `extra/facever.json`, in a file
  named `*.torchscript` or `*.ts` (the only names facever loads TorchScript from: it is code);

then runs the written file (onnxruntime, or `torch.jit.load`) on a few inputs of several batch sizes
and refuses to finish (no file left behind) if any output's cosine similarity with the PyTorch
model's is below `min_cosine`. The file appears atomically, only after the check passed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facever.core.atomic import atomic_path
from facever.core.errors import FaceverError
from facever.core.settings import ONNX_SUFFIX, TORCHSCRIPT_SUFFIXES

log = logging.getLogger(__name__)

from facever.core.settings import EXPORT_FORMATS as FORMATS
MIN_COSINE = 0.9999
# Batch sizes the check runs: one image, an odd count, and more than the example the graph was traced with.
CHECK_BATCHES = (1, 3, 5)


@dataclass
class ExportResult:
    path: Path
    format: str
    min_cosine: float  # the smallest cosine similarity between the file's and PyTorch's outputs
    checked_inputs: int
    metadata: dict[str, Any] = field(default_factory=dict)
    opset: int | None = None


def export_metadata(model) -> dict[str, Any]:
    """What a consumer of the exported file needs to feed it (JSON-ready)."""
    h, w = (int(v) for v in model.input_size)
    return {
        "input_size": [h, w],
        "mean": [float(v) for v in model.mean],
        "std": [float(v) for v in model.std],
        "color": model.color,
        "pixel_formula": "x = (pixels / 255 - mean) / std, pixels 0..255, channels in `color` order, NCHW",
        "crop": {
            "size": [h, w],
            "policy": "face aligned by a 5-point similarity transform (eyes, nose, mouth corners) onto "
                      f"facever's {h}x{w} template (`facever align --size {h}x{w}`; 112x112 is ArcFace's)",
        },
        "embedding_dim": int(model.embedding_dim) if model.embedding_dim else None,
        "arch": str(model.extra.get("arch", model.model_id)),
        "source_model": model.model_id,
        "source_sha256": model.fingerprint,
        "output": "raw embedding (compare after L2 normalisation)",
        # `facever calibrate --attach`'s thresholds travel with the model they were measured on.
        **({"calibration": model.calibration.to_dict()} if getattr(model, "calibration", None) else {}),
    }


def export_model(
    spec: str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str = "onnx",
    weights: str | os.PathLike | None = None,
    opset: int | None = None,
    min_cosine: float = MIN_COSINE,
    seed: int = 0,
) -> ExportResult:
    """Export the model `spec` to `out` and check the file reproduces it (see module doc).

    Raises:
        FaceverError: unknown format, a model that is itself ONNX/TorchScript, missing onnx packages
            (says how to install them), an export that fails, or a file whose outputs differ.
    """
    import torch

    from facever.embedding.extract import runs_own_graph
    from facever.embedding.loading import load_embedding_model

    if format not in FORMATS:
        raise FaceverError(f"unknown export format {format!r}; use one of: {', '.join(FORMATS)}")
    out = Path(out)
    check_export_name(out, format)
    if format == "onnx":
        _require_onnx()  # before any work: say how to install what is missing
    model = load_embedding_model(spec, weights=weights, device="cpu")
    if runs_own_graph(model):
        raise FaceverError(f"{spec} is already an exported {model.extra['runtime']} model; export its model.pt")
    module = model.module.eval().float()
    meta = export_metadata(model)
    h, w = model.input_size
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(2, 3, h, w, generator=generator)
    checks = [torch.randn(n, 3, h, w, generator=generator) for n in CHECK_BATCHES]
    with torch.inference_mode():
        expected = [module(x).float().numpy() for x in checks]

    with atomic_path(out) as tmp:
        if format == "onnx":
            used_opset = _export_onnx(module, example, tmp, meta, opset=opset)
            run = _onnx_runner(tmp)
        else:
            used_opset = None
            _export_torchscript(module, example, tmp, meta)
            run = _torchscript_runner(tmp)
        worst = 1.0
        for x, want in zip(checks, expected):
            got = run(x.numpy())
            if got.shape != want.shape:
                raise FaceverError(f"exported {format} gives shape {got.shape} for batch {x.shape[0]}, "
                                   f"PyTorch gives {want.shape}; not written")
            worst = min(worst, float(_row_cosines(got, want).min()))
        if not worst >= min_cosine:  # also refuses NaN
            raise FaceverError(f"exported {format} disagrees with the PyTorch model: cosine similarity {worst:.6f} "
                               f"< {min_cosine} on random inputs; not written")
    log.info("exported %s to %s (min cosine vs PyTorch %.7f)", model.model_id, out, worst)
    return ExportResult(path=out, format=format, min_cosine=worst, checked_inputs=sum(CHECK_BATCHES),
                        metadata=meta, opset=used_opset)


def check_export_name(out: str | Path, format: str) -> None:
    """The written file must carry its format's suffix: facever (and `facever embed OUT`) loads ONNX and
    TorchScript by the file's name, and TorchScript, being code, only by its name (core.model_files)."""
    if format == "onnx":
        suffixes, what, why = (ONNX_SUFFIX,), "an ONNX", ""
    else:
        suffixes, what = TORCHSCRIPT_SUFFIXES, "a TorchScript"
        why = " (TorchScript is code: facever runs it only from a file named so)"
    if Path(out).suffix.lower() not in suffixes:
        names = " or ".join(f"*{s}" for s in suffixes)
        raise FaceverError(f"{out}: {what} file must be named {names}, the name facever loads it by{why}",
                           options=("out",))


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _require_onnx():
    """onnx, onnxscript (torch's exporter) and onnxruntime (the check) present, or a FaceverError saying how to install them."""
    import importlib

    try:
        for name in ("onnx", "onnxscript"):
            importlib.import_module(name)
    except ImportError:
        from facever.embedding.onnx_model import INSTALL_HINT

        raise FaceverError(INSTALL_HINT) from None
    from facever.embedding.onnx_model import import_onnxruntime

    import_onnxruntime()


def _export_onnx(module, example, path: Path, meta: dict[str, Any], *, opset: int | None) -> int:
    import warnings

    import onnx
    import torch

    kwargs: dict[str, Any] = {}
    if opset is not None:
        kwargs["opset_version"] = int(opset)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's progress notes and deprecations are not the user's
            torch.onnx.export(
                module, (example,), str(path), dynamo=True, input_names=["input"], output_names=["embedding"],
                dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False, report=False, **kwargs,
            )
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise FaceverError(f"ONNX export failed: {type(exc).__name__}: {text[0][:300] if text else ''}") from None
    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    for key, value in meta.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = f"facever.{key}", json.dumps(value)
    graph.producer_name = "facever"
    onnx.save(graph, str(path))
    return max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _onnx_runner(path: Path):
    from facever.embedding.onnx_model import OnnxModule

    module = OnnxModule(path, device="cpu")

    def run(x: np.ndarray) -> np.ndarray:
        import torch

        return module(torch.from_numpy(x)).numpy()

    return run


def _export_torchscript(module, example, path: Path, meta: dict[str, Any]) -> None:
    import torch

    from facever.embedding.loading import TORCHSCRIPT_EXTRA, quiet_torchscript

    try:
        with torch.no_grad(), quiet_torchscript():
            traced = torch.jit.trace(module, example, check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_EXTRA: json.dumps(meta)})
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise FaceverError(f"TorchScript export failed: {type(exc).__name__}: {text[0][:300] if text else ''}") from None


def _torchscript_runner(path: Path):
    import torch

    from facever.embedding.loading import quiet_torchscript

    with quiet_torchscript():
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).float().numpy()

    return run



def attach_calibration(spec: str | os.PathLike, calibration) -> Path:
    """Store `calibration` (a `Calibration`) in the model file `spec`, replacing an earlier one, atomically:
    a facever model.pt (its `calibration` key) or a .onnx graph (metadata `facever.calibration`).

    Raises FaceverError for other models (facenet:*, arcface:* state dicts, TorchScript): keep the
    calibration.json beside them instead.
    """
    from facever.core.model_files import is_torchscript_name
    from facever.embedding.loading import CALIBRATION_KEY

    text = str(spec)
    path = Path(text)
    if path.is_dir() and (path / "model.pt").is_file():
        path = path / "model.pt"
    if text.startswith(("facenet:", "arcface:")) or is_torchscript_name(path) or not path.is_file():
        raise FaceverError(f"{spec}: a calibration can be attached to a facever model.pt or a .onnx graph only; "
                           "keep calibration.json and give it to verify and identify")
    data = calibration.to_dict()
    if path.suffix.lower() == ".onnx":
        import onnx

        try:
            graph = onnx.load(str(path))
        except Exception as exc:
            raise FaceverError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
        kept = [p for p in graph.metadata_props if p.key != f"facever.{CALIBRATION_KEY}"]
        del graph.metadata_props[:]
        for p in kept:
            graph.metadata_props.add(key=p.key, value=p.value)
        graph.metadata_props.add(key=f"facever.{CALIBRATION_KEY}", value=json.dumps(data))
        with atomic_path(path) as tmp:
            onnx.save(graph, str(tmp))
        return path
    from facever.models.bundle import attach_to_bundle

    return attach_to_bundle(path, CALIBRATION_KEY, data)
