"""A small CNN: convolutions stay dense (not linear layers), the classifier head is sparsified."""

from __future__ import annotations

import torch
from torch import nn


class CNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc1 = nn.Linear(64 * 4 * 4, 512)
        self.fc2 = nn.Linear(512, classes)

    def forward(self, x):
        x = self.features(x).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def build_cnn(batch: int = 8, seed: int = 0) -> tuple[CNN, tuple]:
    torch.manual_seed(seed)
    return CNN().eval(), (torch.randn(batch, 3, 32, 32),)


class Bottleneck(nn.Module):
    """ResNet's bottleneck: 1x1 reduce, 3x3 (maybe strided), 1x1 expand, batch norms, shortcut."""

    def __init__(self, inp: int, width: int, out: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inp, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(inp, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
            if stride != 1 or inp != out
            else nn.Identity()
        )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + self.shortcut(x))


class ResNetStyle(nn.Module):
    """A 7x7 stride-2 stem, max pooling, two stages of bottlenecks, global average pooling, a classifier."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 7, 2, 3, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.stage1 = nn.Sequential(Bottleneck(32, 32, 128, 1), Bottleneck(128, 32, 128, 1))
        self.stage2 = nn.Sequential(Bottleneck(128, 64, 256, 2), Bottleneck(256, 64, 256, 1))
        self.fc = nn.Linear(256, classes)

    def forward(self, x):
        x = self.stage2(self.stage1(self.pool(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, 1x1 project (ReLU6 after the first two)."""

    def __init__(self, inp: int, out: int, stride: int, expand: int = 4):
        super().__init__()
        hidden = inp * expand
        self.block = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, out, 1, bias=False),
            nn.BatchNorm2d(out),
        )
        self.residual = stride == 1 and inp == out

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetStyle(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(32, 32, 1), InvertedResidual(32, 64, 2), InvertedResidual(64, 64, 1)
        )
        self.head = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU6())
        self.fc = nn.Linear(256, classes)

    def forward(self, x):
        return self.fc(self.head(self.blocks(self.stem(x))).mean(dim=(2, 3)))


def _with_statistics(module: nn.Module, seed: int) -> nn.Module:
    """Batch norms with non-trivial running statistics (fresh ones are identities)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for child in module.modules():
            if isinstance(child, nn.BatchNorm2d):
                child.running_mean.uniform_(-0.1, 0.1, generator=generator)
                child.running_var.uniform_(0.5, 1.5, generator=generator)
                child.weight.uniform_(0.5, 1.5, generator=generator)
                child.bias.uniform_(-0.1, 0.1, generator=generator)
    return module.eval()


def build_resnet(batch: int = 1, seed: int = 0) -> tuple[ResNetStyle, tuple]:
    torch.manual_seed(seed)
    return _with_statistics(ResNetStyle(), seed), (torch.randn(batch, 3, 64, 64),)


def build_mobilenet(batch: int = 1, seed: int = 0) -> tuple[MobileNetStyle, tuple]:
    torch.manual_seed(seed)
    return _with_statistics(MobileNetStyle(), seed), (torch.randn(batch, 3, 64, 64),)
