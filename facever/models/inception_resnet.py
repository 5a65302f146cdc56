"""facenet-pytorch's Inception-ResNet-v1 (160x160, 512-d) as a facever backbone, so its pretrained
VGGFace2 / CASIA-WebFace weights (a local file; nothing is downloaded) can be evaluated or fine-tuned.

The wrapped network keeps facenet-pytorch's parameter names under `net.`; `weights=` loads a
facenet-pytorch state dict (its `logits.*` classifier is dropped: facever trains its own head).
Unlike facenet-pytorch's module, forward returns the embedding before L2 normalisation, as every
facever backbone does, so a training head sees the feature's norm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from facever.core.errors import FaceverError, InputFileError
from facever.core.model_files import load_tensor_file
from facever.models._common import input_size_pair
from facever.models.registry import register_model

# facenet-pytorch's fixed_image_standardization, (x - 127.5) / 128, in facever's (x/255 - mean) / std form.
FACENET_MEAN = (127.5 / 255,) * 3
FACENET_STD = (128 / 255,) * 3


class InceptionResnetV1Backbone(nn.Module):
    def __init__(
        self,
        *,
        input_size: int | Sequence[int] = (160, 160),
        dropout: float = 0.6,
        weights: str | Path | None = None,
    ):
        super().__init__()
        # Imported here: facenet_pytorch pulls in its MTCNN code, which only this backbone needs.
        from facenet_pytorch import InceptionResnetV1

        # 75 px is the smallest input whose feature map survives the network's valid convolutions.
        self.input_size = input_size_pair(input_size, model="inception-resnet-v1", minimum=75)
        self.embedding_dim = 512
        self.mean, self.std = FACENET_MEAN, FACENET_STD
        self.net = InceptionResnetV1(pretrained=None, classify=False, dropout_prob=float(dropout))
        if weights is not None:
            load_facenet_weights(self.net, weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        for layer in (
            net.conv2d_1a, net.conv2d_2a, net.conv2d_2b, net.maxpool_3a, net.conv2d_3b, net.conv2d_4a,
            net.conv2d_4b, net.repeat_1, net.mixed_6a, net.repeat_2, net.mixed_7a, net.repeat_3, net.block8,
        ):
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net.dropout(net.avgpool_1a(self.forward_features(x)))
        return net.last_bn(net.last_linear(torch.flatten(x, 1)))


def load_facenet_weights(net: nn.Module, path: str | Path) -> None:
    """Load a facenet-pytorch state dict file (e.g. 20180402-114759-vggface2.pt) into `net`.

    Safe loading only (`weights_only=True`); the `logits.*` classifier keys are ignored; any other
    mismatch is an InputFileError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FaceverError(f"{path}: no such weights file")
    try:
        state = load_tensor_file(path)
    except InputFileError:
        raise
    except Exception as exc:
        raise InputFileError(path, f"not a readable weights file ({str(exc).strip()[:200] or type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputFileError(path, "expected a state dict (parameter name -> tensor) of facenet-pytorch's InceptionResnetV1")
    state = {key.removeprefix("net."): value for key, value in state.items() if not key.startswith(("logits.", "net.logits."))}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise InputFileError(path, f"weights do not fit InceptionResnetV1: {' '.join(lines[:3])[:300]}") from None


@register_model(name="inception-resnet-v1")
def inception_resnet_v1(*, input_size=(160, 160), dropout: float = 0.6, weights: str | None = None):
    """facenet-pytorch Inception-ResNet-v1: 160x160 input, 512-d; `weights=` a local facenet-pytorch .pt."""
    return InceptionResnetV1Backbone(input_size=input_size, dropout=dropout, weights=weights)
