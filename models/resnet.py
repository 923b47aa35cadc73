"""Small ResNet-style CNN: exercises NCHW convolutions, BatchNorm in inference mode, residual adds,
strided 1x1 shortcuts and pooling, the layers whose layout (NCHW vs NHWC) converters get wrong."""

from __future__ import annotations

import torch
from torch import nn

from .configs import ResNetConfig

__all__ = ["BasicBlock", "ResNet", "ResNetConfig"]


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN with a residual add; a 1x1 strided conv+BN shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, eps: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=eps)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=eps)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels, eps=eps),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Stem (conv3x3+BN+ReLU, max-pool /2), stages of basic blocks, global average pool, Linear head.

    Input is NCHW (batch, in_channels, image_size, image_size); output logits (batch, num_classes).
    """

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        self.config = config
        eps = config.batch_norm_eps
        self.conv1 = nn.Conv2d(config.in_channels, config.stem_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(config.stem_channels, eps=eps)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages: list[nn.Module] = []
        channels = config.stem_channels
        for i, (out_channels, blocks) in enumerate(zip(config.stage_channels, config.blocks_per_stage)):
            layers = []
            for j in range(blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(channels, out_channels, stride, eps))
                channels = out_channels
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, config.num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(pixel_values))))
        for stage in self.stages:
            x = stage(x)
        return self.fc(self.flatten(self.avgpool(x)))
