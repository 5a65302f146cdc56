"""Loading a face model for embedding, whatever produced it, with the preprocessing it was trained with.

Sources:

- a pretrained model by name (`arcface-r50-webface600k`, `facenet-vggface2`, ...: the registry of
  `facever.data_prep.pretrained`): pulled into the cache on first use, checked against its pinned
  checksum on every use, then read by the loader its format needs (below);
- a facever model file (`RUN/model.pt` from `facever train`, or the `RUN/` folder holding it): the file
  carries its architecture, crop size, colour order and normalisation (`facever.models.bundle`);
- `facenet:vggface2` / `facenet:casia-webface`: facenet-pytorch's InceptionResnetV1, the model most
  PyTorch users start from. Its weights come from `weights=FILE` (or inline: `facenet:vggface2=PATH`),
  else exactly as the registry's `facenet-vggface2` / `facenet-casia-webface`: facever's cache,
  facenet-pytorch's (`$TORCH_HOME/checkpoints/<file>`), or a pull of facenet-pytorch's release file;
- `arcface:r18|r34|r50|r100|r200` with `weights=backbone.pth` (or `arcface:r50=PATH`): an InsightFace
  arcface_torch IResNet state dict, mapped into facever's IResNet (`facever.models.arcface`);
- `model.onnx`: any face-embedding ONNX graph, run with onnxruntime (`facever.embedding.onnx_model`);
  preprocessing from the graph's `facever.*` metadata (`facever export`) or InsightFace's default;
- a TorchScript file from `facever export --format torchscript`, named `*.torchscript` or `*.ts`.
  TorchScript is code: it is run only from a file named so, never because of what a file holds
  (`facever.core.model_files`); load only TorchScript files you trust.

Every other file is read with `torch.load(weights_only=True)` (`load_tensor_file`): a model file is
data, never code; a TorchScript archive named like a weights file (`model.pt`) is refused.
`mean`, `std` and `color` override the preprocessing of ONNX and TorchScript models (other sources
carry the preprocessing they were trained with).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from facever.core.checksums import file_digest
from facever.core.errors import FaceverError, InputFileError
from facever.core.json_files import parse_json
from facever.data_prep import pretrained
from facever.core.model_files import is_torchscript_name
from facever.core.settings import ONNX_SUFFIX
from facever.core.sizes import size_problem

log = logging.getLogger(__name__)

# facenet-pytorch's release files (models/inception_resnet_v1.py, `load_weights`), as the registry has them:
# variant -> (file name, URL), and the registry entry of each.
_FACENET_ENTRIES = {e.variant: e for e in pretrained.PRETRAINED.values() if e.format == "facenet"}
FACENET_WEIGHTS: dict[str, tuple[str, str]] = {v: (e.download, e.url) for v, e in _FACENET_ENTRIES.items()}
FACENET_INPUT_SIZE = pretrained.PRETRAINED["facenet-vggface2"].contract.input_size
# facenet-pytorch's `fixed_image_standardization`: (x - 127.5) / 128 on 0..255 pixels, written in our
# (x/255 - mean) / std convention.
FACENET_MEAN = (127.5 / 255.0,) * 3
FACENET_STD = (128.0 / 255.0,) * 3


@dataclass(frozen=True, eq=False)
class EmbeddingModel:
    """A backbone plus everything needed to feed it: `forward(N x 3 x H x W float) -> N x D`.

    Input convention: `x = (pixels / 255 - mean) / std` per channel, channels in `color` order
    ("RGB" or "BGR"), spatial size `input_size = (height, width)`.
    """

    module: Any  # torch.nn.Module in eval mode
    model_id: str
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color: str = "RGB"
    embedding_dim: int | None = None
    source: str = ""
    # sha256 of the weights file: two embeddings files with the same fingerprint came from the same weights.
    fingerprint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # The `Calibration` stored in the file by `facever calibrate --attach` (or carried by `facever
    # export`), None when uncalibrated. Not part of `metadata()`: embeddings do not depend on it.
    calibration: Any = None

    @property
    def preprocessing(self) -> str:
        h, w = self.input_size
        mean = ", ".join(f"{m:.4g}" for m in self.mean)
        std = ", ".join(f"{s:.4g}" for s in self.std)
        return f"{self.color} {h}x{w} (h x w), x = (pixels/255 - [{mean}]) / [{std}]"

    def metadata(self) -> dict[str, Any]:
        """What an embeddings file records about the model (JSON-ready)."""
        return {
            "model": self.model_id,
            "model_source": self.source,
            "model_sha256": self.fingerprint,
            "input_size": list(self.input_size),
            "color": self.color,
            "mean": list(self.mean),
            "std": list(self.std),
            "preprocessing": self.preprocessing,
            **({"embedding_dim_model": self.embedding_dim} if self.embedding_dim else {}),
            **self.extra,
        }


def load_embedding_model(
    spec: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    device="cpu",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    color: str | None = None,
) -> EmbeddingModel:
    """Load a model for embedding.

    Args:
        spec: a pretrained model's name (`arcface-r50-webface600k`: pulled into the cache on first use,
            see `facever.data_prep.pretrained`); a facever model file (`RUN/model.pt`) or its run folder; `facenet:vggface2` /
            `facenet:casia-webface` (optionally `=WEIGHTS_FILE`); `arcface:r50` (etc., optionally
            `=WEIGHTS_FILE`); a `.onnx` graph; a TorchScript file (`*.torchscript`, `*.ts`: code, run
            only from a file named so) written by `facever export`.
        weights: for `facenet:*` and `arcface:*`, the state-dict file.
        device: where to put the module ("cpu", "cuda", "auto", or a `torch.device`).
        mean, std: 3 values each on the 0..1 scale (`x = (pixels/255 - mean) / std`), or None to keep
            the model's; with `color` ("RGB"/"BGR"), for ONNX and TorchScript models only.

    Raises:
        FaceverError: unknown spec, missing weights (offline: says which file to put where), missing
            onnxruntime (says how to install it), a pulled or cached file that differs from its pin.
        InputFileError: a file that is not a model / state dict of the expected shape.
    """
    from facever.core.devices import resolve_device

    dev = device if not isinstance(device, str) else resolve_device(device)
    text = str(spec)
    overrides = {k: v for k, v in (("mean", mean), ("std", std), ("color", color)) if v is not None}
    entry = pretrained.find(text)
    if entry is not None:
        if weights is not None:
            raise FaceverError(f"{text} is a pretrained model by name: it brings its own weights, separate weights do not apply")
        model = _load_pretrained(entry, device=dev)
    else:
        model = _load_spec(text, weights=weights, device=dev)
    if overrides:
        if model.extra.get("runtime") not in ("onnxruntime", "torchscript"):
            raise FaceverError(f"{model.model_id} carries the preprocessing it was trained with; mean, std and "
                               "colour order can be set for ONNX and TorchScript models only")
        model = _with_preprocessing(model, **overrides)
    model.module.to(dev)
    return model


def _load_pretrained(entry: "pretrained.PretrainedModel", *, device) -> EmbeddingModel:
    """A registry model: its cached (or freshly pulled) file, checked, read by the loader of its format."""
    import dataclasses

    cached = pretrained.ensure_model(entry)
    if entry.format == "onnx":
        model = _load_onnx(cached.path, device=device, fingerprint=cached.sha256)
    else:
        model = _load_facenet(entry.variant, weights=cached.path, fingerprint=cached.sha256)
    return dataclasses.replace(model, model_id=entry.name, extra={
        **model.extra, "pretrained": entry.name, "licence": entry.licence, "url": cached.url,
        "integrity": cached.trust})


def _load_spec(text: str, *, weights, device) -> EmbeddingModel:
    """Every spec that is not a registry name: `facenet:*`, `arcface:*`, a file or run folder."""
    for prefix, loader in (("facenet:", _load_facenet), ("arcface:", _load_arcface)):
        if text.startswith(prefix):
            name, _, inline = text[len(prefix):].partition("=")
            if inline and weights is not None:
                raise FaceverError(f"{text}: weights given twice (inline and {weights})")
            model = loader(name, weights=Path(inline) if inline else (Path(weights) if weights else None))
            break
    else:
        if weights is not None:
            raise FaceverError(f"separate weights apply to facenet:* and arcface:* models only; {text} carries its own")
        path = Path(text)
        if path.suffix.lower() == ONNX_SUFFIX:
            model = _load_onnx(path, device=device)
        elif is_torchscript_name(path):  # asked for by name only: TorchScript is code
            model = _load_torchscript(path)
        else:
            model = _load_facever(path)
    return model


def model_files(spec: str | os.PathLike, *, weights: str | os.PathLike | None = None) -> list[Path]:
    """The files loading `spec` reads (the model file, a run folder's model.pt, inline or separate
    weights): what an output must never overwrite (`facever.core.paths.check_output_is_not_an_input`)."""
    text = str(spec)
    files = [Path(weights)] if weights is not None else []
    if text.startswith(("facenet:", "arcface:")):
        inline = text.partition("=")[2]
        return files + ([Path(inline)] if inline else [])
    path = Path(text)
    return files + [path / "model.pt" if path.is_dir() else path]


def preprocessing_overrides(mean: str | None, std: str | None, bgr: bool | None) -> dict[str, Any]:
    """`load_embedding_model`'s `mean`/`std`/`color` from text on the 0..255 pixel scale (`127.5` or
    `123.7,116.3,103.5`) and a BGR flag, checked on that scale, so a message quotes what was typed."""
    out: dict[str, Any] = {}
    for key, text in (("mean", mean), ("std", std)):
        if text is None:
            continue
        try:
            values = [float(v) for v in str(text).split(",")]
        except ValueError:
            raise FaceverError(f"`{key}` {text!r}: expected a number or three comma-separated numbers",
                               options=(key,)) from None
        if len(values) not in (1, 3):
            raise FaceverError(f"`{key}` {text!r}: expected one value or three (R,G,B)", options=(key,))
        problem = _stat_problem(key, values)
        if problem:
            raise FaceverError(f"`{key}` {text!r}: {problem} (on the 0..255 pixel scale)", options=(key,))
        out[key] = [v / 255.0 for v in (values * 3 if len(values) == 1 else values)]
    if bgr is not None:
        out["color"] = "BGR" if bgr else "RGB"
    return out


def _stat_problem(key: str, values: Sequence[float]) -> str | None:
    import math

    if not all(math.isfinite(v) for v in values):
        return "every value must be a finite number"
    if key == "std" and not all(v > 0 for v in values):
        return "every value must be above 0"
    return None


def _with_preprocessing(model: EmbeddingModel, **overrides) -> EmbeddingModel:
    import dataclasses

    values = {}
    for key in ("mean", "std"):
        if key in overrides:
            v = tuple(float(x) for x in overrides[key])
            if len(v) == 1:
                v = v * 3
            problem = "expected one or three numbers" if len(v) != 3 else _stat_problem(key, v)
            if problem:
                raise FaceverError(f"`{key}` {list(overrides[key])} (0..1 scale): {problem}", options=(key,))
            values[key] = v
    if "color" in overrides:
        c = str(overrides["color"]).upper()
        if c not in ("RGB", "BGR"):
            raise FaceverError(f"unknown colour order {overrides['color']!r}; use RGB or BGR")
        values["color"] = c
    return dataclasses.replace(model, **values, extra={**model.extra, "preprocessing_overridden": sorted(values)})


def _load_facever(path: Path) -> EmbeddingModel:
    if path.is_dir() and (path / "model.pt").is_file():
        path = path / "model.pt"
    if not path.exists():
        raise FaceverError(
            f"{path}: no such model file (expected a facever model.pt, a run folder holding one, a .onnx "
            "graph, an exported TorchScript file, facenet:vggface2 / facenet:casia-webface, or arcface:r50 etc.)"
        )
    from facever.models.bundle import load_model_bundle

    module, info = load_model_bundle(path, map_location="cpu")
    module.eval()
    try:
        h, w = (int(v) for v in info["input_size"])
        mean = tuple(float(v) for v in info["mean"])
        std = tuple(float(v) for v in info["std"])
        arch = str(info["arch"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"model file lacks its preprocessing ({type(exc).__name__}: {exc})") from None
    if len(mean) != 3 or len(std) != 3:
        raise InputFileError(path, "model file: mean and std must have 3 values")
    color = str(info.get("color", "RGB")).upper()
    if color not in ("RGB", "BGR"):
        raise InputFileError(path, f"model file: unknown colour order {color!r}")
    extra = {"arch": arch, "arch_kwargs": info.get("arch_kwargs", {})}
    if isinstance(info.get("crops"), dict):  # how the training crops were made (input size, policy, alignment)
        extra["training_crops"] = info["crops"]
    for key in ("step", "val_accuracy", "facever_version"):
        if key in info and isinstance(info[key], (int, float, str)):
            extra[f"model_{key}" if not key.startswith("model") else key] = info[key]
    calibration = _attached_calibration(info.get(CALIBRATION_KEY), path)
    return EmbeddingModel(
        module=module,
        model_id=f"facever:{arch}",
        input_size=(h, w),
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        color=color,
        embedding_dim=int(info["embedding_dim"]) if info.get("embedding_dim") else None,
        source=str(path.resolve()),
        fingerprint=file_digest(path),
        extra=extra,
        calibration=calibration,
    )


# Where a model file keeps its calibration: the bundle key, ONNX metadata `facever.calibration`, and the
# `calibration` entry of a TorchScript archive's facever.json.
CALIBRATION_KEY = "calibration"


def _attached_calibration(data: Any, path: Path):
    """The `Calibration` a model file carries, or None; a damaged one is an error naming the file."""
    if data is None:
        return None
    from facever.verification.calibration import Calibration

    return Calibration.from_dict(data, source=f"{path} (its attached calibration)")


def facenet_cache_dir() -> Path:
    """Where facenet-pytorch keeps its downloaded weights: `$TORCH_HOME/checkpoints` (same rule as it uses)."""
    return pretrained.torch_cache_dir()


def _load_facenet(name: str, *, weights: Path | None, fingerprint: str | None = None) -> EmbeddingModel:
    from facenet_pytorch import InceptionResnetV1

    from facever.models.inception_resnet import load_facenet_weights

    if name not in FACENET_WEIGHTS:
        known = ", ".join(f"facenet:{k}" for k in FACENET_WEIGHTS)
        raise FaceverError(f"unknown model facenet:{name}; known: {known}")
    if weights is not None and not weights.is_file():
        raise FaceverError(f"{weights}: weights file not found")
    if weights is None:  # the registry's model of that name: cached, pulled, checked the same way
        try:
            cached = pretrained.ensure_model(_FACENET_ENTRIES[name])
        except FaceverError as exc:
            raise FaceverError(f"{exc}; or give the file as `weights`", options=(*exc.options, "weights")) from None
        weights, fingerprint = cached.path, cached.sha256
    path = weights
    # facenet-pytorch's own module (not facever's `inception-resnet-v1` backbone) so the embeddings are
    # exactly what facenet-pytorch users get: L2-normalised outputs. The loader is shared with that
    # backbone: weights_only=True, `logits.*` dropped, any other mismatch an InputFileError.
    module = InceptionResnetV1(pretrained=None, classify=False)
    load_facenet_weights(module, path)
    module.eval()
    return EmbeddingModel(
        module=module,
        model_id=f"facenet:{name}",
        input_size=FACENET_INPUT_SIZE,
        mean=FACENET_MEAN,
        std=FACENET_STD,
        color="RGB",
        embedding_dim=512,
        source=str(path.resolve()),
        fingerprint=fingerprint or file_digest(path),
        extra={"arch": "InceptionResnetV1", "output_normalized": True},
    )



def _load_arcface(name: str, *, weights: Path | None) -> EmbeddingModel:
    from facever.models.arcface import ARCFACE_INPUT_SIZE, ARCFACE_LAYERS, ARCFACE_MEAN, ARCFACE_STD, load_arcface_weights

    if name not in ARCFACE_LAYERS:
        known = ", ".join(f"arcface:{k}" for k in ARCFACE_LAYERS)
        raise FaceverError(f"unknown model arcface:{name}; known: {known}")
    if weights is None:
        raise FaceverError(f"arcface:{name} needs its weights: an arcface_torch backbone.pth state dict "
                           f"(or write arcface:{name}=FILE)")
    module = load_arcface_weights(name, weights)
    return EmbeddingModel(
        module=module,
        model_id=f"arcface:{name}",
        input_size=ARCFACE_INPUT_SIZE,
        mean=ARCFACE_MEAN,
        std=ARCFACE_STD,
        color="RGB",
        embedding_dim=int(module.embedding_dim),
        source=str(Path(weights).resolve()),
        fingerprint=file_digest(weights),
        extra={"arch": f"arcface_torch iresnet{name[1:]}"},
    )


def _load_onnx(path: Path, *, device, fingerprint: str | None = None) -> EmbeddingModel:
    from facever.embedding.onnx_model import INSIGHTFACE_MEAN, INSIGHTFACE_STD, OnnxModule

    if not path.is_file():
        raise FaceverError(f"{path}: no such ONNX model file")
    module = OnnxModule(path, device=device)
    meta = module.facever_metadata()
    mean, std, color = INSIGHTFACE_MEAN, INSIGHTFACE_STD, "RGB"
    if meta:
        try:
            mean = tuple(float(v) for v in meta["mean"])
            std = tuple(float(v) for v in meta["std"])
            color = str(meta.get("color", "RGB")).upper()
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFileError(path, f"unreadable facever preprocessing metadata ({type(exc).__name__}: {exc})") from None
        if len(mean) != 3 or len(std) != 3 or color not in ("RGB", "BGR"):
            raise InputFileError(path, f"facever metadata: bad mean {mean}, std {std} or colour order {color!r}")
    extra: dict[str, Any] = {"runtime": "onnxruntime", "preprocessing_from": "facever metadata" if meta else "insightface default"}
    if meta.get("arch"):
        extra["arch"] = meta["arch"]
    return EmbeddingModel(
        calibration=_attached_calibration(meta.get(CALIBRATION_KEY), path),
        module=module,
        model_id=f"onnx:{path.name}",
        input_size=module.input_size,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        color=color,
        embedding_dim=module.embedding_dim,
        source=str(path.resolve()),
        fingerprint=fingerprint or file_digest(path),
        extra=extra,
    )


# Where `facever export --format torchscript` keeps the preprocessing inside the archive.
TORCHSCRIPT_EXTRA = "facever.json"


@contextlib.contextmanager
def quiet_torchscript():
    """torch >= 2.10 flags every torch.jit call as deprecated (a FutureWarning); the format still works."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit")
        yield


