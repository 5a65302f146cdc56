"""SphereFace's residual networks (Liu et al., CVPR 2017): sphere20 (the Noisy Softmax paper's
generation of face models) and sphere64.

Four stages, each a stride-2 3x3 convolution followed by residual units of two 3x3 convolutions,
all with PReLU and no batch norm, then one fully connected layer to the embedding. Initialisation
follows the authors' Caffe prototxt: Xavier for the stage convolutions and the FC layer, Gaussian
(std 0.01) for the convolutions inside residual units, zero biases; PReLU slopes start at 0.25.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from facever.models._common import HALF, conv_out, input_size_pair, positive
from facever.models.registry import register_model


class _ResidualUnit(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.prelu1 = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.prelu2 = nn.PReLU(channels)
        for conv in (self.conv1, self.conv2):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.prelu2(self.conv2(self.prelu1(self.conv1(x))))


class SphereNet(nn.Module):
    """SphereFace residual network; `units` residual units per stage, `width` channels in stage 1.

    The FC layer is sized from `input_size`, so the same network runs on 112x96 (default) or 112x112.
    """

    def __init__(
        self,
        units: Sequence[int],
        *,
        input_size: int | Sequence[int] = (112, 96),
        width: int = 64,
        embedding_dim: int = 512,
        name: str = "sphere",
    ):
        super().__init__()
        self.input_size = input_size_pair(input_size, model=name, minimum=16)
        self.embedding_dim = positive(embedding_dim, model=name, option="embedding_dim")
        self.mean, self.std = HALF, HALF
        width = positive(width, model=name, option="width")
        stages: list[nn.Module] = []
        in_channels, h, w = 3, *self.input_size
        for stage, count in enumerate(units):
            out_channels = width * 2**stage
            down = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
            nn.init.xavier_uniform_(down.weight)
            nn.init.zeros_(down.bias)
            stages += [down, nn.PReLU(out_channels)]
            stages += [_ResidualUnit(out_channels) for _ in range(count)]
            in_channels = out_channels
            h, w = conv_out(h, stride=2, padding=1), conv_out(w, stride=2, padding=1)
        self.features = nn.Sequential(*stages)
        self.fc = nn.Linear(in_channels * h * w, self.embedding_dim)
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.forward_features(x), 1))


@register_model
def sphere20(*, input_size=(112, 96), width: int = 64, embedding_dim: int = 512) -> SphereNet:
    """SphereFace-20: 1-2-4-1 residual units, 112x96 input, 512-d."""
    return SphereNet((1, 2, 4, 1), input_size=input_size, width=width, embedding_dim=embedding_dim, name="sphere20")


@register_model
def sphere64(*, input_size=(112, 96), width: int = 64, embedding_dim: int = 512) -> SphereNet:
    """SphereFace-64: 3-8-16-3 residual units, 112x96 input, 512-d."""
    return SphereNet((3, 8, 16, 3), input_size=input_size, width=width, embedding_dim=embedding_dim, name="sphere64")
