"""A three-layer MLP: the smallest model with something to sparsify."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, sizes=(256, 1024, 1024, 256)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def build_mlp(batch: int = 32, seed: int = 0) -> tuple[MLP, tuple]:
    torch.manual_seed(seed)
    module = MLP().eval()
    return module, (torch.randn(batch, 256),)
