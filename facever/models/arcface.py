"""InsightFace arcface_torch IResNet checkpoints (`backbone.pth`) loaded into facever's own `IResNet`.

arcface_torch (insightface/recognition/arcface_torch/backbones/iresnet.py) and facever build the same
network: conv1-bn1-prelu, four stages of BN-Conv-BN-PReLU-Conv-BN blocks (stride in the second
convolution, a 1x1 conv + BN shortcut on the first block of each stage), then bn2, dropout, the
`fc` to the embedding and the `features` BatchNorm1d. Only the parameter names of the blocks differ:

    arcface_torch                       facever
    layer{s}.{i}.{bn1,conv1,...}        blocks.{first block of stage s + i}.{bn1,conv1,...}
    layer{s}.{i}.downsample.{0,1}       blocks.{...}.downsample.{0,1}

Every other key (`conv1`, `bn1`, `prelu`, `bn2`, `fc`, `features`) is the same. arcface_torch saves
`backbone.module.state_dict()` (no `module.` prefix); a prefix from a DDP-wrapped save is stripped too.
Its preprocessing: 112x112 RGB crops, `(x / 255 - 0.5) / 0.5`; its embedding is the `features` output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch

from facever.core.errors import FaceverError, InputFileError
from facever.core.model_files import load_tensor_file
from facever.models._common import HALF
from facever.models.iresnet import IResNet

# arcface_torch's `get_model(name)`: blocks per stage.
ARCFACE_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
    "r200": (6, 26, 60, 6),
}
ARCFACE_INPUT_SIZE = (112, 112)
ARCFACE_MEAN = HALF
ARCFACE_STD = HALF

_LAYER_KEY = re.compile(r"^layer([1-4])\.(\d+)\.(.+)$")


def build_arcface_iresnet(name: str, *, embedding_dim: int = 512) -> IResNet:
    """facever's IResNet with arcface_torch's `name` shape (`r18`, `r34`, `r50`, `r100`, `r200`)."""
    if name not in ARCFACE_LAYERS:
        known = ", ".join(f"arcface:{k}" for k in ARCFACE_LAYERS)
        raise FaceverError(f"unknown model arcface:{name}; known: {known}")
    return IResNet(ARCFACE_LAYERS[name], input_size=ARCFACE_INPUT_SIZE, embedding_dim=embedding_dim,
                   name=f"arcface:{name}")


def arcface_to_facever_key(key: str, layers: tuple[int, ...]) -> str:
    """The facever parameter name of an arcface_torch one (unchanged outside `layer1..4`)."""
    match = _LAYER_KEY.match(key)
    if match is None:
        return key
    stage, index, rest = int(match.group(1)) - 1, int(match.group(2)), match.group(3)
    return f"blocks.{sum(layers[:stage]) + index}.{rest}"


def facever_to_arcface_key(key: str, layers: tuple[int, ...]) -> str:
    """The arcface_torch name of a facever IResNet parameter (the inverse of `arcface_to_facever_key`)."""
    match = re.match(r"^blocks\.(\d+)\.(.+)$", key)
    if match is None:
        return key
    block, rest = int(match.group(1)), match.group(2)
    for stage, count in enumerate(layers):
        if block < count:
            return f"layer{stage + 1}.{block}.{rest}"
        block -= count
    raise ValueError(f"{key}: block index beyond the network's {sum(layers)} blocks")


def load_arcface_weights(name: str, path: str | Path) -> IResNet:
    """Build `arcface:name` and fill it from arcface_torch's `backbone.pth` at `path` (eval mode, CPU).

    Raises:
        FaceverError: unknown name, missing file.
        InputFileError: unreadable file, not a state dict, or weights of another shape; the message
            names the first key that does not fit, with both shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise FaceverError(f"{path}: weights file not found")
    try:
        state = load_tensor_file(path)
    except InputFileError:
        raise
    except Exception as exc:  # a truncated zip, an unsafe pickle, not a torch file at all
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(path, f"not a readable PyTorch state dict ({reason[:200]})") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputFileError(path, "not a state dict (expected a mapping of parameter names to tensors, "
                                   "as arcface_torch saves backbone.pth)")
    module = build_arcface_iresnet(name)
    layers = ARCFACE_LAYERS[name]
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    expected = module.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        target = arcface_to_facever_key(key, layers)
        match = _LAYER_KEY.match(key)
        beyond = match is not None and int(match.group(2)) >= layers[int(match.group(1)) - 1]
        if beyond or target not in expected:
            raise InputFileError(path, f"arcface:{name} has no parameter {key!r} (shape {tuple(tensor.shape)}): "
                                       "weights of another architecture or another depth?")
        if tuple(tensor.shape) != tuple(expected[target].shape):
            raise InputFileError(path, f"{key}: shape {tuple(tensor.shape)} in the file, arcface:{name} expects "
                                       f"{tuple(expected[target].shape)} (another depth, width or input size?)")
        mapped[target] = tensor
    # Batch-norm step counters carry no weights; an old save may lack them.
    missing = [k for k in expected if k not in mapped and not k.endswith("num_batches_tracked")]
    if missing:
        first = facever_to_arcface_key(missing[0], layers)
        raise InputFileError(path, f"arcface:{name} needs {first!r} (shape {tuple(expected[missing[0]].shape)}), "
                                   f"missing from the file ({len(missing)} missing in all)")
    module.load_state_dict(mapped, strict=False)
    return module.eval()