def _load_torchscript(path: Path) -> EmbeddingModel:
    import torch

    if not path.is_file():
        raise FaceverError(f"{path}: no such TorchScript file")
    extra_files = {TORCHSCRIPT_EXTRA: ""}
    try:
        with quiet_torchscript():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(path, f"not a readable TorchScript file ({reason[:200]})") from None
    try:
        meta = parse_json(extra_files[TORCHSCRIPT_EXTRA] or "{}", path)
        h, w = (int(v) for v in meta["input_size"])
        mean = tuple(float(v) for v in meta["mean"])
        std = tuple(float(v) for v in meta["std"])
        color = str(meta.get("color", "RGB")).upper()
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"TorchScript file without facever's preprocessing ({TORCHSCRIPT_EXTRA}: "
                                   f"{type(exc).__name__}: {exc}); export it with facever") from None
    if size_problem(h, w) is not None:
        raise InputFileError(path, f"{TORCHSCRIPT_EXTRA}: input_size {size_problem(h, w)}")
    module.eval()
    return EmbeddingModel(
        module=module,
        model_id=f"torchscript:{path.name}",
        input_size=(h, w),
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        color=color,
        embedding_dim=int(meta["embedding_dim"]) if meta.get("embedding_dim") else None,
        source=str(path.resolve()),
        fingerprint=file_digest(path),
        extra={"runtime": "torchscript", **({"arch": meta["arch"]} if meta.get("arch") else {})},
        calibration=_attached_calibration(meta.get(CALIBRATION_KEY), path),
    )
