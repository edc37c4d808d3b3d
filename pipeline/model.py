"""The classifier: a plain multi-layer perceptron."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``Linear -> ReLU -> Dropout`` per hidden layer, then a linear layer to C logits."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], n_classes: int, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, F) -> (N, C)
        return self.net(x)
