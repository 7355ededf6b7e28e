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
