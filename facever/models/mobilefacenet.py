"""MobileFaceNet (Chen et al., CCBR 2018): a ~1M-parameter face network built from MobileNetV2
inverted-residual bottlenecks with PReLU, ending in a global depthwise convolution (GDC) whose
kernel covers the whole last feature map, so it runs on 112x112 and on 112x96 crops alike.
Default embedding: 128-d, as in the paper.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from facever.models._common import HALF, conv_out, input_size_pair, positive
from facever.models.registry import register_model

# (expansion t, output channels as a multiple of `width`, repeats n, first stride s), from the paper's table 1.
_BOTTLENECKS = ((2, 1, 5, 2), (4, 2, 1, 2), (2, 2, 6, 1), (4, 2, 1, 2), (2, 2, 2, 1))


def _conv_bn(in_ch: int, out_ch: int, kernel, stride: int = 1, padding=0, *, groups: int = 1, act: bool = True):
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.PReLU(out_ch))
    return nn.Sequential(*layers)


class _Bottleneck(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, *, expansion: int, stride: int):
        super().__init__()
        hidden = in_ch * expansion
        self.residual = stride == 1 and in_ch == out_ch
        self.body = nn.Sequential(
            _conv_bn(in_ch, hidden, 1),
            _conv_bn(hidden, hidden, 3, stride, 1, groups=hidden),
            _conv_bn(hidden, out_ch, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class MobileFaceNet(nn.Module):
    def __init__(
        self,
        *,
        input_size: int | Sequence[int] = (112, 112),
        width: int = 64,
        embedding_dim: int = 128,
        name: str = "mobilefacenet",
    ):
        super().__init__()
        self.input_size = input_size_pair(input_size, model=name, minimum=16)
        self.embedding_dim = positive(embedding_dim, model=name, option="embedding_dim")
        self.mean, self.std = HALF, HALF
        width = positive(width, model=name, option="width")
        layers: list[nn.Module] = [
            _conv_bn(3, width, 3, 2, 1),
            _conv_bn(width, width, 3, 1, 1, groups=width),
        ]
        h, w = (conv_out(n, stride=2, padding=1) for n in self.input_size)
        channels = width
        for expansion, multiple, repeats, stride in _BOTTLENECKS:
            for i in range(repeats):
                step = stride if i == 0 else 1
                layers.append(_Bottleneck(channels, width * multiple, expansion=expansion, stride=step))
                channels = width * multiple
                if step == 2:
                    h, w = conv_out(h, stride=2, padding=1), conv_out(w, stride=2, padding=1)
        last = width * 8  # 512 at the default width
        layers.append(_conv_bn(channels, last, 1))
        self.features = nn.Sequential(*layers)
        # Global depthwise conv: one (h x w) filter per channel instead of average pooling, so each
        # spatial position of the face gets its own learned weight.
        self.gdc = _conv_bn(last, last, (h, w), groups=last, act=False)
        self.linear = nn.Conv2d(last, self.embedding_dim, 1, bias=False)
        self.bn = nn.BatchNorm1d(self.embedding_dim)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.flatten(self.linear(self.gdc(self.forward_features(x))), 1))


@register_model
def mobilefacenet(*, input_size=(112, 112), width: int = 64, embedding_dim: int = 128) -> MobileFaceNet:
    """MobileFaceNet: ~1M parameters, 112x112 (or 112x96) input, 128-d."""
    return MobileFaceNet(input_size=input_size, width=width, embedding_dim=embedding_dim)
