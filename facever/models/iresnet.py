"""ArcFace-style improved residual networks (IR-50, IR-100; Deng et al., CVPR 2019, insightface's
`iresnet`): BN-Conv-BN-PReLU-Conv-BN residual blocks, stride in the second convolution, and the
BN-Dropout-FC-BN output stage that maps the last feature map to the embedding. 112x112 input.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from facever.models._common import HALF, conv_out, input_size_pair, positive
from facever.models.registry import register_model


class _IRBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=1e-5)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-5)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels, eps=1e-5)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels, eps=1e-5)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """IR network with `layers` blocks per stage; stage channels are `width` x (1, 2, 4, 8)."""

    def __init__(
        self,
        layers: Sequence[int],
        *,
        input_size: int | Sequence[int] = (112, 112),
        width: int = 64,
        embedding_dim: int = 512,
        dropout: float = 0.0,
        name: str = "iresnet",
    ):
        super().__init__()
        self.input_size = input_size_pair(input_size, model=name, minimum=16)
        self.embedding_dim = positive(embedding_dim, model=name, option="embedding_dim")
        self.mean, self.std = HALF, HALF
        width = positive(width, model=name, option="width")
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        blocks: list[nn.Module] = []
        in_channels, (h, w) = width, self.input_size
        for stage, count in enumerate(layers):
            channels = width * 2**stage
            for i in range(count):
                blocks.append(_IRBlock(in_channels, channels, stride=2 if i == 0 else 1))
                in_channels = channels
            h, w = conv_out(h, stride=2, padding=1), conv_out(w, stride=2, padding=1)
        self.blocks = nn.Sequential(*blocks)
        self.bn2 = nn.BatchNorm2d(in_channels, eps=1e-5)
        self.dropout = nn.Dropout(p=float(dropout))
        self.fc = nn.Linear(in_channels * h * w, self.embedding_dim)
        self.features = nn.BatchNorm1d(self.embedding_dim, eps=1e-5)
        # insightface fixes the final BN's scale at 1 (only its shift learns).
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.prelu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.bn2(self.forward_features(x)))
        return self.features(self.fc(torch.flatten(x, 1)))


@register_model
def iresnet50(*, input_size=(112, 112), width: int = 64, embedding_dim: int = 512, dropout: float = 0.0) -> IResNet:
    """IR-50: 3-4-14-3 blocks, 112x112 input, 512-d."""
    return IResNet((3, 4, 14, 3), input_size=input_size, width=width, embedding_dim=embedding_dim,
                   dropout=dropout, name="iresnet50")


@register_model
def iresnet100(*, input_size=(112, 112), width: int = 64, embedding_dim: int = 512, dropout: float = 0.0) -> IResNet:
    """IR-100: 3-13-30-3 blocks, 112x112 input, 512-d."""
    return IResNet((3, 13, 30, 3), input_size=input_size, width=width, embedding_dim=embedding_dim,
                   dropout=dropout, name="iresnet100")
